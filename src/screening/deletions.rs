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
use std::hash::{DefaultHasher, Hasher};

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
}

/// Buffers reused across the variants of one string.
#[derive(Default)]
struct Scratch {
    /// Byte offset of each char of the string, and its length in bytes last.
    bounds: Vec<usize>,
    /// Char positions deleted, ascending.
    deleted: Vec<usize>,
    bytes: Vec<u8>,
}

// === impl DeletionIndex ===

impl DeletionIndex {
    /// Indexes `strings`, whose ids are their positions.
    pub(super) fn new<'a>(strings: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let id_bits = u64::BITS - (strings.len() as u64).leading_zeros();
        let mut scratch = Scratch::default();
        let mut keys: Vec<u64> = Vec::new();
        for (id, text) in strings.enumerate() {
            for_each_variant(text, &mut scratch, &mut |hash| keys.push(pack(hash, id as u64, id_bits)));
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
        DeletionIndex { keys, starts, bucket_bits, id_bits }
    }

    /// Appends to `out` the id of every indexed string that shares a deletion variant with `word`:
    /// every string it could pair with (see the module docs), in no order, some more than once.
    pub(super) fn candidates(&self, word: &str, out: &mut Vec<usize>) {
        let id_mask = id_mask(self.id_bits);
        let mut scratch = Scratch::default();
        for_each_variant(word, &mut scratch, &mut |hash| {
            let b = bucket(hash, self.bucket_bits);
            let (Some(start), Some(end)) = (self.starts.get(b), self.starts.get(b + 1)) else { return };
            let run = self.keys.get(*start..*end).unwrap_or_default();
            for key in run {
                if key & !id_mask == hash & !id_mask {
                    out.push((key & id_mask) as usize);
                }
            }
        });
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

/// Calls `f` with the hash of every string left after deleting up to `max_edits` of `word`'s
/// length characters from it (the word itself included). A string reachable in several ways
/// (`AAB` less either `A`) comes more than once.
fn for_each_variant(word: &str, scratch: &mut Scratch, f: &mut impl FnMut(u64)) {
    scratch.bounds.clear();
    scratch.bounds.extend(word.char_indices().map(|(at, _)| at));
    let chars = scratch.bounds.len();
    scratch.bounds.push(word.len());
    scratch.deleted.clear();
    delete_from(word, 0, max_edits(chars).min(chars), scratch, f);
}

/// Hashes the variant without `scratch.deleted`, then every variant that also deletes up to `more`
/// chars at or after `from`: each set of positions once.
fn delete_from(word: &str, from: usize, more: usize, scratch: &mut Scratch, f: &mut impl FnMut(u64)) {
    f(hash_without(word, scratch));
    if more == 0 {
        return;
    }
    for at in from..scratch.bounds.len().saturating_sub(1) {
        scratch.deleted.push(at);
        delete_from(word, at + 1, more - 1, scratch, f);
        scratch.deleted.pop();
    }
}

/// Strings are equal exactly when their UTF-8 is, so hashing the bytes left is hashing the
/// variant. They are gathered first and hashed in one write: a hasher need not give the same hash
/// for the same bytes written in different pieces. std's hasher is fixed within a process, which
/// is all the index and its look-ups need to agree.
fn hash_without(word: &str, scratch: &mut Scratch) -> u64 {
    let Scratch { bounds, deleted, bytes } = scratch;
    let word = word.as_bytes();
    bytes.clear();
    let mut kept = 0;
    for at in deleted.iter() {
        let (Some(start), Some(end)) = (bounds.get(*at), bounds.get(at + 1)) else { continue };
        bytes.extend_from_slice(word.get(kept..*start).unwrap_or_default());
        kept = *end;
    }
    bytes.extend_from_slice(word.get(kept..).unwrap_or_default());
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
