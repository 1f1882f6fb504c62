//! Denied-party screening: reading the US Consolidated Screening List (CSL) CSV and matching names
//! (a tenant's legal name, alt names, owners, parent) against it, with scores a compliance officer
//! can check by hand. Pure: no I/O, no dependency on the rest of the crate.
//!
//! # How a score is computed
//!
//! 1. **Normalize** both names ([`normalize()`]): uppercase, NFKC, diacritics dropped, punctuation
//!    split, initialisms joined (`O.L.D.S.` = `OLDS`), legal forms (`Co., Ltd.`, `LLC`, `GmbH`, …)
//!    set aside and never counted, particles (`THE`, `OF`, `AND`) dropped. Word order is ignored.
//! 2. **Weigh** every word by how rare it is on the list: `1 + ln(N / df)`, with `N` the number of
//!    entries and `df` the number of entries using the word (at least 1, so a word the list has
//!    never seen weighs as much as its rarest word). Generic business words (`TRADING`, `GROUP`,
//!    `INTERNATIONAL`, `TECHNOLOGY`, `DATA`, `SERVICES`, …) weigh a quarter of that.
//! 3. **Pair** the words one-to-one, strongest evidence first. Two words pair when they are within
//!    0 edits (shorter word up to 4 letters), 1 edit (5 to 8) or 2 edits (9 or more) of each other
//!    (Damerau-Levenshtein); the pair's similarity is their Jaro-Winkler similarity, 1.0 when equal.
//!    Two adjacent leftover words may pair with one word written together (`NORTH WIND`/`NORTHWIND`).
//!    A pair weighs the smaller of its two words' weights.
//! 4. **Score** = `100 × Σ 2·similarity·weight over pairs / (Σ 2·weight over pairs + Σ weight of every
//!    unpaired word, on either side)`: a weighted Dice coefficient, the same whichever name is the
//!    query. It is 100 only when every word on both sides pairs exactly; a rare word left unpaired on
//!    either side pulls it down, a generic one barely does, a legal form not at all.
//! 5. An entry's score is the best over all its names (name and each alt name) and all query names.
//!
//! # Bands
//!
//! - **Hit**, at or above [`DEFAULT_THRESHOLD`] (85): the names agree on all their distinctive words
//!   up to spelling, order and legal form, or the listed name appears whole in a longer one
//!   (`ZEPHYRA QUANTUM COMPUTE (SHENZHEN) CO LTD` scores 86 against the sample list).
//! - **Review**, from [`REVIEW_THRESHOLD`] (70) up to 85: most of the evidence agrees but a
//!   distinctive word is missing. `LANTERN DATA SERVICES LLC` against `OBSIDIAN LANTERN DATA
//!   SERVICES LLC` scores 75: it shares `LANTERN` and the generic tail, not `OBSIDIAN`, which the
//!   alias `OBSIDIAN LANTERN` shows is half the party's own name. `QUANTUM COMPUTE CO LTD` against
//!   `ZEPHYRA QUANTUM COMPUTE CO LTD` scores 80 on the three-entry sample, where `QUANTUM` weighs
//!   as much as `ZEPHYRA`; on the full list, words many entries use weigh less and it drops.
//! - **Pass**, below 70: at most one distinctive word in common (`NORTHWIND TRADERS INC` against
//!   `NORTHWIND ARI`: 62), or only generic words (`ACME DATA SERVICES LLC`: 25).
//!
//! A hit is a lead, not a verdict: entity type, addresses, countries and identifiers decide it, as
//! OFAC's guidance on assessing name matches describes.
//!
//! # Many names
//!
//! A word is looked up through an index of what is left of every list word after deleting as many
//! characters as its edit limit allows. It finds exactly the words that comparing with every list
//! word would pair, so it decides how long a look-up takes, never a score. A look-up through
//! which no list name could reach the threshold (the query's own weights bound the score of a name
//! it alone finds) is left out, and the similarities it would have given are computed for the
//! names other look-ups find: it decides which names are scored, never a score or a hit. To screen
//! many subjects, [`Screener::batch`] also remembers each word's look-up from one subject to the
//! next.
//!
//! # Limits
//!
//! No phonetic matching (Soundex), no Chinese traditional/simplified folding, no transliteration
//! between scripts: names are compared in the script they are written in.

mod batch;
mod deletions;
#[cfg(test)]
mod index_tests;
mod list;
mod normalize;
mod prune;
mod score;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

pub use batch::Batch;
pub use list::{CSL_COLUMNS, ListEntry, ScreeningError, parse_csl_csv};
pub use normalize::{NormalizedName, normalize};

use deletions::DeletionIndex;
use score::{Alignment, Similarities, align, word_similarity};

/// Score at or above which a name is a hit.
pub const DEFAULT_THRESHOLD: f64 = 85.0;
/// Score at or above which a name is worth a human review; below it, a pass.
pub const REVIEW_THRESHOLD: f64 = 70.0;

/// How much a generic business word weighs relative to a word of the same list frequency.
const GENERIC_FACTOR: f64 = 0.25;

/// One list entry that matched one of the screened names.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Index into [`Screener::entries`].
    pub entry: usize,
    /// The screened name that matched, as given.
    pub query: String,
    /// The entry's name or alt name that matched, as listed.
    pub matched: String,
    /// `0.0..=100.0`; see the module docs.
    pub score: f64,
    /// Every word of both names and what it paired with: the score's working, line by line.
    pub evidence: Vec<Evidence>,
}

/// One line of a score's working: a pair of words, or a word that found no partner.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The normalized query word(s); `None` for a list word left unpaired.
    pub query: Option<String>,
    /// The normalized list word(s); `None` for a query word left unpaired.
    pub list: Option<String>,
    /// Jaro-Winkler similarity of the pair, `0.0` when unpaired.
    pub similarity: f64,
    /// The weight the line carries in the score.
    pub weight: f64,
}

/// Entries compiled for matching: names normalized and word statistics computed once.
#[derive(Debug)]
pub struct Screener {
    entries: Vec<ListEntry>,
    names: Vec<CompiledName>,
    /// Every word of every list name.
    words: Lexicon,
    /// By word id: `generic factor × (1 + ln(N / df))`.
    word_weights: Vec<f64>,
    /// Every two adjacent words of a list name, written together, for compound matching.
    joined: Lexicon,
    /// `1 + ln(N)`: the weight of a word seen in a single entry, or never.
    rare_weight: f64,
}

#[derive(Debug)]
struct CompiledName {
    entry: usize,
    /// As listed.
    text: String,
    /// Ids in `Screener::words`.
    words: Vec<usize>,
    weights: Vec<f64>,
    /// `joined[p]`: id in `Screener::joined` of words `p` and `p + 1` written together.
    joined: Vec<usize>,
}

/// Interned strings with their length, the names that use them, and an index of their deletion
/// variants so fuzzy look-ups only compare strings that could be within the edit limit.
#[derive(Debug, Default)]
struct Lexicon {
    texts: Vec<String>,
    chars: Vec<usize>,
    ids: HashMap<String, usize>,
    /// Name ids using each string, ascending.
    postings: Vec<Vec<usize>>,
    /// Of every string interned before [`Lexicon::index_deletions`].
    deletions: DeletionIndex,
}

/// Which lexicon of the screener a look-up goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// [`Screener::words`].
    Words,
    /// [`Screener::joined`].
    Joined,
}

/// One kind of look-up a query makes: its words against list words ([`Look::Word`]) and against
/// list pairs written together ([`Look::WordJoined`]), and its adjacent pairs written together
/// against list words ([`Look::Compound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Word,
    Compound,
    WordJoined,
}

/// A string's similarity to every lexicon string it pairs with, by ascending id. Shared, so a
/// [`Batch`] hands the same look-up to every name using the word without copying it.
type Sims = Arc<[(usize, f64)]>;

/// One screened name, with its similarity to every list word it could pair with, as far as the
/// threshold needs them. A look-up [`prune::skippable`] leaves out finds no candidates; its
/// similarities come from the same look-up when one is at hand (a [`Batch`] remembers it), or
/// else it is `None` and the aligner gets them from [`word_similarity`] itself, the function the
/// look-ups filter by. Either way the aligner sees the same numbers.
struct Query<'a> {
    text: &'a str,
    words: Vec<String>,
    chars: Vec<usize>,
    weights: Vec<f64>,
    /// Per query position `q`: words `q` and `q + 1` written together, and its length in chars.
    joined: Vec<(String, usize)>,
    /// Per query word: list word id → similarity.
    word_sims: Vec<Option<Sims>>,
    /// Per query position `q`: words `q` and `q + 1` written together, list word id → similarity.
    joined_sims: Vec<Option<Sims>>,
    /// Per query word: joined list word pair id → similarity.
    word_joined_sims: Vec<Option<Sims>>,
    /// The look-ups left out, which find no candidates.
    skips: prune::Skips,
}

struct Best {
    query: usize,
    name: usize,
    alignment: Alignment,
}

// === impl Screener ===

impl Screener {
    /// Compiles the entries. Names that normalize to nothing are skipped; [`parse_csl_csv`] refuses
    /// them, so only hand-built entries can have them.
    pub fn new(entries: Vec<ListEntry>) -> Self {
        let mut words = Lexicon::default();
        let mut joined = Lexicon::default();
        let mut names: Vec<CompiledName> = Vec::new();
        for (entry, listed) in entries.iter().enumerate() {
            for text in std::iter::once(&listed.name).chain(&listed.alt_names) {
                let tokens = normalize(text).tokens;
                if tokens.is_empty() {
                    continue;
                }
                let name_id = names.len();
                let word_ids = tokens.iter().map(|t| words.intern(t, name_id)).collect();
                let joined_ids =
                    tokens.windows(2).map(|w| joined.intern(&[&*w[0], &*w[1]].concat(), name_id)).collect();
                names.push(CompiledName {
                    entry,
                    text: text.clone(),
                    words: word_ids,
                    weights: Vec::new(),
                    joined: joined_ids,
                });
            }
        }
        words.index_deletions();
        joined.index_deletions();
        let entry_count = entries.len().max(1) as f64;
        // Document frequency counts entries, not names: an entry whose aliases repeat its brand is
        // still one party using that word.
        let word_weights: Vec<f64> = words
            .postings
            .iter()
            .zip(&words.texts)
            .map(|(users, text)| {
                let mut user_entries: Vec<usize> = users.iter().map(|n| names[*n].entry).collect();
                user_entries.dedup();
                let df = user_entries.len().max(1) as f64;
                generic_factor(text) * (1.0 + (entry_count / df).ln())
            })
            .collect();
        for name in &mut names {
            name.weights = name.words.iter().map(|id| word_weights[*id]).collect();
        }
        Screener { entries, names, words, word_weights, joined, rare_weight: 1.0 + entry_count.ln() }
    }

    pub fn entries(&self) -> &[ListEntry] {
        &self.entries
    }

    /// Every list entry whose name or alt name scores at or above `threshold` (0-100) against any of
    /// `names`; the best hit per entry, sorted by score descending (then by entry, for a stable
    /// report). Entries sharing no similar word with any of `names` are never reported, whatever
    /// the threshold.
    ///
    /// To screen many subjects, [`Screener::batch`] gives the same hits faster.
    pub fn screen(&self, names: &[&str], threshold: f64) -> Vec<Hit> {
        let queries: Vec<Query<'_>> = names
            .iter()
            .map(|n| {
                self.query(n, threshold, &mut |look, word, needed| {
                    needed.then(|| self.lexicon(look.table()).similar(word).into())
                })
            })
            .collect();
        self.rank(&queries, threshold)
    }

    /// A screening session for many subjects, on one thread: it remembers each word's look-up,
    /// which tenant names share heavily. Each thread takes its own; the screener is shared.
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// The best hit per entry over `queries`; see [`Screener::screen`].
    fn rank(&self, queries: &[Query<'_>], threshold: f64) -> Vec<Hit> {
        let mut best: HashMap<usize, Best> = HashMap::new();
        for (query_idx, query) in queries.iter().enumerate() {
            for name_id in self.candidates(query) {
                let name = &self.names[name_id];
                let sims = NameSims { query, name, words: &self.words, joined: &self.joined };
                let alignment = align(&query.weights, &name.weights, &sims);
                let better = best.get(&name.entry).is_none_or(|b| alignment.score > b.alignment.score);
                if alignment.score >= threshold && better {
                    best.insert(name.entry, Best { query: query_idx, name: name_id, alignment });
                }
            }
        }
        let mut hits: Vec<Hit> =
            best.into_values().map(|b| self.hit(&queries[b.query], b.name, &b.alignment)).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.entry.cmp(&b.entry)));
        hits
    }

    /// Normalizes `text` and looks up its words, and adjacent pairs written together, through
    /// `similar`: those through which a name could score `threshold` or more with `needed` set,
    /// the others without, for `similar` to answer only when it has them at hand.
    fn query<'a>(
        &self,
        text: &'a str,
        threshold: f64,
        similar: &mut impl FnMut(Look, &str, bool) -> Option<Sims>,
    ) -> Query<'a> {
        let words = normalize(text).tokens;
        let chars = words.iter().map(|w| w.chars().count()).collect();
        let weights: Vec<f64> = words.iter().map(|w| self.weight(w)).collect();
        let joined: Vec<(String, usize)> = words
            .windows(2)
            .map(|w| {
                let text = [&*w[0], &*w[1]].concat();
                let chars = text.chars().count();
                (text, chars)
            })
            .collect();
        let skips = prune::skippable(&weights, threshold);
        let made = |skipped: &[bool], q: usize| !skipped.get(q).copied().unwrap_or(false);
        let word_sims = words.iter().enumerate().map(|(q, w)| similar(Look::Word, w, made(&skips.words, q))).collect();
        let joined_sims =
            joined.iter().enumerate().map(|(q, (w, _))| similar(Look::Compound, w, made(&skips.joined, q))).collect();
        let word_joined_sims =
            words.iter().enumerate().map(|(q, w)| similar(Look::WordJoined, w, made(&skips.words, q))).collect();
        Query { text, words, chars, weights, joined, word_sims, joined_sims, word_joined_sims, skips }
    }

    fn lexicon(&self, table: Table) -> &Lexicon {
        match table {
            Table::Words => &self.words,
            Table::Joined => &self.joined,
        }
    }

    fn weight(&self, word: &str) -> f64 {
        match self.words.ids.get(word) {
            Some(id) => self.word_weights[*id],
            None => generic_factor(word) * self.rare_weight,
        }
    }

    /// Names sharing at least one pairable word (or compound) with the query through a look-up it
    /// made, ascending.
    fn candidates(&self, query: &Query<'_>) -> Vec<usize> {
        fn made<'q>(sims: &'q [Option<Sims>], skipped: &'q [bool]) -> impl Iterator<Item = &'q [(usize, f64)]> {
            sims.iter().zip(skipped).filter(|(_, skipped)| !**skipped).filter_map(|(sims, _)| sims.as_deref())
        }
        let skips = &query.skips;
        let mut ids: Vec<usize> = Vec::new();
        for sims in made(&query.word_sims, &skips.words).chain(made(&query.joined_sims, &skips.joined)) {
            for (word, _) in sims {
                ids.extend_from_slice(&self.words.postings[*word]);
            }
        }
        for sims in made(&query.word_joined_sims, &skips.words) {
            for (pair, _) in sims.iter() {
                ids.extend_from_slice(&self.joined.postings[*pair]);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn hit(&self, query: &Query<'_>, name_id: usize, alignment: &Alignment) -> Hit {
        let name = &self.names[name_id];
        let list_words: Vec<&str> = name.words.iter().map(|id| self.words.texts[*id].as_str()).collect();
        let mut pairs = alignment.pairs.clone();
        pairs.sort_by_key(|p| p.list.start);
        let mut evidence: Vec<Evidence> = pairs
            .iter()
            .map(|p| Evidence {
                query: Some(query.words[p.query.range()].join(" ")),
                list: Some(list_words[p.list.range()].join(" ")),
                similarity: p.similarity,
                weight: p.weight,
            })
            .collect();
        for (l, paired) in alignment.list_paired.iter().enumerate() {
            if !paired {
                let list = Some(list_words[l].to_owned());
                evidence.push(Evidence { query: None, list, similarity: 0.0, weight: name.weights[l] });
            }
        }
        for (q, paired) in alignment.query_paired.iter().enumerate() {
            if !paired {
                let query_word = Some(query.words[q].clone());
                evidence.push(Evidence { query: query_word, list: None, similarity: 0.0, weight: query.weights[q] });
            }
        }
        Hit {
            entry: name.entry,
            query: query.text.to_owned(),
            matched: name.text.clone(),
            score: alignment.score,
            evidence,
        }
    }
}

fn generic_factor(word: &str) -> f64 {
    if normalize::is_generic(word) { GENERIC_FACTOR } else { 1.0 }
}

struct NameSims<'q, 'n> {
    query: &'q Query<'q>,
    name: &'n CompiledName,
    words: &'n Lexicon,
    joined: &'n Lexicon,
}

impl Similarities for NameSims<'_, '_> {
    fn word(&self, q: usize, l: usize) -> f64 {
        let (query, id) = (self.query, self.name.words[l]);
        lookup(&query.word_sims[q], id, || self.words.similarity(&query.words[q], query.chars[q], id))
    }
    fn query_joined(&self, q: usize, l: usize) -> f64 {
        let (query, id) = (self.query, self.name.words[l]);
        let (text, chars) = &query.joined[q];
        lookup(&query.joined_sims[q], id, || self.words.similarity(text, *chars, id))
    }
    fn list_joined(&self, q: usize, l: usize) -> f64 {
        let (query, id) = (self.query, self.name.joined[l]);
        lookup(&query.word_joined_sims[q], id, || self.joined.similarity(&query.words[q], query.chars[q], id))
    }
}

/// `id`'s similarity from a look-up, or computed when the look-up was left out.
fn lookup(sims: &Option<Sims>, id: usize, compute: impl FnOnce() -> f64) -> f64 {
    match sims {
        Some(sims) => {
            sims.binary_search_by_key(&id, |(i, _)| *i).ok().and_then(|at| sims.get(at)).map_or(0.0, |(_, s)| *s)
        }
        None => compute(),
    }
}

// === impl Look ===

impl Look {
    fn table(self) -> Table {
        match self {
            Look::Word | Look::Compound => Table::Words,
            Look::WordJoined => Table::Joined,
        }
    }
}

// === impl Lexicon ===

impl Lexicon {
    fn intern(&mut self, text: &str, name_id: usize) -> usize {
        let id = match self.ids.get(text) {
            Some(id) => *id,
            None => {
                let id = self.texts.len();
                self.texts.push(text.to_owned());
                self.chars.push(text.chars().count());
                self.ids.insert(text.to_owned(), id);
                self.postings.push(Vec::new());
                id
            }
        };
        let postings = &mut self.postings[id];
        if postings.last() != Some(&name_id) {
            postings.push(name_id);
        }
        id
    }

    /// Builds the look-up index once every string is interned.
    fn index_deletions(&mut self) {
        self.deletions = DeletionIndex::new(self.texts.iter().map(String::as_str));
    }

    /// Every string that `word` pairs with, and how strongly, by ascending id.
    fn similar(&self, word: &str) -> Vec<(usize, f64)> {
        let chars = word.chars().count();
        let mut ids = Vec::new();
        self.deletions.candidates(word, &mut ids);
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| {
                let similarity = self.similarity(word, chars, id);
                (similarity > 0.0).then_some((id, similarity))
            })
            .collect()
    }

    /// `word`'s similarity to string `id`: what [`Lexicon::similar`] gives for it, or 0.
    fn similarity(&self, word: &str, chars: usize, id: usize) -> f64 {
        match (self.texts.get(id), self.chars.get(id)) {
            (Some(text), Some(text_chars)) => word_similarity(word, chars, text, *text_chars),
            _ => 0.0,
        }
    }
}
