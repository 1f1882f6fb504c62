//! Which endpoint a request goes to, and taking failing endpoints out of rotation.
//!
//! Each endpoint's health lives in atomics that every request shares (and that outlive a reload,
//! with the endpoint's pool): requests in flight, failures in a row, and when an ejection ends.
//! A request goes to the endpoint in rotation with the fewest requests in flight; ties go to the
//! order configured, so at low load the first endpoint takes everything, as a failover list
//! would. An endpoint at its in-flight cap takes nothing more until one ends: that cap is the
//! bound on what waits on a slow upstream, instead of a queue growing without one.
//!
//! Passive outlier detection: `consecutive_failures` connect failures, timeouts or 5xx answers in
//! a row eject an endpoint. When the ejection ends exactly one request probes it; a success puts
//! it back, a failure ejects it again for twice as long, up to `max_ejection`. A probe that never
//! reports (its client went away) frees the slot for the next one.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::OutlierSettings;
use crate::ids::EndpointIdx;

/// One endpoint's shared state.
#[derive(Debug, Default)]
pub struct Health {
    in_flight: AtomicU32,
    failures: AtomicU32,
    /// Ejections since the endpoint last answered well, for the back-off.
    ejections: AtomicU32,
    /// When the ejection ends, in milliseconds on [`now_ms`]'s clock; 0 while in rotation.
    ejected_until: AtomicU64,
    /// A probe is out: the others wait for its answer.
    probing: AtomicBool,
}

/// Milliseconds on a monotonic clock that starts at 1, so 0 can mean "not ejected".
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Why no endpoint could take a request, and when one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoneAvailable {
    pub retry_after: Duration,
}

/// A request counted in its endpoint's in-flight total until dropped: held by the response body
/// so a stream counts until it ends.
#[derive(Debug)]
pub struct InFlight {
    health: Arc<Health>,
    /// This request is the probe of an ejected endpoint and has not reported yet.
    probe: bool,
}

impl Health {
    /// Whether the endpoint is out of rotation: ejected, or waiting for a probe to succeed.
    pub fn ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// Counts a request in, unless the endpoint already has `max` in flight.
    fn enter(self: &Arc<Self>, max: u32, probe: bool) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| InFlight { health: self.clone(), probe })
    }

    fn eject(&self, outlier: &OutlierSettings, now: u64) {
        let n = self.ejections.fetch_add(1, Ordering::AcqRel).min(16);
        let time = outlier.ejection.saturating_mul(1 << n).min(outlier.max_ejection);
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(now + time.as_millis() as u64, Ordering::Release);
    }
}

impl InFlight {
    /// The endpoint answered (below 500). Returns whether this put an ejected endpoint back.
    pub fn succeeded(&mut self) -> bool {
        let h = &self.health;
        h.failures.store(0, Ordering::Relaxed);
        if !std::mem::take(&mut self.probe) {
            return false;
        }
        h.ejections.store(0, Ordering::Relaxed);
        h.ejected_until.store(0, Ordering::Release);
        h.probing.store(false, Ordering::Release);
        true
    }

    /// The endpoint failed this request: no connection, no answer in time, or a 5xx. Returns
    /// whether this ejected it.
    pub fn failed(&mut self, outlier: &OutlierSettings) -> bool {
        let h = &self.health;
        let now = now_ms();
        if std::mem::take(&mut self.probe) {
            h.eject(outlier, now);
            h.probing.store(false, Ordering::Release);
            return true;
        }
        let failures = h.failures.fetch_add(1, Ordering::AcqRel) + 1;
        // Requests that were in flight when it was ejected fail too: they do not eject it again.
        if failures >= outlier.consecutive_failures && !h.ejected() {
            h.eject(outlier, now);
            return true;
        }
        false
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.probe {
            // The probe ended unanswered (client gone): the next request probes instead.
            self.health.probing.store(false, Ordering::Release);
        }
        self.health.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Chooses among `endpoints` (in the order configured), leaving out `skip`: a probe that is due
/// first, else the endpoint in rotation with the fewest requests in flight. `health` gives an
/// endpoint's state; one without any is not a candidate.
pub fn pick<'h>(
    endpoints: &[EndpointIdx],
    health: impl Fn(EndpointIdx) -> Option<&'h Arc<Health>>,
    skip: Option<EndpointIdx>,
    max_in_flight: u32,
) -> Result<(EndpointIdx, InFlight), NoneAvailable> {
    let mut now = 0;
    let mut best: Option<(u32, EndpointIdx, &Arc<Health>)> = None;
    // The earliest an ejected endpoint may be probed, or "soon" when one is full or probing.
    let mut soonest = u64::MAX;
    for &e in endpoints {
        let Some(h) = health(e).filter(|_| Some(e) != skip) else { continue };
        let until = h.ejected_until.load(Ordering::Acquire);
        let in_flight = h.in_flight.load(Ordering::Relaxed);
        if until != 0 {
            if now == 0 {
                now = now_ms();
            }
            if now < until {
                soonest = soonest.min(until - now);
            } else if h.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                match h.enter(max_in_flight, true) {
                    Some(held) => return Ok((e, held)),
                    None => h.probing.store(false, Ordering::Release),
                }
            } else {
                soonest = 0;
            }
        } else if in_flight >= max_in_flight {
            soonest = 0;
        } else if best.is_none_or(|(least, _, _)| in_flight < least) {
            best = Some((in_flight, e, h));
        }
    }
    if let Some((_, e, h)) = best
        && let Some(held) = h.enter(max_in_flight, false)
    {
        return Ok((e, held));
    }
    // Whole seconds, at least one: what `Retry-After` can say.
    let secs = Duration::from_millis(soonest.min(3_600_000)).as_secs_f64().ceil().max(1.0);
    Err(NoneAvailable { retry_after: Duration::from_secs(secs as u64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            ejection: Duration::from_millis(100),
            max_ejection: Duration::from_secs(1),
        }
    }

    fn healths(n: usize) -> Vec<Arc<Health>> {
        (0..n).map(|_| Arc::default()).collect()
    }

    fn choose(
        h: &[Arc<Health>],
        skip: Option<EndpointIdx>,
        max: u32,
    ) -> Result<(EndpointIdx, InFlight), NoneAvailable> {
        let all: Vec<EndpointIdx> = (0..h.len() as EndpointIdx).collect();
        pick(&all, |e| h.get(e as usize), skip, max)
    }

    #[test]
    fn the_least_loaded_endpoint_is_chosen_and_ties_go_to_the_first() {
        let h = healths(3);
        let (a, _first) = choose(&h, None, 10).unwrap();
        assert_eq!(a, 0, "all idle: the first configured");
        let (b, _second) = choose(&h, None, 10).unwrap();
        assert_eq!(b, 1, "0 has one in flight");
        let (c, third) = choose(&h, None, 10).unwrap();
        assert_eq!(c, 2);
        drop(third);
        assert_eq!(choose(&h, None, 10).unwrap().0, 2, "2 is free again");
        assert_eq!(choose(&h, Some(2), 10).unwrap().0, 0, "skipped");
    }

    #[test]
    fn a_full_endpoint_takes_nothing_more_until_one_ends() {
        let h = healths(1);
        let held: Vec<_> = (0..2).map(|_| choose(&h, None, 2).unwrap().1).collect();
        let refused = choose(&h, None, 2).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        drop(held);
        assert!(choose(&h, None, 2).is_ok());
    }

    #[test]
    fn failures_in_a_row_eject_and_one_probe_brings_it_back() {
        let h = healths(2);
        for i in 0..3 {
            let (e, mut held) = choose(&h, Some(1), 10).unwrap();
            assert_eq!(e, 0);
            assert_eq!(held.failed(&outlier()), i == 2, "ejected on the third failure");
        }
        assert!(h[0].ejected());
        assert_eq!(choose(&h, None, 10).unwrap().0, 1, "ejected: the other takes it");
        assert!(choose(&h, Some(1), 10).is_err(), "nothing else in rotation");

        std::thread::sleep(Duration::from_millis(150));
        let (e, mut probe) = choose(&h, None, 10).unwrap();
        assert_eq!(e, 0, "a due probe goes first");
        assert!(choose(&h, Some(1), 10).is_err(), "one probe at a time");
        assert!(probe.succeeded());
        assert!(!h[0].ejected());
        assert_eq!(choose(&h, Some(1), 10).unwrap().0, 0);
    }

    #[test]
    fn a_failed_probe_ejects_for_longer_and_a_success_in_between_resets_the_count() {
        let h = healths(1);
        for _ in 0..2 {
            choose(&h, None, 10).unwrap().1.failed(&outlier());
        }
        choose(&h, None, 10).unwrap().1.succeeded();
        assert!(!choose(&h, None, 10).unwrap().1.failed(&outlier()), "the count started again");

        let mut held = choose(&h, None, 10).unwrap().1;
        held.failed(&outlier());
        assert!(held.failed(&outlier()), "third in a row");
        drop(held);
        std::thread::sleep(Duration::from_millis(150));
        let (_, mut probe) = choose(&h, None, 10).unwrap();
        assert!(probe.failed(&outlier()));
        drop(probe);
        std::thread::sleep(Duration::from_millis(150));
        assert!(choose(&h, None, 10).is_err(), "twice as long (200 ms) the second time");
        std::thread::sleep(Duration::from_millis(100));
        assert!(choose(&h, None, 10).is_ok());
    }

    #[test]
    fn a_probe_dropped_unanswered_lets_the_next_request_probe() {
        let h = healths(1);
        for _ in 0..3 {
            choose(&h, None, 10).unwrap().1.failed(&outlier());
        }
        std::thread::sleep(Duration::from_millis(150));
        let probe = choose(&h, None, 10).unwrap().1;
        assert!(choose(&h, None, 10).is_err());
        drop(probe);
        assert!(choose(&h, None, 10).is_ok(), "the next one probes");
        assert!(h[0].ejected(), "still out until a probe succeeds");
    }

    #[test]
    fn retry_after_is_the_time_left_in_whole_seconds() {
        let h = healths(1);
        let long = OutlierSettings { ejection: Duration::from_millis(2500), ..outlier() };
        let long = OutlierSettings { max_ejection: Duration::from_secs(10), ..long };
        for _ in 0..3 {
            choose(&h, None, 10).unwrap().1.failed(&long);
        }
        assert_eq!(choose(&h, None, 10).unwrap_err().retry_after, Duration::from_secs(3));
    }
}
