//! `customs report` on the trail of traffic this test sends through the gateway: every number in
//! the report is the number of requests, tokens and FLOPs the test saw.

use std::collections::BTreeMap;
use std::process::Command;

use http::StatusCode;

use crate::support::{Example, chat};

#[tokio::test]
async fn the_report_matches_the_traffic_number_for_number() {
    let ex = Example::start_unwatched().await;
    let addr = ex.gw.addr;
    // (key, model, expected status), sent in this order.
    let traffic = [
        ("sk-demo-de", "gpt-4o-mini", 200),
        ("sk-demo-de", "gpt-4o-mini", 200),
        ("sk-demo-de", "gpt-4o-mini", 200),
        ("sk-demo-de", "llama-3.3-70b-instruct", 200),
        ("sk-demo-de", "llama-3.3-70b-instruct", 200),
        ("sk-demo-de", "gpt-4o", 403),
        ("sk-demo-cn", "gpt-4o", 403),
        ("sk-demo-cn", "gpt-4o", 403),
        ("sk-demo-us", "gpt-4o", 200),
        ("sk-demo-us", "gpt-4o", 200),
        ("sk-demo-de", "text-embedding-3-small", 200),
        ("sk-nobody", "gpt-4o", 401),
    ];
    let mut tokens: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (key, model, status) in traffic {
        let r = chat(addr, key, model, None).await;
        assert_eq!(r.status, StatusCode::from_u16(status).unwrap(), "{key} {model}: {:?}", r.body);
        if status == 200 && key == "sk-demo-de" && model != "text-embedding-3-small" {
            let u = &r.json()["usage"];
            let t = tokens.entry(model).or_default();
            t.0 += u["prompt_tokens"].as_u64().unwrap();
            t.1 += u["completion_tokens"].as_u64().unwrap();
        }
    }
    ex.gw.shutdown().await;
    let today = customs::policy::Day::today().to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["report", "--format", "json", "--since", &today, "--until", &today, "--flops-line", "1e24", "--audit"])
        .arg(ex.dir.path().join("audit"))
        .arg("--config")
        .arg(ex.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["settings"]["home_jurisdictions"], serde_json::json!(["us"]), "home from gateway.toml");

    let rows: BTreeMap<String, &serde_json::Value> = report["foreign_access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (format!("{}/{}", r["tenant"].as_str().unwrap(), r["model"].as_str().unwrap()), r))
        .collect();
    // demo-us is at home; text-embedding-3-small (1e23) is below the line.
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["demo-cn/gpt-4o", "demo-de/gpt-4o", "demo-de/gpt-4o-mini", "demo-de/llama-3.3-70b-instruct"]
    );
    let check = |key: &str, requests: u64, denied: u64| {
        let r = rows[key];
        assert_eq!((r["requests"].as_u64().unwrap(), r["denied"].as_u64().unwrap()), (requests, denied), "{key}");
    };
    check("demo-cn/gpt-4o", 0, 2);
    check("demo-de/gpt-4o", 0, 1);
    check("demo-de/gpt-4o-mini", 3, 0);
    check("demo-de/llama-3.3-70b-instruct", 2, 0);
    for (model, (prompt, completion)) in &tokens {
        let r = rows[&format!("demo-de/{model}")];
        assert_eq!(r["prompt_tokens"].as_u64().unwrap(), *prompt, "{model}");
        assert_eq!(r["completion_tokens"].as_u64().unwrap(), *completion, "{model}");
        assert_eq!(r["total_tokens"].as_u64().unwrap(), prompt + completion, "{model}");
        assert_eq!(r["jurisdiction"], "rest-of-world");
        assert_eq!(r["tenant_country"], "DE");
        assert!(r["first_seen"].as_str().unwrap() <= r["last_seen"].as_str().unwrap());
    }
    let (p, c) = tokens["llama-3.3-70b-instruct"];
    let flops = rows["demo-de/llama-3.3-70b-instruct"]["flops"].as_f64().unwrap();
    assert!((flops - 2.0 * 70.6e9 * (p + c) as f64).abs() < 1.0, "{flops}");

    let denials: BTreeMap<(String, String), u64> = report["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let tenant = d["tenant"].as_str().unwrap_or("(unauthenticated)").to_owned();
            ((d["reason"].as_str().unwrap().to_owned(), tenant), d["count"].as_u64().unwrap())
        })
        .collect();
    let want: BTreeMap<(String, String), u64> = [
        (("compute_threshold_exceeded", "demo-cn"), 2),
        (("end_use_declaration_required", "demo-de"), 1),
        (("invalid_api_key", "(unauthenticated)"), 1),
    ]
    .into_iter()
    .map(|((r, t), n)| ((r.to_owned(), t.to_owned()), n))
    .collect();
    assert_eq!(denials, want);
    let totals = &report["totals"];
    assert_eq!(totals["decisions"], 12);
    assert_eq!(totals["allowed"], 8);
    assert_eq!(totals["denied"], 4);
    assert_eq!(totals["bad_lines"], 0);
    ex.mock.stop().await;
}
