use super::*;
use crate::config;

const MODELS: &str = r#"
[[models]]
id = "small"
aliases = ["big-alias-of-small"]
training_flops = 1e22
compute_basis = "assumed"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "us-east"

[[models]]
id = "mid"
aliases = ["small-ish"]
training_flops = 2e25
compute_basis = "assumed"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "eu-west"
[[models.endpoints]]
url = "http://127.0.0.1:2/v1"
residency = "us-east"

[[models]]
id = "big"
training_flops = 1e26
compute_basis = "fictional"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "us-east"
"#;

const GROUPS: &str = r#"
[[groups]]
id = "R"
countries = ["CN", "MO"]
"#;

const JURISDICTIONS: &str = r#"
[[jurisdictions]]
id = "restricted"
country_groups = ["R"]
max_training_flops = 1e26
allow_models = ["small*", "mid", "big"]
deny_models = ["small-ish"]
require_declaration = "at-or-above-flops"
declaration_flops = 1e25
allowed_residencies = ["eu-*"]

[[jurisdictions]]
id = "rest"
countries = ["*"]
max_training_flops = 1e26
allow_models = ["*"]
require_declaration = "never"
allowed_residencies = ["*"]
"#;

const TENANTS: &str = r#"
[[tenants]]
id = "cn"
legal_name = "CN Co."
country = "CN"
jurisdiction = "restricted"
status = "active"
[tenants.end_use]
id = "D1"
expires = 2026-06-30
purposes = ["translation"]

[[tenants]]
id = "mo"
legal_name = "MO Co."
country = "MO"
jurisdiction = "restricted"
status = "active"

[[tenants]]
id = "fr"
legal_name = "FR SA"
country = "FR"
jurisdiction = "rest"
status = "active"
allow_models = ["small", "big"]
"#;

fn policy() -> Policy {
    let dir = tempfile::TempDir::new().unwrap();
    for (name, text) in [
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", TENANTS),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match config::load(dir.path(), &|_| None) {
        Ok(c) => c.policy,
        Err(e) => panic!("{e}"),
    }
}

fn code(p: &Policy, tenant: &str, model: &str, purpose: Option<&str>, day: &str) -> &'static str {
    let t = p.tenant_by_id(tenant).unwrap();
    match p.decide(t, model, purpose, Day::parse(day).unwrap()).verdict {
        Verdict::Allow { .. } => "allow",
        Verdict::Deny(d) => d.code(),
    }
}

#[test]
fn policy_deny_matches_aliases_allow_matches_ids_only() {
    let p = policy();
    // "mid" has the alias "small-ish", which the deny list names: denied by every name.
    assert_eq!(code(&p, "cn", "mid", None, "2026-01-01"), "model_not_allowed");
    assert_eq!(code(&p, "cn", "small-ish", None, "2026-01-01"), "model_not_allowed");
    // "small*" allows the id "small"; its alias does not need to match anything.
    assert_eq!(code(&p, "cn", "big-alias-of-small", None, "2026-01-01"), "no_resident_endpoint");
}

#[test]
fn policy_order_threshold_then_declaration_then_residency() {
    let p = policy();
    assert_eq!(code(&p, "cn", "big", None, "2026-01-01"), "compute_threshold_exceeded");
    assert_eq!(code(&p, "mo", "small", None, "2026-01-01"), "no_resident_endpoint");
    let d = "2026-06-30";
    // Declaration checks come before residency, and the last valid day is the expiry date.
    assert_eq!(code(&p, "cn", "small", Some("translation"), d), "no_resident_endpoint");
    assert_eq!(code(&p, "cn", "small", Some("translation"), "2026-07-01"), "end_use_declaration_expired");
    assert_eq!(code(&p, "cn", "small", Some("legal"), d), "purpose_not_declared");
    assert_eq!(code(&p, "mo", "small", Some("translation"), d), "purpose_not_declared");
}

#[test]
fn policy_tenant_allowlist_only_narrows() {
    let p = policy();
    assert_eq!(code(&p, "fr", "small", None, "2026-01-01"), "allow");
    assert_eq!(code(&p, "fr", "mid", None, "2026-01-01"), "model_not_allowed");
    // The tenant lists "big", but its jurisdiction's compute line still applies.
    assert_eq!(code(&p, "fr", "big", None, "2026-01-01"), "compute_threshold_exceeded");
}

#[test]
fn policy_allow_rule_points_at_file_line_and_key() {
    let p = policy();
    let t = p.tenant_by_id("fr").unwrap();
    let small = p.decide(t, "small", None, Day(0));
    assert!(matches!(small.verdict, Verdict::Allow { endpoints } if endpoints.len() == 1));
    let rule = p.rule(small.rule.unwrap()).unwrap();
    assert_eq!(&*rule.key, "jurisdictions[1] (rest).allow_models[0]");
    assert_eq!(rule.line, 16);
}

#[test]
fn policy_same_inputs_same_answer() {
    let p = policy();
    let t = p.tenant_by_id("cn").unwrap();
    let day = Day::parse("2026-03-01").unwrap();
    let first = p.decide(t, "small", Some("translation"), day);
    for _ in 0..100 {
        assert_eq!(p.decide(t, "small", Some("translation"), day), first);
    }
}

#[test]
fn day_round_trips_and_rejects_impossible_dates() {
    for s in ["1970-01-01", "2000-02-29", "2026-11-28", "2100-12-31"] {
        assert_eq!(Day::parse(s).unwrap().to_string(), s);
    }
    assert_eq!(Day::parse("1970-01-02"), Some(Day(1)));
    for s in ["2026-02-29", "2026-13-01", "2026-00-10", "2026-1-1x", "x"] {
        assert_eq!(Day::parse(s), None, "{s}");
    }
}
