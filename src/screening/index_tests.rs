//! The deletion index and [`Batch`] against the look-up they replace: the same similarities, the
//! same hits, the same scores.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Instant;

use super::*;

/// The sample list the other tests use.
const SAMPLE: &str = include_str!("testdata/sample.csv");

/// SplitMix64: fixed here rather than taken from `rand`, so a failing case reproduces from its seed
/// whatever version of `rand` the lock file holds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Skewed towards the front: a few words are common and most are rare, as in company names.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// Syllables rather than random letters, so that words have look-alikes (`KARINA`/`MARINA`) as
/// names do; a few scripts that normalization leaves alone, so matching is exercised on chars.
const SYLLABLES: &[&str] = &[
    "KA", "RI", "NO", "TA", "MA", "SHI", "EN", "OR", "AL", "VI", "ZE", "LU", "PE", "DO", "GA", "RO", "IN", "SA", "TE",
    "BU", "ON", "KH", "IA", "ST", "ER", "A", "O", "X", "TR", "ELL", "AN", "IK", "OV", "HU", "ANG", "ZH",
];
const FOREIGN: &[&str] = &["ЖА", "ДО", "ЯР", "ШИ", "Л", "ΩΣ", "ΛΑ", "Ψ", "中", "华", "科技", "Ж"];
/// Letters a misspelling may introduce.
const LETTERS: &[char] = &[
    'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'K', 'L', 'M', 'N', 'O', 'R', 'S', 'T', 'U', 'V', 'X', 'Z', 'Ж', 'Я',
    'Ω', '中',
];
const GENERIC: &[&str] = &["TRADING", "GROUP", "INTERNATIONAL", "TECHNOLOGY", "DATA", "SERVICES", "HOLDINGS"];
const LEGAL: &[&str] = &["CO., LTD.", "LLC", "GmbH", "Inc.", "JSC", "Limited", "S.A."];

/// A word of 1 to 20 chars.
fn word(rng: &mut Rng) -> String {
    let target = 1 + rng.skewed(20).max(rng.below(14));
    let mut out = String::new();
    while out.chars().count() < target {
        let pieces = if rng.chance(4) { FOREIGN } else { SYLLABLES };
        let piece = pieces[rng.below(pieces.len())];
        out.push_str(piece);
    }
    out.chars().take(20).collect()
}

/// One to three edits of the kinds Damerau-Levenshtein counts, sometimes stacked on the same spot
/// (a transposition with a letter inserted between) where the unrestricted distance is smaller than
/// the edits applied.
fn misspell(rng: &mut Rng, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len());
        match rng.below(5) {
            0 if chars.len() > 1 => {
                chars.remove(at);
            }
            1 => chars.insert(at, *rng.pick(LETTERS)),
            2 if !chars.is_empty() => chars[at] = *rng.pick(LETTERS),
            3 if at + 1 < chars.len() => chars.swap(at, at + 1),
            4 if at + 1 < chars.len() => {
                chars.swap(at, at + 1);
                chars.insert(at + 1, *rng.pick(LETTERS));
            }
            _ => chars.push(*rng.pick(LETTERS)),
        }
    }
    chars.into_iter().collect()
}

fn vocabulary(rng: &mut Rng, size: usize) -> Vec<String> {
    (0..size).map(|_| word(rng)).collect()
}

fn name(rng: &mut Rng, vocabulary: &[String], words: usize) -> String {
    let mut parts: Vec<String> = (0..words).map(|_| vocabulary[rng.skewed(vocabulary.len())].clone()).collect();
    if rng.chance(20) {
        parts.push((*rng.pick(GENERIC)).to_owned());
    }
    if rng.chance(30) {
        parts.push((*rng.pick(LEGAL)).to_owned());
    }
    parts.join(" ")
}

/// A variant of a listed name: misspelled, reordered, shortened, lengthened or written together.
fn variant(rng: &mut Rng, listed: &str, vocabulary: &[String]) -> String {
    let mut words: Vec<String> = listed.split(' ').map(str::to_owned).collect();
    match rng.below(5) {
        0 => {
            let at = rng.below(words.len());
            words[at] = misspell(rng, &words[at]);
        }
        1 => words.reverse(),
        2 if words.len() > 1 => {
            words.remove(rng.below(words.len()));
        }
        3 if words.len() > 1 => {
            let at = rng.below(words.len() - 1);
            let second = words.remove(at + 1);
            words[at].push_str(&second);
        }
        _ => words.push(vocabulary[rng.skewed(vocabulary.len())].clone()),
    }
    words.join(" ")
}

/// Entries shaped like the CSL: one to four words, generic words and legal forms now and then,
/// and aliases that vary the name.
fn generated_list(rng: &mut Rng, entries: usize, vocabulary: &[String]) -> Vec<ListEntry> {
    let mut list = Vec::with_capacity(entries);
    for i in 0..entries {
        let words = if rng.chance(10) { 1 } else { 2 + rng.below(3) };
        let listed = name(rng, vocabulary, words);
        let mut aliases = Vec::new();
        for _ in 0..rng.skewed(5) {
            aliases.push(variant(rng, &listed, vocabulary));
        }
        list.push(ListEntry {
            id: format!("gen-{i}"),
            source: "generated".to_owned(),
            entry_type: "Entity".to_owned(),
            name: listed,
            alt_names: aliases,
            programs: Vec::new(),
            countries: Vec::new(),
            line: i + 2,
        });
    }
    list
}

/// Tenant names: mostly words of their own that many tenants share, now and then a word the list
/// uses too, and a few variants of listed names.
fn generated_names(
    rng: &mut Rng,
    count: usize,
    list: &[ListEntry],
    tenant_words: &[String],
    list_words: &[String],
) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let name = if rng.chance(3) {
            let listed = &list[rng.below(list.len())].name;
            variant(rng, listed, list_words)
        } else {
            let mut words: Vec<String> = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let from = if rng.chance(5) { list_words } else { tenant_words };
                words.push(from[rng.skewed(from.len())].clone());
            }
            if rng.chance(20) {
                words.push((*rng.pick(GENERIC)).to_owned());
            }
            if rng.chance(50) {
                words.push((*rng.pick(LEGAL)).to_owned());
            }
            words.join(" ")
        };
        names.push(name);
    }
    names
}

/// The look-up as it was before the deletion index: every string of a length within the edit
/// limit, less those a character-mask lower bound on the distance rules out.
struct Scan {
    by_chars: Vec<Vec<usize>>,
    masks: Vec<u64>,
}

impl Scan {
    fn new(lexicon: &Lexicon) -> Self {
        let mut by_chars: Vec<Vec<usize>> = Vec::new();
        for (id, chars) in lexicon.chars.iter().enumerate() {
            if by_chars.len() <= *chars {
                by_chars.resize_with(chars + 1, Vec::new);
            }
            by_chars[*chars].push(id);
        }
        Scan { by_chars, masks: lexicon.texts.iter().map(|t| char_mask(t)).collect() }
    }

    fn similar(&self, lexicon: &Lexicon, word: &str) -> Vec<(usize, f64)> {
        let mut out = HashMap::new();
        let chars = word.chars().count();
        let mask = char_mask(word);
        if let Some(id) = lexicon.ids.get(word) {
            out.insert(*id, 1.0);
        }
        let widest = score::max_edits(usize::MAX);
        for other_chars in chars.saturating_sub(widest)..=chars + widest {
            let edits = score::max_edits(chars.min(other_chars));
            if edits == 0 || chars.abs_diff(other_chars) > edits {
                continue;
            }
            for id in self.by_chars.get(other_chars).map(Vec::as_slice).unwrap_or_default() {
                let (theirs, ours) = (self.masks[*id], mask);
                if (ours & !theirs).count_ones() as usize > edits || (theirs & !ours).count_ones() as usize > edits {
                    continue;
                }
                let similarity = word_similarity(word, chars, &lexicon.texts[*id], lexicon.chars[*id]);
                if similarity > 0.0 {
                    out.entry(*id).or_insert(similarity);
                }
            }
        }
        let mut sims: Vec<(usize, f64)> = out.into_iter().collect();
        sims.sort_unstable_by_key(|(id, _)| *id);
        sims
    }
}

fn char_mask(word: &str) -> u64 {
    word.chars().fold(0, |mask, c| mask | 1 << (u32::from(c) % 64))
}

/// [`Screener::screen`] with every look-up done by [`Scan`].
struct ScanScreener<'a> {
    screener: &'a Screener,
    words: Scan,
    joined: Scan,
}

impl<'a> ScanScreener<'a> {
    fn new(screener: &'a Screener) -> Self {
        ScanScreener { screener, words: Scan::new(&screener.words), joined: Scan::new(&screener.joined) }
    }

    fn screen(&self, names: &[&str], threshold: f64) -> Vec<Hit> {
        let s = self.screener;
        let mut similar = |look: Look, word: &str, _needed: bool| -> Option<Sims> {
            Some(match look.table() {
                Table::Words => self.words.similar(&s.words, word).into(),
                Table::Joined => self.joined.similar(&s.joined, word).into(),
            })
        };
        // Every look-up made, whatever the threshold: the screen without pruning.
        let queries: Vec<Query<'_>> = names.iter().map(|n| s.query(n, 0.0, &mut similar)).collect();
        s.rank(&queries, threshold)
    }
}

/// The sample list and `entries` generated ones, the vocabulary they were drawn from, and the rng
/// to go on with.
fn sample_and_generated(entries: usize, seed: u64) -> (Screener, Vec<String>, Rng) {
    let mut rng = Rng(seed);
    let vocabulary = vocabulary(&mut rng, entries * 2);
    let mut list = parse_csl_csv(SAMPLE).unwrap();
    list.extend(generated_list(&mut rng, entries, &vocabulary));
    (Screener::new(list), vocabulary, rng)
}

// === look-ups ===

#[test]
fn similar_every_kind_of_edit_within_the_limit_is_found() {
    let listed =
        ["OLDS", "QC", "ZEPHYRA", "AVIONICS", "NORTHWIND", "OBSIDIAN", "ЖАРОВНЯ", "中华科技有限", "KALASHNIKOVA"];
    let screener = Screener::new(vec![entry(&listed.join(" "))]);
    let cases = [
        ("OLDS", "OLDS"),
        ("QC", "QC"),
        ("ZEPHIRA", "ZEPHYRA"),
        ("ZEHPYRA", "ZEPHYRA"),
        ("ZEPHYR", "ZEPHYRA"),
        ("ZEPHYRAS", "ZEPHYRA"),
        ("AVIONICKS", "AVIONICS"),
        ("NORHTWIDN", "NORTHWIND"),
        ("NORTWIND", "NORTHWIND"),
        ("KALSHNKOVA", "KALASHNIKOVA"),
        ("NORTHWINDXY", "NORTHWIND"),
        ("ЖАРОВЯН", "ЖАРОВНЯ"),
        ("ЖАРВНЯ", "ЖАРОВНЯ"),
        ("中华科有技限", "中华科技有限"),
        ("KLAASHNIKOVA", "KALASHNIKOVA"),
        ("KALASHIKOVAA", "KALASHNIKOVA"),
        // A transposition with a letter inserted between: two edits for the unrestricted distance
        // strsim computes, three for the restricted one (optimal string alignment).
        ("KALASHNIKOAXV", "KALASHNIKOVA"),
    ];
    for (query, expected) in cases {
        let id = screener.words.ids[expected];
        let sims = screener.words.similar(query);
        let found = sims.iter().find(|(i, _)| *i == id).map(|(_, s)| *s);
        let exact = score::word_similarity(query, query.chars().count(), expected, expected.chars().count());
        assert!(exact > 0.0, "{query} / {expected}: the case should pair");
        assert_eq!(found, Some(exact), "{query} / {expected}: {sims:?}");
    }
}

#[test]
fn similar_generated_words_equal_the_full_scan() {
    let (screener, vocabulary, mut rng) = sample_and_generated(600, 1);
    let (words_scan, joined_scan) = (Scan::new(&screener.words), Scan::new(&screener.joined));
    let mut queries: Vec<String> = screener.words.texts.clone();
    queries.extend(screener.joined.texts.iter().step_by(3).cloned());
    for listed in screener.words.texts.iter().chain(&screener.joined.texts) {
        queries.push(misspell(&mut rng, listed));
    }
    queries.extend(vocabulary.iter().step_by(2).cloned());
    queries.extend((0..1_000).map(|_| word(&mut rng)));

    let (mut fuzzy, mut two_edits) = (0, 0);
    for query in &queries {
        for (table, scan) in [(&screener.words, &words_scan), (&screener.joined, &joined_scan)] {
            let expected = scan.similar(table, query);
            let got = table.similar(query);
            let bits = |sims: &[(usize, f64)]| sims.iter().map(|(id, s)| (*id, s.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&expected), "{query:?}: {got:?} vs {expected:?}");
            fuzzy += got.iter().filter(|(_, s)| *s < 1.0).count();
            two_edits +=
                got.iter().filter(|(id, _)| strsim::damerau_levenshtein(query, &table.texts[*id]) == 2).count();
        }
    }
    // Not vacuous: misspellings were found, some two edits away.
    assert!(fuzzy > 1_000 && two_edits > 100, "{fuzzy} fuzzy, {two_edits} at two edits");
}

#[test]
fn similar_lengths_the_list_lacks_lose_no_partner() {
    // Words of a few lengths only, so that look-ups leave out the deletions no listed length can
    // share; queries of every length around them, each kind of edit.
    let mut rng = Rng(5);
    let listed: Vec<String> = (0..300)
        .map(|_| {
            let length = *rng.pick(&[4, 5, 9, 12, 13]);
            (0..length).map(|_| *rng.pick(&LETTERS[..8])).collect()
        })
        .collect();
    let screener = Screener::new(vec![entry(&listed.join(" "))]);
    let scan = Scan::new(&screener.words);
    let mut queries: Vec<String> = listed.clone();
    for word in &listed {
        queries.push(misspell(&mut rng, word));
        let once = misspell(&mut rng, word);
        queries.push(misspell(&mut rng, &once));
        queries.push(format!("{word}{}", rng.pick(LETTERS)));
        queries.push(word.chars().skip(1 + rng.below(2)).collect());
    }
    let mut fuzzy = 0;
    for query in &queries {
        let expected = scan.similar(&screener.words, query);
        assert_eq!(screener.words.similar(query), expected, "{query:?}");
        fuzzy += expected.iter().filter(|(_, s)| *s < 1.0).count();
    }
    assert!(fuzzy > 300, "only {fuzzy} fuzzy partners");
}

// === pruning ===

/// The best score bound over every choice of disjoint skipped look-ups, by enumeration:
/// `2Ω / (2Ω + W − C)` as the `prune` module docs derive it, with `ω = max` for two words.
fn best_bound(weights: &[f64], skips: &prune::Skips, q: usize, omega: f64, covered: f64) -> f64 {
    let total: f64 = weights.iter().sum();
    if q >= weights.len() {
        let denominator = 2.0 * omega + total - covered;
        return if denominator > 0.0 { 2.0 * omega / denominator } else { 0.0 };
    }
    let mut best = best_bound(weights, skips, q + 1, omega, covered);
    if skips.words[q] {
        best = best.max(best_bound(weights, skips, q + 1, omega + weights[q], covered + weights[q]));
    }
    if q + 1 < weights.len() && skips.joined[q] {
        let (a, b) = (weights[q], weights[q + 1]);
        best = best.max(best_bound(weights, skips, q + 2, omega + a.max(b), covered + a + b));
    }
    best
}

#[test]
fn skippable_no_choice_of_skipped_look_ups_reaches_the_threshold() {
    let mut rng = Rng(6);
    let mut skipped = 0;
    for _ in 0..5_000 {
        let weights: Vec<f64> = (0..1 + rng.below(6)).map(|_| 0.25 + rng.below(1_000) as f64 / 50.0).collect();
        let threshold = *rng.pick(&[0.0, 30.0, 50.0, REVIEW_THRESHOLD, DEFAULT_THRESHOLD, 100.0, 120.0]);
        let skips = prune::skippable(&weights, threshold);
        let bound = 100.0 * best_bound(&weights, &skips, 0, 0.0, 0.0);
        assert!(bound < threshold.min(100.0) || bound == 0.0, "{weights:?} at {threshold}: {skips:?} reach {bound}");
        skipped += skips.joined.iter().filter(|s| **s).count();
    }
    assert!(skipped > 1_000, "only {skipped} joined look-ups skipped");
}

// === word similarity ===

/// [`score::word_similarity`] as the module docs define it, with none of its shortcuts.
fn plain_word_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    let (a_chars, b_chars) = (a.chars().count(), b.chars().count());
    let edits = score::max_edits(a_chars.min(b_chars));
    if edits == 0 || a_chars.abs_diff(b_chars) > edits || strsim::damerau_levenshtein(a, b) > edits {
        return 0.0;
    }
    strsim::jaro_winkler(a, b)
}

#[test]
fn word_similarity_generated_pairs_equal_the_plain_definition() {
    let mut rng = Rng(6);
    let vocabulary = vocabulary(&mut rng, 2_000);
    let mut pairs = 0;
    let mut paired = 0;
    for a in &vocabulary {
        // A misspelling of its own (within the limit or beyond it), one of a misspelling, and
        // another word: near and far pairs, ASCII and not.
        let once = misspell(&mut rng, a);
        let others = [once.clone(), misspell(&mut rng, &once), rng.pick(&vocabulary).clone(), a.clone()];
        for b in &others {
            let expected = plain_word_similarity(a, b);
            let got = score::word_similarity(a, a.chars().count(), b, b.chars().count());
            assert_eq!(got.to_bits(), expected.to_bits(), "{a:?} / {b:?}");
            pairs += 1;
            paired += usize::from(expected > 0.0 && a != b);
        }
    }
    assert!(paired > 1_000, "only {paired} of {pairs} pairs paired: the test should meet near misses");
}

#[test]
fn letter_gap_never_exceeds_the_distance() {
    let mut rng = Rng(7);
    let vocabulary = vocabulary(&mut rng, 3_000);
    let mut bounded = 0;
    for a in &vocabulary {
        let far = rng.pick(&vocabulary).clone();
        for b in [misspell(&mut rng, a), far] {
            if let Some(gap) = score::letter_gap(a, &b) {
                let distance = strsim::damerau_levenshtein(a, &b);
                assert!(gap <= distance, "{a:?} / {b:?}: gap {gap}, distance {distance}");
                bounded += usize::from(gap > 0);
            }
        }
    }
    assert!(bounded > 2_000, "only {bounded} pairs with a gap");
}

// === screening ===

#[test]
fn screen_generated_names_equal_a_screen_by_full_scan() {
    let (screener, vocabulary, mut rng) = sample_and_generated(600, 2);
    let scan = ScanScreener::new(&screener);
    let list: Vec<ListEntry> = screener.entries().to_vec();
    let mut names = generated_names(&mut rng, 1_200, &list, &vocabulary[600..], &vocabulary[..600]);
    names.extend(list.iter().take(200).flat_map(|e| std::iter::once(e.name.clone()).chain(e.alt_names.clone())));
    names.extend(["Zephira Quantum Compute Co", "North Wind ARI", "Obsidianlantern Data Services"].map(String::from));

    let mut hits = 0;
    let mut skipped = 0;
    for name in &names {
        // At every threshold, the look-ups pruning leaves out lose no hit and change no score.
        for threshold in [0.0, 50.0, REVIEW_THRESHOLD, DEFAULT_THRESHOLD] {
            let expected = scan.screen(&[name], threshold);
            assert_eq!(screener.screen(&[name], threshold), expected, "{name} at {threshold}");
            if threshold == REVIEW_THRESHOLD {
                hits += expected.len();
            }
        }
        let weights: Vec<f64> = normalize(name).tokens.iter().map(|w| screener.weight(w)).collect();
        let skips = prune::skippable(&weights, REVIEW_THRESHOLD);
        skipped += skips.words.iter().chain(&skips.joined).filter(|s| **s).count();
    }
    assert!(hits > 300, "only {hits} hits: the names should include close variants of listed ones");
    // Not vacuous: pruning left look-ups out.
    assert!(skipped > 500, "only {skipped} look-ups skipped");
}

#[test]
fn batch_generated_subjects_equal_screen() {
    let (screener, vocabulary, mut rng) = sample_and_generated(600, 3);
    let list: Vec<ListEntry> = screener.entries().to_vec();
    let names = generated_names(&mut rng, 2_000, &list, &vocabulary[600..], &vocabulary[..600]);
    // Subjects of one to three names, as a tenant's legal name and aliases.
    let subjects: Vec<Vec<&str>> =
        names.chunks(3).map(|c| c[..1 + c.len() / 2].iter().map(String::as_str).collect()).collect();

    let expected: Vec<Vec<Hit>> = subjects.iter().map(|s| screener.screen(s, REVIEW_THRESHOLD)).collect();
    let mut batch = screener.batch();
    // Twice: the second time every look-up is remembered.
    for _ in 0..2 {
        for (subject, expected) in subjects.iter().zip(&expected) {
            assert_eq!(&batch.screen(subject, REVIEW_THRESHOLD), expected, "{subject:?}");
        }
    }
    let hits: usize = expected.iter().map(Vec::len).sum();
    assert!(hits > 50, "only {hits} hits");
}

#[test]
fn batch_one_per_thread_shares_the_screener() {
    fn shareable<T: Sync + Send>() {}
    shareable::<Screener>();
    fn movable<T: Send>() {}
    movable::<Batch<'static>>();

    let (screener, vocabulary, mut rng) = sample_and_generated(300, 4);
    let list: Vec<ListEntry> = screener.entries().to_vec();
    let names = generated_names(&mut rng, 600, &list, &vocabulary[300..], &vocabulary[..300]);
    let screen_all = |names: &[String]| -> Vec<Vec<Hit>> {
        let mut batch = screener.batch();
        names.iter().map(|n| batch.screen(&[n], REVIEW_THRESHOLD)).collect()
    };
    let (first, second) = names.split_at(names.len() / 2);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| screen_all(first));
        let b = s.spawn(|| screen_all(second));
        (a.join().unwrap(), b.join().unwrap())
    });
    let expected: Vec<Vec<Hit>> = names.iter().map(|n| screener.screen(&[n], REVIEW_THRESHOLD)).collect();
    assert_eq!([a, b].concat(), expected);
}

fn entry(name: &str) -> ListEntry {
    ListEntry {
        id: name.to_owned(),
        source: "test".to_owned(),
        entry_type: "Entity".to_owned(),
        name: name.to_owned(),
        alt_names: Vec::new(),
        programs: Vec::new(),
        countries: Vec::new(),
        line: 0,
    }
}

/// Not a check: prints how long screening generated tenant names against a CSL-sized generated
/// list takes, single thread. `SCREENING_TIMING_NAMES` overrides the name count.
#[test]
#[ignore = "a measurement; run with --ignored --nocapture"]
fn screen_generated_names_timing() {
    let count: usize = std::env::var("SCREENING_TIMING_NAMES").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng(17);
    let vocabulary = vocabulary(&mut rng, 60_000);
    let list = generated_list(&mut rng, 12_000, &vocabulary[..20_000]);
    let names = generated_names(&mut rng, count, &list, &vocabulary[20_000..], &vocabulary[..20_000]);

    let started = Instant::now();
    let screener = Screener::new(list);
    let compiled = started.elapsed();
    eprintln!(
        "list: {} entries, {} names, {} words, {} joined; compiled in {compiled:?}",
        screener.entries.len(),
        screener.names.len(),
        screener.words.texts.len(),
        screener.joined.texts.len()
    );

    eprintln!("{:?}, {:?}", screener.words.deletions, screener.joined.deletions);

    let started = Instant::now();
    let mut batch = screener.batch();
    let mut hits = 0;
    for name in &names {
        hits += batch.screen(&[name], REVIEW_THRESHOLD).len();
    }
    eprintln!("Batch::screen: {count} names in {:?}, {hits} hits; {batch:?}", started.elapsed());

    let started = Instant::now();
    let mut hits = 0;
    for name in &names {
        hits += screener.screen(&[name], REVIEW_THRESHOLD).len();
    }
    eprintln!("Screener::screen: {count} names in {:?}, {hits} hits", started.elapsed());

    let scanned = count.min(2_000);
    let scan = ScanScreener::new(&screener);
    let started = Instant::now();
    let mut hits = 0;
    for name in &names[..scanned] {
        hits += scan.screen(&[name], REVIEW_THRESHOLD).len();
    }
    eprintln!("full scan: first {scanned} names in {:?}, {hits} hits", started.elapsed());
}
