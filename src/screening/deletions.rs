//! The candidate index behind fuzzy word look-ups: every string left after deleting a few
//! characters from a list word (SymSpell's deletion neighbourhoods), so that a look-up touches only
//! the words it could pair with instead of the whole list.
//!
//! # Why a look-up misses nothing
//!
//! [`word_similarity`](super::score::word_similarity) pairs two different strings only when their
//! Damerau-Levenshtein distance `d` is at most `max_edits` of the shorter one's length; the limit
//! grows with length, so `d` is also within `max_edits` of either string's own length. Take an
//! optimal edit script and delete, on each side, every character it touches: a substitution is one
//! deletion on each side, an insertion or a deletion one on one side, and a transposition (with the
//! characters the unrestricted distance lets it have inserted or deleted between the two) one on
//! each side plus those in between on theirs, never more than the edit costs. Both sides are then
//! the same string, each reached by at most `d` deletions: a variant indexed for the list string
//! and a variant generated for the query. Every candidate is then scored by `word_similarity`
//! itself, and a hash collision only adds a candidate it rejects, so a look-up returns exactly what
//! comparing against every list string would.

use std::fmt;

use super::score::max_edits;

/// Hashes of the deletion variants of every indexed string, each packed with the string's id.
#[derive(Default)]
pub(super) struct DeletionIndex {
    /// `variant hash` with its low `id_bits` replaced by the string's id, sorted and deduplicated,
    /// so one variant's strings are adjacent. Eight bytes a variant; a hash cut short by the id
    /// only collides more often, which costs a rejected candidate, never a missed one.
    keys: Vec<u64>,
    /// `keys[starts[b]..starts[b + 1]]` holds the keys whose top `bucket_bits` bits are `b`: hashes
    /// are uniform, so a look-up reads one short run instead of binary-searching millions of keys.
    starts: Vec<usize>,
    bucket_bits: u32,
    id_bits: u32,
    /// `lengths[n]`: some indexed string is `n` chars long.
    lengths: Vec<bool>,
}

/// Buffers reused across the variants of one string.
#[derive(Default)]
struct Scratch {
    /// `prefix[i]`: the polynomial hash of the string's first `i` chars.
    prefix: Vec<u64>,
    /// `powers[i]`: `BASE` to the `i`.
    powers: Vec<u64>,
    /// Char positions deleted, ascending.
    deleted: Vec<usize>,
}

/// The multiplier of the polynomial hash: odd, so that multiplying by it loses nothing, with its
/// bits spread out (the golden ratio's).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

// === impl DeletionIndex ===

impl DeletionIndex {
    /// Indexes `strings`, whose ids are their positions.
    pub(super) fn new<'a>(strings: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let id_bits = u64::BITS - (strings.len() as u64).leading_zeros();
        let mut scratch = Scratch::default();
        let mut keys: Vec<u64> = Vec::new();
        let mut lengths: Vec<bool> = Vec::new();
        for (id, text) in strings.enumerate() {
            let chars = scratch.load(text);
            if lengths.len() <= chars {
                lengths.resize(chars + 1, false);
            }
            lengths[chars] = true;
            scratch.for_each_variant(&|_| true, &mut |hash| keys.push(pack(hash, id as u64, id_bits)));
        }
        keys.sort_unstable();
        keys.dedup();
        // Four to eight keys a bucket: the directory costs at most two bytes a key and a look-up
        // reads about one cache line of keys. The id has the low bits, so buckets take top bits.
        let bucket_bits = (keys.len() / 4).max(2).ilog2().clamp(1, u64::BITS.saturating_sub(id_bits).max(1));
        let mut starts = vec![0usize; (1usize << bucket_bits) + 1];
        for key in &keys {
            if let Some(count) = starts.get_mut(bucket(*key, bucket_bits) + 1) {
                *count += 1;
            }
        }
        let mut total = 0;
        for start in &mut starts {
            total += *start;
            *start = total;
        }
        DeletionIndex { keys, starts, bucket_bits, id_bits, lengths }
    }

    /// Appends to `out` the id of every indexed string that shares a deletion variant with `word`:
    /// every string it could pair with (see the module docs), in no order, some more than once.
    pub(super) fn candidates(&self, word: &str, out: &mut Vec<usize>) {
        let id_mask = id_mask(self.id_bits);
        let mut scratch = Scratch::default();
        let chars = scratch.load(word);
        // A variant `j` deletions short of `word` can only be shared with a string of `m` chars
        // that both pair within `e = max_edits(min)` edits and reach it in `m - (chars - j)`
        // deletions: the module docs' common string has at most `e` deletions on either side. When
        // no indexed string has such a length, the variants with `j` deletions are not looked up.
        let needed = |j: usize| {
            self.lengths.iter().enumerate().any(|(m, present)| {
                let e = max_edits(chars.min(m));
                *present && j <= e && (m + j).checked_sub(chars).is_some_and(|more| more <= e)
            })
        };
        let levels: Vec<bool> = (0..=max_edits(chars)).map(needed).collect();
        let wanted = |j: usize| levels.get(j).copied().unwrap_or(false);
        // Hashed first and probed after, so the probes (each a likely cache miss in an index of
        // megabytes) do not wait on each other's hashing and overlap in the memory system.
        let mut hashes: Vec<u64> = Vec::new();
        scratch.for_each_variant(&wanted, &mut |hash| hashes.push(hash));
        for hash in hashes {
            let b = bucket(hash, self.bucket_bits);
            let (Some(start), Some(end)) = (self.starts.get(b), self.starts.get(b + 1)) else { continue };
            let run = self.keys.get(*start..*end).unwrap_or_default();
            for key in run {
                if key & !id_mask == hash & !id_mask {
                    out.push((key & id_mask) as usize);
                }
            }
        }
    }
}

impl fmt::Debug for DeletionIndex {
    /// Sizes only: the keys run to millions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeletionIndex")
            .field("keys", &self.keys.len())
            .field("buckets", &(1u64 << self.bucket_bits))
            .finish()
    }
}

fn id_mask(id_bits: u32) -> u64 {
    1u64.checked_shl(id_bits).map_or(u64::MAX, |bit| bit - 1)
}

fn pack(hash: u64, id: u64, id_bits: u32) -> u64 {
    let mask = id_mask(id_bits);
    (hash & !mask) | (id & mask)
}

fn bucket(hash: u64, bucket_bits: u32) -> usize {
    hash.checked_shr(u64::BITS - bucket_bits).unwrap_or(0) as usize
}

// === impl Scratch ===

impl Scratch {
    /// Takes `word`'s prefix hashes; returns its length in chars.
    fn load(&mut self, word: &str) -> usize {
        self.prefix.clear();
        self.prefix.push(0);
        let mut hash = 0u64;
        for c in word.chars() {
            hash = hash.wrapping_mul(BASE).wrapping_add(u64::from(c));
            self.prefix.push(hash);
        }
        let chars = self.prefix.len() - 1;
        while self.powers.len() <= chars {
            self.powers.push(self.powers.last().map_or(1, |p| p.wrapping_mul(BASE)));
        }
        chars
    }

    /// Calls `f` with the hash of every string left after deleting `j` chars from the loaded word,
    /// for every `j` up to `max_edits` of its length that `wanted` accepts (the word itself is
    /// `j = 0`). A string reachable in several ways (`AAB` less either `A`) comes more than once.
    fn for_each_variant(&mut self, wanted: &impl Fn(usize) -> bool, f: &mut impl FnMut(u64)) {
        let chars = self.prefix.len() - 1;
        self.deleted.clear();
        if let Some(deepest) = (0..=max_edits(chars).min(chars)).rev().find(|j| wanted(*j)) {
            self.delete_from(0, deepest, wanted, f);
        }
    }

    /// Hashes the variant without `self.deleted` (when `wanted`), then every variant that also
    /// deletes up to `more` chars at or after `from`: each set of positions once.
    fn delete_from(&mut self, from: usize, more: usize, wanted: &impl Fn(usize) -> bool, f: &mut impl FnMut(u64)) {
        if wanted(self.deleted.len()) {
            f(self.hash_without());
        }
        if more == 0 {
            return;
        }
        for at in from..self.prefix.len() - 1 {
            self.deleted.push(at);
            self.delete_from(at + 1, more - 1, wanted, f);
            self.deleted.pop();
        }
    }

    /// The hash of the chars left once `self.deleted` are taken out, from the prefix hashes: the
    /// polynomial hash of the kept chars in order, so equal strings (equal chars, equal UTF-8)
    /// hash the same however they were reached. Its length is mixed in and the bits spread, as
    /// buckets take the top bits. Hashes are fixed within a process, which is all the index and
    /// its look-ups need to agree; a collision only adds a candidate that scoring rejects.
    fn hash_without(&self) -> u64 {
        let chars = self.prefix.len() - 1;
        let mut hash = 0u64;
        let mut kept = 0;
        for end in self.deleted.iter().copied().chain(std::iter::once(chars)) {
            hash = hash.wrapping_mul(self.power(end - kept)).wrapping_add(self.segment(kept, end));
            kept = end + 1;
        }
        mix(hash ^ ((chars - self.deleted.len()) as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    /// The polynomial hash of chars `start..end`.
    fn segment(&self, start: usize, end: usize) -> u64 {
        let (Some(whole), Some(before)) = (self.prefix.get(end), self.prefix.get(start)) else { return 0 };
        whole.wrapping_sub(before.wrapping_mul(self.power(end - start)))
    }

    fn power(&self, n: usize) -> u64 {
        self.powers.get(n).copied().unwrap_or(0)
    }
}

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}
