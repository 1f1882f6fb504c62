//! Screening many subjects in a row, remembering each word's look-up between them.

use std::fmt;
use std::sync::Arc;

use quick_cache::unsync::Cache;

use super::{Hit, Query, Screener, Sims, Table};

/// Look-ups remembered per table. Tenant names repeat a small vocabulary (brands, places, trades)
/// while most two-word compounds occur once; the cache keeps the repeated words and lets the
/// one-offs pass through. About 100 bytes an item, so a batch stays in the tens of megabytes.
const REMEMBERED: usize = 1 << 17;

/// A screening session on one thread: [`Batch::screen`] gives exactly [`Screener::screen`]'s hits,
/// reusing the look-ups of earlier subjects. Made by [`Screener::batch`].
pub struct Batch<'s> {
    screener: &'s Screener,
    words: Cache<Box<str>, Sims>,
    joined: Cache<Box<str>, Sims>,
}

// === impl Batch ===

impl<'s> Batch<'s> {
    pub(super) fn new(screener: &'s Screener) -> Self {
        Batch { screener, words: Cache::new(REMEMBERED), joined: Cache::new(REMEMBERED) }
    }

    /// As [`Screener::screen`].
    pub fn screen(&mut self, names: &[&str], threshold: f64) -> Vec<Hit> {
        let screener = self.screener;
        let queries: Vec<Query<'_>> =
            names.iter().map(|n| screener.query(n, threshold, &mut |table, word| self.similar(table, word))).collect();
        screener.rank(&queries, threshold)
    }

    fn similar(&mut self, table: Table, word: &str) -> Sims {
        let cache = match table {
            Table::Words => &mut self.words,
            Table::Joined => &mut self.joined,
        };
        if let Some(sims) = cache.get(word) {
            return Arc::clone(sims);
        }
        let sims: Sims = self.screener.lexicon(table).similar(word).into();
        cache.insert(word.into(), Arc::clone(&sims));
        sims
    }
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch").field("words", &self.words.len()).field("joined", &self.joined.len()).finish()
    }
}
