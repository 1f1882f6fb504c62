//! What a benchmark report says about where it ran: the checkout it was built from and the
//! machine, read by the bench itself so that every committed result names both.

use std::process::Command;

use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The checkout the run was built from: `git describe`'s short hash, `-dirty` when tracked files
/// had changes; null outside a git checkout.
pub fn commit() -> Value {
    first_line(Command::new("git").args(["-C", ROOT, "describe", "--always", "--dirty", "--abbrev=7"]))
}

/// CPU model, how many CPUs the OS has and how many this process may use, memory, kernel, OS,
/// whether it is a virtual machine, and the compiler. A field that cannot be read is null.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let cpus_online = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_owned()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned());
    json!({
        "cpu": field("model name"),
        "cpu_vendor": field("vendor_id"),
        "cpus_online": cpus_online,
        "cpus_available": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "virtual_machine": field("flags").map(|f| f.split_whitespace().any(|x| x == "hypervisor")),
        "memory_mib": mem_kib.map(|k| k / 1024),
        "kernel": kernel,
        "os": os,
        "rustc": first_line(Command::new("rustc").arg("--version")),
    })
}

/// The first line a command printed, or null when it could not run or failed.
pub fn first_line(command: &mut Command) -> Value {
    command
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| json!(l.trim())))
        .unwrap_or(Value::Null)
}

/// How long `fdatasync` takes where the benchmarked gateways keep their audit trail (the temp
/// folder): a few hundred 200-byte appends, each synced, as the writer's group commit does. The
/// p50 and p99 in milliseconds; null when the folder cannot be written.
pub fn fdatasync_ms() -> Value {
    use std::io::Write;
    let sample = || -> std::io::Result<Vec<f64>> {
        let dir = tempfile::TempDir::new()?;
        let mut f = std::fs::File::create(dir.path().join("sync-probe"))?;
        let line = [b'x'; 200];
        let mut times = Vec::with_capacity(500);
        for _ in 0..500 {
            f.write_all(&line)?;
            let t = std::time::Instant::now();
            f.sync_data()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Ok(times)
    };
    match sample() {
        Ok(t) => json!({ "p50": t[t.len() / 2], "p99": t[t.len() * 99 / 100], "path": std::env::temp_dir() }),
        Err(_) => Value::Null,
    }
}
