//! Lock-free counters behind the token and compute limits. Unlike a plain rate limiter they can
//! give back what a request reserved but did not use, because token counts are only known once
//! the upstream reports usage.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// GCRA over weighted cells: `tat` (the theoretical arrival time, in nanoseconds since `epoch`)
/// moves forward by `per_token` for each token taken. A request fits while the bucket's backlog
/// stays within one minute's worth of tokens.
pub struct TokenBucket {
    tat: AtomicU64,
    per_token: u64,
    tolerance: u64,
    capacity: u64,
    epoch: Instant,
}

impl TokenBucket {
    pub fn per_minute(tokens: u64) -> Self {
        let tokens = tokens.max(1);
        let per_token = (60_000_000_000 / tokens).max(1);
        Self {
            tat: AtomicU64::new(0),
            per_token,
            tolerance: per_token * tokens,
            capacity: tokens,
            epoch: Instant::now(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// `at` on the bucket's own scale. Callers pass the instant in, so one clock read serves
    /// every check a request makes.
    fn ticks(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Takes `n` tokens at `at`, or says how long until they would fit.
    pub fn take(&self, n: u64, at: Instant) -> Result<(), Duration> {
        let now = self.ticks(at);
        let cost = n.saturating_mul(self.per_token);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(cost);
            let limit = now.saturating_add(self.tolerance);
            if next > limit {
                return Err(Duration::from_nanos(next - limit));
            }
            match self.tat.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Adjusts a reservation of `reserved` tokens to the `used` count: gives back the difference,
    /// or charges the excess (which may put the bucket in debt, delaying later requests).
    pub fn settle(&self, reserved: u64, used: u64, at: Instant) {
        let now = self.ticks(at);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let next = if used >= reserved {
                tat.max(now).saturating_add((used - reserved).saturating_mul(self.per_token))
            } else {
                // Nothing to give back once the reservation has already drained.
                tat.saturating_sub((reserved - used).saturating_mul(self.per_token)).max(now.min(tat))
            };
            match self.tat.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Tokens that could be taken at `at`.
    pub fn remaining(&self, at: Instant) -> u64 {
        let now = self.ticks(at);
        let backlog = self.tat.load(Ordering::Acquire).saturating_sub(now);
        self.tolerance.saturating_sub(backlog) / self.per_token
    }

    /// Time from `at` until the bucket is full again.
    pub fn reset(&self, at: Instant) -> Duration {
        Duration::from_nanos(self.tat.load(Ordering::Acquire).saturating_sub(self.ticks(at)))
    }
}

/// A budget per UTC day, in whole units (the compute quota counts GFLOPs).
pub struct DailyBudget {
    budget: u64,
    day: AtomicI64,
    used: AtomicU64,
}

impl DailyBudget {
    pub fn new(budget: u64) -> Self {
        Self { budget, day: AtomicI64::new(i64::MIN), used: AtomicU64::new(0) }
    }

    /// Starts a new day's count the first time a later day is seen. Usage settled in the instant
    /// of the rollover may land on either day.
    fn roll(&self, today: i64) {
        let day = self.day.load(Ordering::Acquire);
        if today > day && self.day.compare_exchange(day, today, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.used.store(0, Ordering::Release);
        }
    }

    /// Reserves `n` units for `today`, or refuses when the day's budget would be exceeded.
    pub fn take(&self, n: u64, today: i64) -> bool {
        self.roll(today);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let next = used.saturating_add(n);
            if next > self.budget {
                return false;
            }
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => used = actual,
            }
        }
    }

    /// Replaces a reservation made on `day` with the actual use; a reservation from a day that
    /// has rolled over is not carried into the new day.
    pub fn settle(&self, reserved: u64, used: u64, day: i64) {
        if self.day.load(Ordering::Acquire) != day {
            return;
        }
        if used >= reserved {
            self.used.fetch_add(used - reserved, Ordering::AcqRel);
        } else {
            let give_back = reserved - used;
            let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(give_back)));
        }
    }

    pub fn used(&self, today: i64) -> u64 {
        if self.day.load(Ordering::Acquire) == today { self.used.load(Ordering::Acquire) } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_takes_up_to_capacity_then_refuses_with_a_wait() {
        let b = TokenBucket::per_minute(600);
        let t = b.epoch;
        assert_eq!(b.remaining(t), 600);
        assert!(b.take(500, t).is_ok());
        assert!(b.take(100, t).is_ok());
        // 60 tokens at 600/min take 6 s to come back.
        assert_eq!(b.take(60, t), Err(Duration::from_secs(6)));
        assert_eq!(b.remaining(t), 0);
        assert_eq!(b.reset(t), Duration::from_secs(60));
        // A second later, 10 tokens have come back.
        let later = t + Duration::from_secs(1);
        assert_eq!(b.remaining(later), 10);
        assert!(b.take(10, later).is_ok());
        assert!(b.take(1, later).is_err());
    }

    #[test]
    fn bucket_settle_gives_back_unused_and_charges_excess() {
        let b = TokenBucket::per_minute(1_000);
        let t = b.epoch;
        b.take(800, t).unwrap();
        b.settle(800, 100, t);
        assert_eq!(b.remaining(t), 900);
        b.settle(0, 850, t);
        assert_eq!(b.remaining(t), 50);
        assert!(b.take(100, t).is_err());
    }

    #[test]
    fn bucket_request_larger_than_a_minute_never_fits() {
        let b = TokenBucket::per_minute(100);
        assert!(b.take(101, b.epoch).is_err());
        assert!(b.take(100, b.epoch).is_ok());
    }

    #[test]
    fn daily_budget_refuses_past_budget_and_resets_next_day() {
        let d = DailyBudget::new(1_000);
        assert!(d.take(600, 10));
        assert!(!d.take(500, 10));
        d.settle(600, 200, 10);
        assert_eq!(d.used(10), 200);
        assert!(d.take(800, 10));
        assert!(!d.take(1, 10));
        assert!(d.take(1_000, 11), "a new day starts from zero");
        d.settle(800, 0, 10);
        assert_eq!(d.used(11), 1_000, "yesterday's reservation is not given back today");
    }
}
