//! Screening many subjects in a row, remembering each word's look-up between them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Hit, Look, Query, Screener, Sims};

/// Look-ups of single words remembered per table. Tenant names repeat a small vocabulary (brands,
/// places, trades), which fits; when a table fills up it starts over, which costs one look-up per
/// word still in use. About 100 bytes an item, so a batch stays in the tens of megabytes.
const WORDS_REMEMBERED: usize = 1 << 17;

/// Look-ups of two query words written together. Nearly every pair occurs in one subject only
/// (a legal name and the alias that repeats it), so only the latest few are kept, where they
/// cannot crowd out the words.
const COMPOUNDS_REMEMBERED: usize = 1 << 10;

/// A screening session on one thread: [`Batch::screen`] gives exactly [`Screener::screen`]'s hits,
/// reusing the look-ups of earlier subjects. Made by [`Screener::batch`].
pub struct Batch<'s> {
    screener: &'s Screener,
    words: Memo,
    compounds: Memo,
    word_joined: Memo,
    /// Shared by every look-up that finds nothing, most of them, so they allocate nothing.
    empty: Sims,
}

/// Remembered look-ups by the string looked up, up to a number of them.
struct Memo {
    /// foldhash: a fast hash for short strings; not resistant to chosen collisions, which could
    /// cost time only, and the strings come from the operator's own config.
    sims: HashMap<Box<str>, Sims, foldhash::fast::RandomState>,
    capacity: usize,
}

// === impl Batch ===

impl<'s> Batch<'s> {
    pub(super) fn new(screener: &'s Screener) -> Self {
        Batch {
            screener,
            words: Memo::new(WORDS_REMEMBERED),
            compounds: Memo::new(COMPOUNDS_REMEMBERED),
            word_joined: Memo::new(WORDS_REMEMBERED),
            empty: Arc::from(Vec::new()),
        }
    }

    /// As [`Screener::screen`].
    pub fn screen(&mut self, names: &[&str], threshold: f64) -> Vec<Hit> {
        let screener = self.screener;
        let queries: Vec<Query<'_>> = names
            .iter()
            .map(|n| screener.query(n, threshold, &mut |look, word, needed| self.similar(look, word, needed)))
            .collect();
        screener.rank(&queries, threshold)
    }

    /// A look-up the threshold needs, or one it does not when the batch has it at hand. A single
    /// word's is always made: it is remembered, and answers the aligner's questions about every
    /// later subject using the word (a trade word like `ROBOTICS` in a million names) faster than
    /// scoring the word against each name's words one by one.
    fn similar(&mut self, look: Look, word: &str, needed: bool) -> Option<Sims> {
        let memo = match look {
            Look::Word => &mut self.words,
            Look::Compound => &mut self.compounds,
            Look::WordJoined => &mut self.word_joined,
        };
        if let Some(sims) = memo.sims.get(word) {
            return Some(Arc::clone(sims));
        }
        if !needed && look == Look::Compound {
            return None;
        }
        let found = self.screener.lexicon(look.table()).similar(word);
        let sims = if found.is_empty() { Arc::clone(&self.empty) } else { Sims::from(found) };
        memo.insert(word, Arc::clone(&sims));
        Some(sims)
    }
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("words", &self.words.sims.len())
            .field("compounds", &self.compounds.sims.len())
            .field("word_joined", &self.word_joined.sims.len())
            .finish()
    }
}

// === impl Memo ===

impl Memo {
    fn new(capacity: usize) -> Self {
        Memo { sims: HashMap::default(), capacity }
    }

    fn insert(&mut self, word: &str, sims: Sims) {
        if self.sims.len() >= self.capacity {
            self.sims.clear();
        }
        self.sims.insert(word.into(), sims);
    }
}
