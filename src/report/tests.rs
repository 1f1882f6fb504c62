use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;

/// A decision record as the writer emits it, with `fields` replacing the defaults.
fn decision(fields: Value) -> String {
    let mut record = json!({
        "seq": 1, "prev": "0".repeat(64), "type": "decision", "time": "2026-11-01T09:00:00.000000Z",
        "request_id": "9f1c", "tenant": "demo-cn", "tenant_country": "CN", "jurisdiction": "d5-macau",
        "model": "gpt-4o", "requested_model": "gpt-4o", "training_flops": 3.81e25, "purpose": null,
        "decision": "allow", "reason": "allowed", "status": 200, "rule": null, "endpoint": "https://x/v1",
        "residency": "us-east", "policy_version": "0123456789abcdef", "usage": null, "flops": null,
        "latency_ms": 0.21, "hash": "f".repeat(64), "a_field_from_the_future": {"nested": [1, 2]},
    });
    for (k, v) in fields.as_object().unwrap() {
        record[k] = v.clone();
    }
    record.to_string()
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn unauthenticated(reason: &str, time: &str) -> String {
    decision(json!({
        "time": time, "tenant": null, "tenant_country": null, "jurisdiction": null, "model": null,
        "training_flops": null, "decision": "deny", "reason": reason, "status": 401,
    }))
}

const SCRIPT_TENANT: &str = "<script>alert(1)</script>";

/// Two trail files and a stray non-trail file in one directory. Every line says why it is there.
fn fixture(dir: &Path) -> PathBuf {
    let trail = dir.join("trail");
    fs::create_dir(&trail).unwrap();
    let first = [
        // A non-decision record whose `model` has a shape a decision never has.
        json!({"seq": 0, "type": "start", "time": "2026-11-01T00:00:00.000000Z", "model": {"odd": true}}).to_string(),
        decision(json!({"time": "2026-11-01T09:00:00.000001Z", "usage": usage(100, 50), "flops": 1e15})),
        decision(json!({"time": "2026-11-01T10:00:00.000000Z", "usage": usage(200, 100), "flops": 2.5e15})),
        decision(json!({"decision": "deny", "reason": "rate_limit_exceeded", "status": 429})),
        unauthenticated("invalid_api_key", "2026-11-01T11:00:00.000000Z"),
        // Home jurisdiction: not foreign.
        decision(json!({"tenant": "demo-us", "tenant_country": "US", "jurisdiction": "us",
                        "usage": usage(7, 7), "flops": 1e12})),
        // Below the line.
        decision(json!({"model": "small", "training_flops": 1e22, "usage": usage(5, 5), "flops": 1e10})),
        // The day before the window.
        decision(json!({"time": "2026-10-31T23:59:59.999999Z", "usage": usage(1, 1), "flops": 1.0})),
        // A writer killed mid-line.
        r#"{"type":"decision","time":"#.to_owned(),
        String::new(),
        json!({"seq": 9, "type": "reload", "time": "2026-11-01T12:00:00.000000Z", "policy_version": "x"}).to_string(),
    ];
    let second = [
        // The last microsecond of `until`, which is inclusive; usage never reported.
        decision(json!({"time": "2026-11-02T23:59:59.999999Z", "tenant": "demo-de", "tenant_country": "DE",
                        "jurisdiction": "row", "model": "big", "training_flops": 1e26})),
        decision(json!({"tenant": SCRIPT_TENANT, "tenant_country": "XX", "decision": "deny",
                        "reason": "compute_threshold_exceeded", "status": 403})),
        decision(json!({"model": null, "training_flops": null, "decision": "deny", "reason": "model_not_found",
                        "status": 404})),
        decision(json!({"decision": "error", "reason": "upstream_timeout", "status": 504})),
        decision(json!({"time": "2026-11-02T08:00:00.000000Z", "usage": usage(10, 5), "flops": 5e14})),
        // The day after the window.
        decision(json!({"time": "2026-11-03T00:00:00.000000Z", "usage": usage(1, 1), "flops": 1.0})),
        unauthenticated("route_not_found", "2026-11-02T01:00:00.000000Z"),
        unauthenticated("invalid_api_key", "2026-11-02T02:00:00.000000Z"),
        "not json".to_owned(),
        json!({"type": "decision", "time": "2026-11-02T03:00:00.000000Z", "decision": "deny"}).to_string(),
        // Exactly at the line counts.
        decision(json!({"time": "2026-11-01T12:00:00.000000Z", "tenant": "demo-mo", "tenant_country": "MO",
                        "model": "edge", "training_flops": 1e25, "usage": usage(1, 1), "flops": 1.0})),
        json!({"type": "suspend", "time": "2026-11-02T04:00:00.000000Z", "tenant": "demo-mo"}).to_string(),
    ];
    fs::write(trail.join("2026-11-01.jsonl"), first.join("\n") + "\n").unwrap();
    // No final newline, as after a crash.
    fs::write(trail.join("2026-11-02.jsonl"), second.join("\n")).unwrap();
    fs::write(trail.join("README.txt"), "not a trail file\n").unwrap();
    trail
}

fn settings() -> ReportSettings {
    ReportSettings {
        home_jurisdictions: vec!["us".to_owned()],
        flops_line: 1e25,
        since: Day::parse("2026-11-01").unwrap(),
        until: Some(Day::parse("2026-11-02").unwrap()),
        generated_at: "2026-12-01T08:00:00Z".to_owned(),
    }
}

fn fixture_report() -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let report = read(&[trail], &settings()).unwrap();
    (dir, report)
}

fn row(tenant: &str, country: &str, jurisdiction: &str, model: &str, training_flops: f64) -> ForeignAccess {
    ForeignAccess { training_flops, ..ForeignAccess::new(tenant, Some(country), jurisdiction, model) }
}

fn expected_foreign() -> Vec<ForeignAccess> {
    vec![
        ForeignAccess { denied: 1, ..row(SCRIPT_TENANT, "XX", "d5-macau", "gpt-4o", 3.81e25) },
        ForeignAccess {
            requests: 3,
            denied: 1,
            prompt_tokens: 310,
            completion_tokens: 155,
            total_tokens: 465,
            flops: 4e15,
            first_seen: Some("2026-11-01T09:00:00.000001Z".to_owned()),
            last_seen: Some("2026-11-02T08:00:00.000000Z".to_owned()),
            ..row("demo-cn", "CN", "d5-macau", "gpt-4o", 3.81e25)
        },
        ForeignAccess {
            requests: 1,
            unmetered: 1,
            first_seen: Some("2026-11-02T23:59:59.999999Z".to_owned()),
            last_seen: Some("2026-11-02T23:59:59.999999Z".to_owned()),
            ..row("demo-de", "DE", "row", "big", 1e26)
        },
        ForeignAccess {
            requests: 1,
            prompt_tokens: 1,
            completion_tokens: 1,
            total_tokens: 2,
            flops: 1.0,
            first_seen: Some("2026-11-01T12:00:00.000000Z".to_owned()),
            last_seen: Some("2026-11-01T12:00:00.000000Z".to_owned()),
            ..row("demo-mo", "MO", "d5-macau", "edge", 1e25)
        },
    ]
}

fn expected_denials() -> Vec<(&'static str, Option<&'static str>, u64)> {
    vec![
        ("compute_threshold_exceeded", Some(SCRIPT_TENANT), 1),
        ("invalid_api_key", None, 2),
        ("model_not_found", Some("demo-cn"), 1),
        ("rate_limit_exceeded", Some("demo-cn"), 1),
        ("route_not_found", None, 1),
    ]
}

#[test]
fn report_fixture_counts_every_number_exactly() {
    let (dir, report) = fixture_report();
    let trail = dir.path().join("trail");
    assert_eq!(report.files, vec![trail.join("2026-11-01.jsonl"), trail.join("2026-11-02.jsonl")]);
    assert_eq!(report.foreign_access, expected_foreign());
    let denials: Vec<_> = report.denials.iter().map(|d| (d.reason.as_str(), d.tenant.as_deref(), d.count)).collect();
    assert_eq!(denials, expected_denials());
    assert_eq!(
        report.denials_by_reason(),
        vec![
            ("compute_threshold_exceeded", 1),
            ("invalid_api_key", 2),
            ("model_not_found", 1),
            ("rate_limit_exceeded", 1),
            ("route_not_found", 1)
        ]
    );
    let first_bad_line = BadLine {
        path: trail.join("2026-11-01.jsonl"),
        line: 9,
        error: "EOF while parsing a value at line 1 column 26".to_owned(),
    };
    assert_eq!(
        report.totals,
        Totals {
            lines: 22,
            records: 19,
            decisions: 14,
            allowed: 7,
            denied: 6,
            errors: 1,
            outside_window: 2,
            bad_lines: 3,
            first_bad_line: Some(first_bad_line),
        }
    );
}

#[test]
fn report_without_until_counts_through_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let report = read(&[trail], &ReportSettings { until: None, ..settings() }).unwrap();
    assert_eq!((report.totals.decisions, report.totals.outside_window), (15, 1));
    let cn = &report.foreign_access[1];
    assert_eq!((cn.requests, cn.total_tokens, cn.last_seen.as_deref()), (4, 467, Some("2026-11-03T00:00:00.000000Z")));
}

#[test]
fn report_home_list_and_line_move_rows_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let settings = ReportSettings { home_jurisdictions: vec!["d5-macau".to_owned()], flops_line: 1e20, ..settings() };
    let report = read(&[trail], &settings).unwrap();
    let keys: Vec<_> = report.foreign_access.iter().map(|r| (r.tenant.as_str(), r.model.as_str())).collect();
    assert_eq!(keys, [("demo-de", "big"), ("demo-us", "gpt-4o")]);
}

#[test]
fn report_files_in_given_order_and_directories_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let second = trail.join("2026-11-02.jsonl");
    let report = read(&[second.clone(), trail.clone()], &settings()).unwrap();
    assert_eq!(report.files, [second.clone(), trail.join("2026-11-01.jsonl"), second.clone()]);
    let bad = report.totals.first_bad_line.unwrap();
    assert_eq!((bad.path, bad.line, bad.error.as_str()), (second, 9, "expected ident at line 1 column 2"));
}

#[test]
fn report_csv_parses_back_to_the_same_numbers() {
    let (_dir, report) = fixture_report();
    let csv = report.render(Format::Csv);
    let comments: Vec<&str> = csv.lines().take_while(|l| l.starts_with("# ")).collect();
    assert!(comments.iter().any(|l| l.contains("window: 2026-11-01 through 2026-11-02 (UTC days, both inclusive)")));
    assert!(comments.iter().any(|l| l.contains("home jurisdictions: us; FLOPs line: 1e25")));
    assert!(comments.iter().any(|l| l.contains("customs audit verify")));
    assert!(comments.iter().any(|l| l.contains("bad lines: 3, the first at ")
        && l.contains("2026-11-01.jsonl:9: EOF while parsing a value at line 1 column 26")));
    let body = &csv[comments.iter().map(|l| l.len() + 1).sum::<usize>()..];
    let (foreign, denials) = body.split_once("\n\n").unwrap();
    assert!(!foreign.lines().skip(1).any(|l| l.starts_with('#')), "a data line passes for a comment");

    let mut r = csv::Reader::from_reader(foreign.as_bytes());
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), to_csv::FOREIGN_HEADER);
    let parsed: Vec<ForeignAccess> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            let opt = |i: usize| Some(rec[i].to_owned()).filter(|s| !s.is_empty());
            ForeignAccess {
                tenant: rec[0].to_owned(),
                tenant_country: opt(1),
                jurisdiction: rec[2].to_owned(),
                model: rec[3].to_owned(),
                training_flops: rec[4].parse().unwrap(),
                requests: rec[5].parse().unwrap(),
                denied: rec[6].parse().unwrap(),
                prompt_tokens: rec[7].parse().unwrap(),
                completion_tokens: rec[8].parse().unwrap(),
                total_tokens: rec[9].parse().unwrap(),
                flops: rec[10].parse().unwrap(),
                unmetered: rec[11].parse().unwrap(),
                first_seen: opt(12),
                last_seen: opt(13),
            }
        })
        .collect();
    assert_eq!(parsed, expected_foreign());

    let mut r = csv::Reader::from_reader(denials.as_bytes());
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), to_csv::DENIALS_HEADER);
    let parsed: Vec<(String, String, u64)> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_owned(), rec[1].to_owned(), rec[2].parse().unwrap())
        })
        .collect();
    let expected: Vec<_> = expected_denials()
        .into_iter()
        .map(|(reason, tenant, n)| (reason.to_owned(), tenant.unwrap_or("(unauthenticated)").to_owned(), n))
        .collect();
    assert_eq!(parsed, expected);
}

#[test]
fn report_json_parses_back_to_the_same_numbers() {
    let (_dir, report) = fixture_report();
    let v: Value = serde_json::from_str(&report.render(Format::Json)).unwrap();
    assert_eq!(v["window"]["since"], "2026-11-01");
    assert_eq!(v["window"]["until"], "2026-11-02");
    assert_eq!(v["settings"], json!({"home_jurisdictions": ["us"], "flops_line": 1e25}));
    assert_eq!(v["generated_at"], "2026-12-01T08:00:00Z");
    let foreign: Vec<ForeignAccess> = v["foreign_access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().map(str::to_owned);
            let n = |k: &str| r[k].as_u64().unwrap();
            ForeignAccess {
                tenant: s("tenant").unwrap(),
                tenant_country: s("tenant_country"),
                jurisdiction: s("jurisdiction").unwrap(),
                model: s("model").unwrap(),
                training_flops: r["training_flops"].as_f64().unwrap(),
                requests: n("requests"),
                denied: n("denied"),
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
                total_tokens: n("total_tokens"),
                flops: r["flops"].as_f64().unwrap(),
                unmetered: n("unmetered"),
                first_seen: s("first_seen"),
                last_seen: s("last_seen"),
            }
        })
        .collect();
    assert_eq!(foreign, expected_foreign());
    let denials: Vec<Value> = expected_denials()
        .into_iter()
        .map(|(reason, tenant, count)| json!({"reason": reason, "tenant": tenant, "count": count}))
        .collect();
    assert_eq!(v["denials"], Value::Array(denials));
    let totals = &v["totals"];
    assert_eq!(
        ["files", "lines", "records", "decisions", "allowed", "denied", "errors", "outside_window", "bad_lines"]
            .map(|k| totals[k].as_u64().unwrap()),
        [2, 22, 19, 14, 7, 6, 1, 2, 3]
    );
    assert_eq!(totals["first_bad_line"]["line"], 9);
    assert!(v["integrity"].as_str().unwrap().contains("customs audit verify"));
}

#[test]
fn report_html_escapes_strings_from_the_trail() {
    let (_dir, report) = fixture_report();
    let html = report.render(Format::Html);
    assert!(!html.to_ascii_lowercase().contains("<script"), "unescaped tenant id in the page");
    assert!(html.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
    assert!(html.contains("default-src 'none'"));
    let outside = html.replace("http://www.w3.org/2000/svg", "");
    for needle in ["://", "src=", "href=", "url(", "@import"] {
        assert!(!outside.contains(needle), "the page refers outside itself: {needle}");
    }
}

#[test]
fn report_html_shows_totals_rows_and_bars() {
    let (_dir, report) = fixture_report();
    let html = report.to_html();
    for needle in [
        "<dd id=\"total-decisions\">14</dd>",
        "<dd id=\"total-denied\">6</dd>",
        "<dd id=\"total-bad-lines\">3</dd>",
        "<td>demo-cn</td><td>CN</td><td>d5-macau</td><td>gpt-4o</td><td class=\"num\">3.81e25</td>\
         <td class=\"num\">3</td><td class=\"num\">1</td><td class=\"num\">310</td><td class=\"num\">155</td>\
         <td class=\"num\">465</td><td class=\"num\">4e15</td><td class=\"num\">0</td>\
         <td><span class=\"seen\">2026-11-01T09:00:00.000001Z</span><br>\
         <span class=\"seen\">2026-11-02T08:00:00.000000Z</span></td>",
        "<td>invalid_api_key</td><td>(unauthenticated)</td><td class=\"num\">2</td>",
        "2026-11-01 through 2026-11-02 (UTC days, both inclusive)",
        "customs audit verify",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    // Four foreign rows (one all denied), five reasons.
    assert_eq!(html.matches("class=\"bar allowed\"").count(), 3);
    assert_eq!(html.matches("class=\"bar denied\"").count(), 2);
    assert_eq!(html.matches("class=\"bar reason\"").count(), 5);
}

#[test]
fn report_empty_window_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let day = Day::parse("2027-01-01").unwrap();
    let report = read(&[trail], &ReportSettings { since: day, until: Some(day), ..settings() }).unwrap();
    assert!(report.foreign_access.is_empty() && report.denials.is_empty());
    assert_eq!(report.totals.outside_window, 16);
    let html = report.to_html();
    assert!(html.contains("No foreign requests") && html.contains("None in this window."));
    assert!(report.to_csv().contains("\n\n\"reason\",\"tenant\",\"count\"\n"));
}

#[test]
fn report_refuses_bad_settings_and_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let trail = fixture(dir.path());
    let err = |paths: Vec<PathBuf>, s: ReportSettings| read(&paths, &s).unwrap_err().to_string();
    let backwards = ReportSettings { until: Some(Day::parse("2026-10-01").unwrap()), ..settings() };
    assert_eq!(err(vec![trail.clone()], backwards), "the window ends (2026-10-01) before it starts (2026-11-01)");
    let nan = ReportSettings { flops_line: f64::NAN, ..settings() };
    assert_eq!(err(vec![trail.clone()], nan), "the FLOPs line must be a finite number, 0 or more (got NaN)");
    assert_eq!(err(vec![], settings()), "no audit trail given");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(
        err(vec![empty.clone()], settings()),
        format!("{}: no *.jsonl files in this directory", empty.display())
    );
    let missing = dir.path().join("missing.jsonl");
    assert!(err(vec![missing.clone()], settings()).starts_with(&format!("{}: ", missing.display())));
}

#[test]
fn utc_timestamp_formats_rfc3339_seconds() {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_824_000 + 3_725);
    assert_eq!(utc_timestamp(t), "2026-11-28T01:02:05Z");
    assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
}

#[test]
fn report_flops_print_short_and_read_back_exactly() {
    for (x, text) in [(0.0, "0"), (1.0, "1"), (1234.5, "1234.5"), (1e6, "1e6"), (3.81e25, "3.81e25"), (4e15, "4e15")] {
        assert_eq!(sci(x), text);
        assert_eq!(text.parse::<f64>().unwrap(), x);
    }
}

/// A trail written with outcome records: decisions first, what was served in outcomes.
#[test]
fn report_counts_served_requests_from_outcome_records() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = |fields: Value| {
        let mut record = json!({
            "seq": 2, "prev": "0".repeat(64), "type": "outcome", "time": "2026-11-01T09:00:01.000000Z",
            "request_id": "9f1c", "decision_seq": 1, "tenant": "demo-cn", "tenant_country": "CN",
            "jurisdiction": "d5-macau", "model": "gpt-4o", "training_flops": 3.81e25, "outcome": "completed",
            "status": 200, "endpoint": "https://x/v1", "residency": "us-east", "policy_version": "0123456789abcdef",
            "usage": null, "flops": null, "latency_ms": 3.5, "hash": "f".repeat(64),
        });
        for (k, v) in fields.as_object().unwrap() {
            record[k] = v.clone();
        }
        record.to_string()
    };
    // Forwarded decisions carry no status, endpoint or usage of their own.
    let forwarded = json!({"status": null, "endpoint": null, "residency": null});
    let lines = [
        decision(forwarded.clone()),
        outcome(json!({"usage": usage(100, 50), "flops": 1e15})),
        decision(forwarded.clone()),
        outcome(json!({"outcome": "client_disconnected", "usage": null})),
        decision(forwarded.clone()),
        outcome(json!({"outcome": "upstream_timeout", "status": null})),
        decision(forwarded.clone()),
        // Cut after its head: part of a response was served.
        outcome(json!({"outcome": "upstream_error", "usage": usage(10, 2), "flops": 1e13})),
        decision(json!({"decision": "deny", "reason": "model_not_allowed", "status": 403})),
    ];
    let path = dir.path().join("audit-000001.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let report = read(&[path], &settings()).unwrap();
    let t = &report.totals;
    assert_eq!((t.decisions, t.allowed, t.denied, t.errors), (5, 3, 1, 1), "{t:?}");
    assert_eq!(t.bad_lines, 0, "{:?}", t.first_bad_line);
    let [row] = &report.foreign_access[..] else { panic!("{:?}", report.foreign_access) };
    assert_eq!((row.requests, row.denied, row.unmetered), (3, 1, 1));
    assert_eq!((row.prompt_tokens, row.completion_tokens, row.total_tokens), (110, 52, 162));
    assert_eq!(row.flops, 1e15 + 1e13);
    assert_eq!(row.first_seen.as_deref(), Some("2026-11-01T09:00:01.000000Z"));
}
