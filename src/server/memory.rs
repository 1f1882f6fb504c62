//! Shedding on memory pressure: a task samples the process's resident memory and, while it is
//! above the limit, raises a flag the request path reads before it takes a body, so new requests
//! with bodies are shed with 503 `overloaded` instead of the process growing into the kernel's
//! OOM killer (which would cut every stream at once). The body budget bounds what bodies hold;
//! this bounds everything else (streams in flight, buffers, caches) the budget does not see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

/// How often resident memory is read: a file read, far from the request path.
const EVERY: Duration = Duration::from_millis(250);

/// The limit to shed above: `configured` bytes (0: never), or unset, nine tenths of the cgroup's
/// memory limit when the process runs under one (a container), else none.
pub fn limit(configured: Option<u64>) -> Option<u64> {
    match configured {
        Some(0) => None,
        Some(n) => Some(n),
        None => cgroup_limit().map(|l| l / 10 * 9),
    }
}

/// cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes` (which says "no limit" with a huge
/// number).
fn cgroup_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok();
    read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .filter(|&l| l < 1 << 60)
}

/// The process's resident memory, from `/proc/self/status` (`VmRSS`, in kB).
pub fn resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kb * 1024)
}

/// Keeps `pressure` (and `gauge`) saying whether resident memory is above `limit`.
pub async fn watch(limit: u64, pressure: Arc<AtomicBool>, gauge: IntGauge) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(rss) = resident() else { continue };
        let over = rss > limit;
        if over != pressure.swap(over, Ordering::Relaxed) {
            if over {
                tracing::warn!(resident = rss, limit, "Memory above the limit; shedding new requests with bodies.");
            } else {
                tracing::info!(resident = rss, limit, "Memory back under the limit; taking requests again.");
            }
        }
        gauge.set(i64::from(over));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_and_a_zero_limit_turns_shedding_off() {
        let rss = resident().expect("/proc/self/status has VmRSS on Linux");
        assert!(rss > 1024 * 1024, "{rss}");
        assert_eq!(limit(Some(0)), None);
        assert_eq!(limit(Some(5)), Some(5));
    }
}
