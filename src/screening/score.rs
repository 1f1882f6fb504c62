//! Word similarity and the weighted pairing of two names' words into one score.

/// How many edits (Damerau-Levenshtein) two words may differ by and still pair, by the length of
/// the shorter one. Short words are mostly initialisms (`OLDS`, `QC`) where one edit makes another
/// company (`GOLDS`), so they must match exactly; longer words tolerate the typos and
/// transliteration variants (`ZEPHIRA`/`ZEPHYRA`) that fuzzy list search exists for.
pub(super) fn max_edits(shorter_chars: usize) -> usize {
    match shorter_chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Similarity of two normalized words in `0.0..=1.0`; `0.0` means they do not pair.
/// `a_chars` and `b_chars` are the words' lengths in chars, which callers already have.
pub(super) fn word_similarity(a: &str, a_chars: usize, b: &str, b_chars: usize) -> f64 {
    // Lengths first: most pairs a screen asks about differ in length, and deciding them without
    // reading either string spares a cache miss on the list word's text.
    if a_chars == b_chars && a == b {
        return 1.0;
    }
    let edits = max_edits(a_chars.min(b_chars));
    if edits == 0 || a_chars.abs_diff(b_chars) > edits {
        return 0.0;
    }
    if letter_gap(a, b).is_some_and(|gap| gap > edits) {
        return 0.0;
    }
    if strsim::damerau_levenshtein(a, b) > edits {
        return 0.0;
    }
    strsim::jaro_winkler(a, b)
}

/// A lower bound on the Damerau-Levenshtein distance of two ASCII strings (`None` otherwise),
/// from their letters alone: an edit removes at most one letter of `a` (a deletion or a
/// substitution) and brings in at most one of `b` (an insertion or a substitution), and a
/// transposition neither, so at least as many edits are needed as `a` has letters `b` lacks, and
/// the other way round. Counting letters in 64 classes (by their low six bits; `A`-`Z` and `0`-`9`
/// each in a class of their own) can only lower the bound. It rules out almost every pair the
/// distance itself would, without its allocations.
pub(super) fn letter_gap(a: &str, b: &str) -> Option<usize> {
    if !a.is_ascii() || !b.is_ascii() {
        return None;
    }
    let class = |byte: u8| usize::from(byte & 63);
    let mut counts = [0i32; 64];
    for byte in a.bytes() {
        counts[class(byte)] += 1;
    }
    for byte in b.bytes() {
        counts[class(byte)] -= 1;
    }
    let (mut surplus, mut deficit) = (0i32, 0i32);
    for byte in a.bytes().chain(b.bytes()) {
        let count = &mut counts[class(byte)];
        if *count > 0 {
            surplus += *count;
        } else {
            deficit -= *count;
        }
        *count = 0;
    }
    Some(surplus.max(deficit).unsigned_abs() as usize)
}

/// One or two adjacent words on one side of a pair: two when the other side writes them as one
/// (`NORTH WIND` / `NORTHWIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    fn one(start: usize) -> Self {
        Span { start, len: 1 }
    }
    fn two(start: usize) -> Self {
        Span { start, len: 2 }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pair {
    pub query: Span,
    pub list: Span,
    pub similarity: f64,
    /// The smaller of the two sides' weights, so a common word cannot borrow the weight of a rare
    /// look-alike, and the score stays symmetric.
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Alignment {
    pub pairs: Vec<Pair>,
    /// Which query / list words are in a pair.
    pub query_paired: Vec<bool>,
    pub list_paired: Vec<bool>,
    pub score: f64,
}

/// The similarities the aligner may ask for; the screener answers them from tables it computed
/// once per query, tests answer them directly.
pub(super) trait Similarities {
    /// Query word `q` against list word `l`.
    fn word(&self, q: usize, l: usize) -> f64;
    /// Query words `q` and `q + 1` written together, against list word `l`.
    fn query_joined(&self, q: usize, l: usize) -> f64;
    /// Query word `q` against list words `l` and `l + 1` written together.
    fn list_joined(&self, q: usize, l: usize) -> f64;
}

/// Pairs the words of two names one-to-one, strongest evidence (similarity × weight) first, then
/// lets leftover adjacent words pair as compounds, and scores the result as a weighted Dice
/// coefficient in `0.0..=100.0`:
///
/// `100 × Σ 2·similarity·weight (pairs) / (Σ 2·weight (pairs) + Σ weight (unpaired words, both sides))`
pub(super) fn align(query_weights: &[f64], list_weights: &[f64], sims: &impl Similarities) -> Alignment {
    let (nq, nl) = (query_weights.len(), list_weights.len());
    let mut candidates: Vec<Pair> = Vec::new();
    for (q, query_weight) in query_weights.iter().enumerate() {
        for (l, list_weight) in list_weights.iter().enumerate() {
            let similarity = sims.word(q, l);
            if similarity > 0.0 {
                let weight = query_weight.min(*list_weight);
                candidates.push(Pair { query: Span::one(q), list: Span::one(l), similarity, weight });
            }
        }
    }
    let mut query_paired = vec![false; nq];
    let mut list_paired = vec![false; nl];
    let mut pairs = Vec::new();
    take_greedily(candidates, &mut query_paired, &mut list_paired, &mut pairs);

    let mut compounds: Vec<Pair> = Vec::new();
    for l in (0..nl).filter(|l| !list_paired[*l]) {
        for q in (0..nq.saturating_sub(1)).filter(|q| !query_paired[*q] && !query_paired[q + 1]) {
            let similarity = sims.query_joined(q, l);
            if similarity > 0.0 {
                let weight = query_weights[q].max(query_weights[q + 1]).min(list_weights[l]);
                compounds.push(Pair { query: Span::two(q), list: Span::one(l), similarity, weight });
            }
        }
    }
    for q in (0..nq).filter(|q| !query_paired[*q]) {
        for l in (0..nl.saturating_sub(1)).filter(|l| !list_paired[*l] && !list_paired[l + 1]) {
            let similarity = sims.list_joined(q, l);
            if similarity > 0.0 {
                let weight = list_weights[l].max(list_weights[l + 1]).min(query_weights[q]);
                compounds.push(Pair { query: Span::one(q), list: Span::two(l), similarity, weight });
            }
        }
    }
    take_greedily(compounds, &mut query_paired, &mut list_paired, &mut pairs);

    let mut matched = 0.0;
    let mut total = 0.0;
    for pair in &pairs {
        matched += 2.0 * pair.similarity * pair.weight;
        total += 2.0 * pair.weight;
    }
    let unpaired = |weights: &[f64], paired: &[bool]| -> f64 {
        weights.iter().zip(paired).filter(|(_, p)| !**p).map(|(w, _)| *w).sum()
    };
    total += unpaired(query_weights, &query_paired) + unpaired(list_weights, &list_paired);
    let score = if total > 0.0 { (100.0 * matched / total).clamp(0.0, 100.0) } else { 0.0 };
    Alignment { pairs, query_paired, list_paired, score }
}

/// Greedy one-to-one assignment. Names have a handful of words, and a word pairing with two
/// different words at once is rare, so greedy by evidence is as good as an optimal assignment here
/// and far easier to explain.
fn take_greedily(
    mut candidates: Vec<Pair>,
    query_paired: &mut [bool],
    list_paired: &mut [bool],
    pairs: &mut Vec<Pair>,
) {
    candidates.sort_by(|a, b| {
        (b.similarity * b.weight)
            .total_cmp(&(a.similarity * a.weight))
            .then(a.query.start.cmp(&b.query.start))
            .then(a.list.start.cmp(&b.list.start))
    });
    for pair in candidates {
        let free = pair.query.range().all(|q| !query_paired[q]) && pair.list.range().all(|l| !list_paired[l]);
        if free {
            pair.query.range().for_each(|q| query_paired[q] = true);
            pair.list.range().for_each(|l| list_paired[l] = true);
            pairs.push(pair);
        }
    }
}
