//! The HTML report in a real browser: headless Chromium loads the page from disk, and both the DOM
//! it built and a screenshot of what it painted are checked. Skipped with a note when Chromium is
//! absent, unless CUSTOMS_REQUIRE_CHROMIUM is set (tests/run sets it after installing Chromium).
//! CUSTOMS_REPORT_ARTIFACTS=DIR keeps the page and the screenshot there.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use customs::policy::Day;
use customs::report::{self, ReportSettings};
use serde_json::{Value, json};

const ALLOWED: [u8; 3] = [0x25, 0x63, 0xeb];
const DENIED: [u8; 3] = [0xdc, 0x26, 0x26];
const REASON: [u8; 3] = [0xb4, 0x53, 0x09];

fn decision(fields: Value) -> String {
    let mut record = json!({
        "seq": 1, "prev": "0".repeat(64), "type": "decision", "time": "2026-11-10T09:00:00.000000Z",
        "request_id": "r", "tenant": "demo-cn", "tenant_country": "CN", "jurisdiction": "d5-macau",
        "model": "gpt-4o", "requested_model": "gpt-4o", "training_flops": 3.81e25, "purpose": null,
        "decision": "allow", "reason": "allowed", "status": 200, "rule": null, "endpoint": null,
        "residency": null, "policy_version": "0123456789abcdef",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}, "flops": 2e15,
        "latency_ms": 0.2, "hash": "f".repeat(64),
    });
    for (k, v) in fields.as_object().unwrap() {
        record[k] = v.clone();
    }
    record.to_string()
}

/// demo-cn/gpt-4o: 6 allowed, 2 denied; demo-de/big: 3 allowed; `<img onerror>`/gpt-4o: 1 denied;
/// one unauthenticated denial and one home-jurisdiction request that must not show.
fn trail(dir: &Path) -> PathBuf {
    let mut lines = vec![json!({"seq": 0, "type": "start", "time": "2026-11-10T00:00:00.000000Z"}).to_string()];
    for hour in 0..6 {
        lines.push(decision(json!({"time": format!("2026-11-10T1{hour}:00:00.000000Z")})));
    }
    for _ in 0..2 {
        lines.push(decision(json!({"decision": "deny", "reason": "compute_threshold_exceeded", "status": 403})));
    }
    for _ in 0..3 {
        lines.push(decision(json!({"tenant": "demo-de", "tenant_country": "DE", "jurisdiction": "row",
                                   "model": "big", "training_flops": 1e26})));
    }
    lines.push(decision(json!({"tenant": "<img src=x onerror=alert(1)>", "decision": "deny",
                               "reason": "model_not_allowed", "status": 403})));
    lines.push(decision(json!({"tenant": null, "tenant_country": null, "jurisdiction": null, "model": null,
                               "training_flops": null, "decision": "deny", "reason": "invalid_api_key",
                               "status": 401})));
    lines.push(decision(json!({"tenant": "demo-us", "tenant_country": "US", "jurisdiction": "us"})));
    let path = dir.join("audit.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("CUSTOMS_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CUSTOMS_REQUIRE_CHROMIUM").is_none(),
        "CUSTOMS_REQUIRE_CHROMIUM is set but {} does not exist",
        path.display()
    );
    eprintln!("note: skipping the headless-Chromium render check: {} not found", path.display());
    None
}

/// Runs Chromium on `page` with a fresh profile and returns its stdout.
fn run_chromium(chromium: &Path, dir: &Path, name: &str, args: &[String], page: &Path) -> String {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    // Files, not pipes: a DOM bigger than a pipe buffer would block Chromium while we wait for it.
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join(format!("{name}-profile")).display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("chromium {name} took over 90 s; stderr:\n{}", fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {name}: {status}; stderr:\n{}", fs::read_to_string(&err).unwrap_or_default());
    fs::read_to_string(out).unwrap()
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let settings = ReportSettings {
        home_jurisdictions: vec!["us".to_owned()],
        flops_line: 1e25,
        since: Day::parse("2026-11-01").unwrap(),
        until: Some(Day::parse("2026-11-30").unwrap()),
        generated_at: "2026-12-01T08:00:00Z".to_owned(),
    };
    let report = report::read(&[trail(dir.path())], &settings).unwrap();
    let page = dir.path().join("report.html");
    fs::write(&page, report.to_html()).unwrap();

    let dom = run_chromium(&chromium, dir.path(), "dom", &["--dump-dom".to_owned()], &page);
    for needle in [
        "<td>demo-cn</td><td>CN</td><td>d5-macau</td><td>gpt-4o</td><td class=\"num\">3.81e25</td>\
         <td class=\"num\">6</td><td class=\"num\">2</td><td class=\"num\">6,000</td><td class=\"num\">3,000</td>\
         <td class=\"num\">9,000</td><td class=\"num\">1.2e16</td><td class=\"num\">0</td>\
         <td><span class=\"seen\">2026-11-10T10:00:00.000000Z</span><br>\
         <span class=\"seen\">2026-11-10T15:00:00.000000Z</span></td>",
        "<td>demo-de</td><td>DE</td><td>row</td><td>big</td><td class=\"num\">1e26</td><td class=\"num\">3</td>",
        "<td>&lt;img src=x onerror=alert(1)&gt;</td>",
        "<td>invalid_api_key</td><td>(unauthenticated)</td><td class=\"num\">1</td>",
        "<dd id=\"total-decisions\">14</dd>",
        "customs audit verify",
    ] {
        assert!(dom.contains(needle), "the rendered DOM lacks {needle}");
    }
    assert!(!dom.contains("<img"), "a tenant id became an element");
    assert!(!dom.contains("demo-us"), "a home-jurisdiction tenant is in the report");
    assert_eq!(dom.matches("<svg").count(), 2, "two charts");
    assert_eq!(dom.matches("class=\"bar allowed\"").count(), 2);
    assert_eq!(dom.matches("class=\"bar denied\"").count(), 2);
    assert_eq!(dom.matches("class=\"bar reason\"").count(), 3);

    let shot = dir.path().join("report.png");
    let args = [format!("--screenshot={}", shot.display()), "--window-size=1200,900".to_owned()];
    run_chromium(&chromium, dir.path(), "shot", &args, &page);
    if let Some(keep) = std::env::var_os("CUSTOMS_REPORT_ARTIFACTS") {
        // For a look by eye: the page and what Chromium painted.
        fs::create_dir_all(&keep).unwrap();
        fs::copy(&page, Path::new(&keep).join("report.html")).unwrap();
        fs::copy(&shot, Path::new(&keep).join("report.png")).unwrap();
    }
    let png = fs::read(&shot).unwrap();
    assert!(png.len() > 10_000, "a {} byte screenshot is too small to hold the page", png.len());
    let (width, height, pixels) = decode_png(&png);
    assert_eq!((width, height), (1200, 900));
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(colours.len() > 50, "only {} colours: the page looks blank", colours.len());
    // The bars are painted, not merely present in the DOM.
    for (name, colour) in [("allowed", ALLOWED), ("denied", DENIED), ("reason", REASON)] {
        let n = pixels.iter().filter(|&&p| p == colour).count();
        assert!(n > 500, "only {n} pixels of the {name} bar colour in the screenshot");
    }
}

/// Just enough PNG for a Chromium screenshot: 8-bit RGB or RGBA, not interlaced. Returns RGB.
fn decode_png(png: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let (mut width, mut height, mut channels) = (0, 0, 0);
    let mut idat = Vec::new();
    let mut pos = 8;
    while pos + 8 <= png.len() {
        let len = be(&png[pos..]);
        let data = &png[pos + 8..pos + 8 + len];
        match &png[pos + 4..pos + 8] {
            b"IHDR" => {
                (width, height) = (be(data), be(&data[4..]));
                assert_eq!((data[8], data[12]), (8, 0), "bit depth 8, not interlaced");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("PNG colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1));
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for line in raw.chunks(stride + 1) {
        let mut cur = line[1..].to_vec();
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let predicted = match line[0] {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                other => panic!("PNG filter {other}"),
            };
            cur[i] = cur[i].wrapping_add(predicted);
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (width, height, pixels)
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = ((p - i16::from(a)).abs(), (p - i16::from(b)).abs(), (p - i16::from(c)).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}
