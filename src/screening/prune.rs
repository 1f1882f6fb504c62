//! Which of a query's look-ups can be left out at a threshold: those through which no list name
//! can reach it. Skipping one changes which names are scored, never a score.
//!
//! # Why no hit is lost
//!
//! A list name is scored when some look-up of the query finds one of its words. A look-up is one
//! of a query word's (against list words, and against list pairs written together), or a query
//! pair written together against list words. Every pair in an alignment comes from one look-up:
//! it covers one query word (`q`) or two (`q`, `q + 1`), and weighs at most `ω`, which is `w[q]`
//! for one word and `max(w[q], w[q + 1])` for two (see [`align`](super::score::align)).
//!
//! Take a name reached only through a set `X` of look-ups. Its pairs come from disjoint look-ups
//! of `X`; let `Ω` be the sum of their `ω` and `C` the weight of the query words they cover. With
//! every similarity at most 1, the score's numerator is at most `Σ 2·w = 2Ω`, and its denominator
//! is that same `Σ 2·w` plus the unpaired words, of which the query's alone weigh `W − C` (`W`:
//! every query word). As `x / (x + u)` grows with `x` and shrinks with `u`, the score (as a
//! fraction) is at most `2Ω / (2Ω + W − C)`. It reaches `t` only if `2(1 − t)·Ω + t·C ≥ t·W`:
//! a sum over the chosen look-ups of `g = 2(1 − t)·ω + t·c` (`c`: the weight they cover), which
//! for `t ≤ 1` no choice of disjoint look-ups of `X` can exceed the best one. [`skippable`]
//! computes that best along the query's positions and keeps `X` below `t·W` with a margin for
//! rounding, so any name that can reach `t` is reached through a look-up that is made.

/// The look-ups of one query that can be left out: per word `q` both of its own (`words[q]`), and
/// per position `q` that of words `q` and `q + 1` written together (`joined[q]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Skips {
    pub words: Vec<bool>,
    pub joined: Vec<bool>,
}

/// Relative slack for the rounding of sums of weights, far above what a few dozen additions of
/// weights around 1 to 20 can lose, far below any difference that would decide a hit.
const MARGIN: f64 = 1e-9;

/// As many look-ups as can be left out of a query with word weights `weights` at `threshold`
/// (0-100), lightest evidence first; none when the threshold is 0 or below.
pub(super) fn skippable(weights: &[f64], threshold: f64) -> Skips {
    let n = weights.len();
    let mut skips = Skips { words: vec![false; n], joined: vec![false; n.saturating_sub(1)] };
    // A lower `t` only leaves out less, so clamping to 1 keeps the bound (whose derivation needs
    // `t ≤ 1`) sound for thresholds a score cannot reach anyway.
    let t = (threshold / 100.0).min(1.0);
    // Also when the threshold is NaN: nothing is left out.
    if t.is_nan() || t <= 0.0 {
        return skips;
    }
    let total: f64 = weights.iter().sum();
    let limit = t * total * (1.0 - MARGIN);
    let gain = |omega: f64, covered: f64| 2.0 * (1.0 - t) * omega + t * covered;

    // Lightest first, so that cheap evidence goes before a strong pair.
    let mut order: Vec<(f64, Look)> = Vec::with_capacity(2 * n);
    for (q, w) in weights.iter().enumerate() {
        order.push((gain(*w, *w), Look::Word(q)));
    }
    for (q, pair) in weights.windows(2).enumerate() {
        order.push((gain(pair[0].max(pair[1]), pair[0] + pair[1]), Look::Joined(q)));
    }
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (_, look) in order {
        look.set(&mut skips, true);
        if best_gain(weights, &skips, &gain) >= limit {
            look.set(&mut skips, false);
        }
    }
    skips
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Look {
    Word(usize),
    Joined(usize),
}

impl Look {
    fn set(self, skips: &mut Skips, skipped: bool) {
        let slot = match self {
            Look::Word(q) => skips.words.get_mut(q),
            Look::Joined(q) => skips.joined.get_mut(q),
        };
        if let Some(slot) = slot {
            *slot = skipped;
        }
    }
}

/// The largest sum of `gain` over disjoint skipped look-ups: the best choice for the positions from
/// `q` on, computed from the end of the query back.
fn best_gain(weights: &[f64], skips: &Skips, gain: &impl Fn(f64, f64) -> f64) -> f64 {
    let n = weights.len();
    let mut best = vec![0.0f64; n + 2];
    for q in (0..n).rev() {
        let mut here = best[q + 1];
        if skips.words[q] {
            here = here.max(gain(weights[q], weights[q]) + best[q + 1]);
        }
        if q + 1 < n && skips.joined[q] {
            let (a, b) = (weights[q], weights[q + 1]);
            here = here.max(gain(a.max(b), a + b) + best[q + 2]);
        }
        best[q] = here;
    }
    best[0]
}
