use super::*;
use crate::config;
use std::sync::Arc;

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

[[models]]
id = "large"
training_flops = 5e25
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
allow_models = ["small*", "mid", "big", "large"]
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
    // "mo" has no declaration on file and "big" (1e26) is at the line, needs a declaration and
    // has no eu-* endpoint: each later check would also refuse, so only the threshold going
    // first gives this code.
    assert_eq!(code(&p, "mo", "big", None, "2026-01-01"), "compute_threshold_exceeded");
    assert_eq!(code(&p, "cn", "big", None, "2026-01-01"), "compute_threshold_exceeded");
    // "large" (5e25) is under the line, needs a declaration and has no eu-* endpoint: the
    // declaration is checked before residency.
    assert_eq!(code(&p, "mo", "large", None, "2026-01-01"), "end_use_declaration_required");
    assert_eq!(code(&p, "mo", "small", None, "2026-01-01"), "no_resident_endpoint");
    let d = "2026-06-30";
    // With a valid declaration, residency decides; the last valid day is the expiry date.
    assert_eq!(code(&p, "cn", "large", Some("translation"), d), "no_resident_endpoint");
    assert_eq!(code(&p, "cn", "large", Some("translation"), "2026-07-01"), "end_use_declaration_expired");
    assert_eq!(code(&p, "cn", "small", Some("translation"), d), "no_resident_endpoint");
    assert_eq!(code(&p, "cn", "small", Some("translation"), "2026-07-01"), "end_use_declaration_expired");
    assert_eq!(code(&p, "cn", "small", Some("legal"), d), "purpose_not_declared");
    assert_eq!(code(&p, "mo", "small", Some("translation"), d), "purpose_not_declared");
    // A tenant without a declaration is refused by its missing `end_use`, at its own entry.
    let rule = rule_of(&p, "mo", "small", Some("translation"), d);
    let mo = p.tenant_by_id("mo").unwrap() as usize;
    assert_eq!(&*rule.key, format!("tenants[{mo}] (mo).end_use"));
    assert_eq!(&*rule.detail, "no end-use declaration on file: no purpose is declared");
    assert!(rule.file.ends_with("tenants.toml"), "{}", rule.file);
    assert_eq!(TENANTS.lines().nth(rule.line - 1), Some("id = \"mo\""));
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

/// A policy from the shared models and the given jurisdictions and tenants.
fn policy_with(jurisdictions: &str, tenants: &str) -> Policy {
    let dir = tempfile::TempDir::new().unwrap();
    for (name, text) in [
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", jurisdictions),
        ("tenants.toml", tenants),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match config::load(dir.path(), &|_| None) {
        Ok(c) => c.policy,
        Err(e) => panic!("{e}"),
    }
}

fn rule_of<'p>(
    p: &'p Policy,
    tenant: &str,
    model: &str,
    purpose: Option<&str>,
    day: &str,
) -> std::borrow::Cow<'p, Rule> {
    let t = p.tenant_by_id(tenant).unwrap();
    let d = p.decide(t, model, purpose, Day::parse(day).unwrap());
    p.rule(d.rule.unwrap()).unwrap()
}

const TENANT_DE: &str = r#"
[[tenants]]
id = "de"
legal_name = "DE GmbH"
country = "DE"
jurisdiction = "rest"
status = "active"
"#;

/// Three versions of one jurisdiction, written out of date order, with a gap between the second
/// and the third.
const STAGED: &str = r#"
[[jurisdictions]]
id = "rest"
effective_from = 2027-09-01
countries = ["*"]
embargoed = true

[[jurisdictions]]
id = "rest"
until = 2026-12-31
countries = ["*"]
max_training_flops = 1e26
allow_models = ["*"]
require_declaration = "never"
allowed_residencies = ["*"]

[[jurisdictions]]
id = "rest"
effective_from = 2027-01-01
until = 2027-06-30
countries = ["*"]
max_training_flops = 1e25
allow_models = ["*"]
require_declaration = "never"
allowed_residencies = ["*"]
"#;

#[test]
fn policy_jurisdiction_version_in_force_on_the_day_decides() {
    let p = policy_with(STAGED, TENANT_DE);
    assert_eq!(p.jurisdictions().len(), 1, "one jurisdiction, three versions");
    // "mid" is trained with 2e25 FLOPs: under the first version's line, over the second's.
    assert_eq!(code(&p, "de", "mid", None, "2026-12-31"), "allow");
    assert_eq!(code(&p, "de", "mid", None, "2027-01-01"), "compute_threshold_exceeded");
    assert_eq!(&*rule_of(&p, "de", "mid", None, "2027-01-01").key, "jurisdictions[2] (rest).max_training_flops");
    assert_eq!(code(&p, "de", "mid", None, "2027-06-30"), "compute_threshold_exceeded");
    assert_eq!(code(&p, "de", "mid", None, "2027-09-01"), "jurisdiction_embargoed");
    assert_eq!(code(&p, "de", "mid", None, "2099-01-01"), "jurisdiction_embargoed");
    assert_eq!(code(&p, "de", "small", None, "1970-01-01"), "allow");
}

#[test]
fn policy_day_no_version_covers_denies_every_model_naming_the_gap() {
    let p = policy_with(STAGED, TENANT_DE);
    for day in ["2027-07-01", "2027-08-31"] {
        assert_eq!(code(&p, "de", "small", None, day), "model_not_allowed", "{day}");
        let rule = rule_of(&p, "de", "small", None, day);
        assert_eq!(&*rule.key, "jurisdictions[0] (rest).effective_from");
        assert_eq!(rule.line, 4);
        assert_eq!(
            &*rule.detail,
            "no version of jurisdiction \"rest\" is in force from 2027-07-01 through 2027-08-31, so every model is denied (default deny)"
        );
    }
    // An unknown name is still not found: the gap refuses models, it does not invent them.
    assert_eq!(code(&p, "de", "nope", None, "2027-07-01"), "model_not_found");
    let t = p.tenant(p.tenant_by_id("de").unwrap()).unwrap();
    let j = p.jurisdiction(t).unwrap();
    assert!(j.is_dated());
    let windows: Vec<String> = j.periods().iter().map(|p| p.window.to_string()).collect();
    assert_eq!(
        windows,
        [
            "through 2026-12-31",
            "from 2027-01-01 through 2027-06-30",
            "from 2027-07-01 through 2027-08-31",
            "from 2027-09-01"
        ]
    );
}

#[test]
fn policy_jurisdiction_before_its_first_and_after_its_last_version_denies() {
    let one = |dates: &str| {
        format!(
            "[[jurisdictions]]\nid = \"rest\"\n{dates}\ncountries = [\"*\"]\nmax_training_flops = 1e26\nallow_models = [\"*\"]\nrequire_declaration = \"never\"\nallowed_residencies = [\"*\"]\n"
        )
    };
    let p = policy_with(&one("effective_from = 2027-01-01"), TENANT_DE);
    assert_eq!(code(&p, "de", "small", None, "2026-12-31"), "model_not_allowed");
    let rule = rule_of(&p, "de", "small", None, "2026-12-31");
    assert_eq!((&*rule.key, rule.line), ("jurisdictions[0] (rest).effective_from", 3));
    assert!(rule.detail.contains("is in force before 2027-01-01"), "{}", rule.detail);
    assert_eq!(code(&p, "de", "small", None, "2027-01-01"), "allow");

    let p = policy_with(&one("until = 2026-12-31"), TENANT_DE);
    assert_eq!(code(&p, "de", "small", None, "2026-12-31"), "allow");
    let rule = rule_of(&p, "de", "small", None, "2027-01-01");
    assert_eq!(&*rule.key, "jurisdictions[0] (rest).until");
    assert!(rule.detail.contains("is in force after 2026-12-31"), "{}", rule.detail);

    let p = policy_with(&one(""), TENANT_DE);
    let t = p.tenant(p.tenant_by_id("de").unwrap()).unwrap();
    assert!(!p.jurisdiction(t).unwrap().is_dated());
}

const NEEDS_DECLARATION: &str = r#"
[[jurisdictions]]
id = "rest"
countries = ["*"]
max_training_flops = 1e27
allow_models = ["*"]
require_declaration = "at-or-above-flops"
declaration_flops = 1e25
allowed_residencies = ["*"]
"#;

#[test]
fn policy_declaration_counts_from_effective_from_through_expires() {
    let tenants = format!(
        "{TENANT_DE}[tenants.end_use]\nid = \"D2\"\neffective_from = 2026-03-01\nexpires = 2026-06-30\npurposes = [\"translation\"]\n"
    );
    let p = policy_with(NEEDS_DECLARATION, &tenants);
    // "big" (1e26) needs a declaration; "small" (1e22) does not, but a stated purpose must be declared.
    assert_eq!(code(&p, "de", "big", None, "2026-02-28"), "end_use_declaration_required");
    let rule = rule_of(&p, "de", "big", None, "2026-02-28");
    assert_eq!(&*rule.key, "tenants[0] (de).end_use.effective_from");
    assert_eq!(&*rule.detail, "declaration D2 does not count before 2026-03-01: as if none were on file");
    assert_eq!(code(&p, "de", "small", Some("translation"), "2026-02-28"), "purpose_not_declared");
    assert_eq!(
        &*rule_of(&p, "de", "small", Some("translation"), "2026-02-28").key,
        "tenants[0] (de).end_use.effective_from"
    );
    assert_eq!(code(&p, "de", "small", None, "2026-02-28"), "allow");
    for day in ["2026-03-01", "2026-06-30"] {
        assert_eq!(code(&p, "de", "big", None, day), "allow", "{day}");
        assert_eq!(code(&p, "de", "small", Some("translation"), day), "allow", "{day}");
    }
    assert_eq!(code(&p, "de", "big", None, "2026-07-01"), "end_use_declaration_expired");
    assert_eq!(code(&p, "de", "small", Some("translation"), "2026-07-01"), "end_use_declaration_expired");
    assert_eq!(&*rule_of(&p, "de", "big", None, "2026-07-01").key, "tenants[0] (de).end_use");

    // Without a declaration at all, the jurisdiction's requirement is what refuses.
    let p = policy_with(NEEDS_DECLARATION, TENANT_DE);
    assert_eq!(&*rule_of(&p, "de", "big", None, "2026-02-28").key, "jurisdictions[0] (rest).declaration_flops");
}

#[test]
fn policy_suspension_window_suspends_only_within_its_days() {
    let tenants = format!(
        "{TENANT_DE}[tenants.suspension]\neffective_from = 2027-01-01\nuntil = 2027-03-31\nreason = \"screening review\"\n"
    );
    let p = policy_with(NEEDS_DECLARATION, &tenants);
    assert_eq!(code(&p, "de", "small", None, "2026-12-31"), "allow");
    for day in ["2027-01-01", "2027-03-31"] {
        assert_eq!(code(&p, "de", "small", None, day), "tenant_suspended", "{day}");
        // Suspension comes first: whatever the model, even an unknown one.
        assert_eq!(code(&p, "de", "nope", None, day), "tenant_suspended", "{day}");
    }
    let rule = rule_of(&p, "de", "small", None, "2027-02-01");
    assert_eq!((&*rule.key, rule.line), ("tenants[0] (de).suspension", 8));
    assert_eq!(&*rule.detail, "suspended from 2027-01-01 through 2027-03-31: screening review");
    assert_eq!(code(&p, "de", "small", None, "2027-04-01"), "allow");

    // Open-ended on either side.
    let tenants = format!("{TENANT_DE}[tenants.suspension]\nuntil = 2027-03-31\nreason = \"unpaid\"\n");
    let p = policy_with(NEEDS_DECLARATION, &tenants);
    assert_eq!(code(&p, "de", "small", None, "2000-01-01"), "tenant_suspended");
    assert_eq!(code(&p, "de", "small", None, "2027-04-01"), "allow");
    let tenants = format!("{TENANT_DE}[tenants.suspension]\neffective_from = 2027-01-01\nreason = \"closed\"\n");
    let p = policy_with(NEEDS_DECLARATION, &tenants);
    assert_eq!(code(&p, "de", "small", None, "2026-12-31"), "allow");
    assert_eq!(code(&p, "de", "small", None, "2999-12-31"), "tenant_suspended");
}

#[test]
fn window_contains_overlaps_and_reads_as_words() {
    let d = |s| Day::parse(s).unwrap();
    let w = Window { from: d("2027-01-01"), until: d("2027-03-31") };
    assert!(w.contains(d("2027-01-01")) && w.contains(d("2027-03-31")));
    assert!(!w.contains(d("2026-12-31")) && !w.contains(d("2027-04-01")));
    assert!(w.overlaps(Window { from: d("2027-03-31"), until: Day::MAX }));
    assert!(!w.overlaps(Window { from: d("2027-04-01"), until: Day::MAX }));
    assert!(Window::ALWAYS.overlaps(w) && Window::ALWAYS.contains(Day::MIN) && Window::ALWAYS.contains(Day::MAX));
    assert_eq!(w.to_string(), "from 2027-01-01 through 2027-03-31");
    assert_eq!(Window { from: Day::MIN, until: d("2027-03-31") }.to_string(), "through 2027-03-31");
    assert_eq!(Window { from: d("2027-01-01"), until: Day::MAX }.to_string(), "from 2027-01-01");
    assert_eq!(Window::ALWAYS.to_string(), "on every day");
    assert_eq!(Day::MAX.succ(), None);
    assert_eq!(Day::MIN.pred(), None);
}

/// What the gateway refuses before reading a body is exactly what `decide` refuses whatever the
/// model, on every tenant of the example, on days on both sides of its staged changes.
#[test]
fn policy_tenant_refusal_is_decides_answer_for_any_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let p = config::load(&dir, &|_| Some("k".into())).unwrap().policy;
    let mut names: Vec<&str> = p.models().iter().map(|m| &*m.id).collect();
    names.push("no-such-model");
    let mut refused = 0;
    for day in ["2026-06-01", "2026-12-06", "2027-03-01"] {
        let today = Day::parse(day).unwrap();
        for t in 0..p.tenants().len() as TenantIdx {
            let early = p.tenant_refusal(t, today);
            refused += usize::from(early.is_some());
            for name in &names {
                let d = p.decide(t, name, None, today);
                match early {
                    Some((denial, rule)) => {
                        assert_eq!((d.verdict, d.rule), (Verdict::Deny(denial), rule), "{t} {name}")
                    }
                    None => assert!(
                        !matches!(
                            d.verdict,
                            Verdict::Deny(
                                Denial::TenantSuspended | Denial::DeniedParty | Denial::JurisdictionEmbargoed
                            )
                        ),
                        "{t} {name} {day}: {:?}",
                        d.verdict
                    ),
                }
            }
        }
    }
    assert!(refused >= 3, "the example's suspended, listed and embargoed tenants");
}

/// A reload takes the last load's screening of names it saw against the same list and
/// threshold, and screens again what changed.
#[test]
fn a_reload_screens_only_names_the_last_load_did_not_see_against_this_list() {
    let dir = config::example_copy();
    let load =
        |previous: Option<&Policy>| config::load_after(dir.path(), &|_| Some("k".into()), previous).unwrap().policy;
    let blocked = |p: &Policy| -> Vec<String> {
        let mut ids: Vec<String> = p
            .tenants()
            .iter()
            .enumerate()
            .filter(|&(i, _)| p.party(i as TenantIdx).denied_party.is_some())
            .map(|(_, t)| t.id.to_string())
            .collect();
        ids.sort_unstable();
        ids
    };
    let first = load(None);
    let again = load(Some(&first));
    assert_eq!(blocked(&first), blocked(&again));
    assert!(!blocked(&first).is_empty());
    assert_eq!(first.screening.findings.len(), again.screening.findings.len());

    // What a kept segment's screening says is what a reload takes: one that calls every name
    // clean clears the tenants blocked by name (this is how reuse is seen)...
    let by_name: Vec<String> = first
        .screening
        .findings
        .iter()
        .filter_map(|f| match (f.subject, &f.status) {
            (Subject::Tenant(t), FindingStatus::Blocked(_)) => Some(first.tenant(t).unwrap().id.to_string()),
            _ => None,
        })
        .collect();
    assert!(!by_name.is_empty());
    let unlisted: Vec<String> = blocked(&first).into_iter().filter(|t| !by_name.contains(t)).collect();
    let forge = || {
        let mut forged = load(None);
        // No other policy holds the segment yet, so it can be forged.
        let segment = Arc::get_mut(&mut forged.tenants.segments[0]).unwrap();
        let mut s = segment.screened.take().unwrap();
        s.hits = Box::default();
        let digests: Vec<u128> = s.memo.hits.keys().copied().collect();
        for d in digests {
            s.memo.hits.remove(&d);
            s.memo.clean.insert(d);
        }
        segment.screened = s.into();
        forged
    };
    let forged = forge();
    assert_eq!(blocked(&load(Some(&forged))), unlisted);
    // ...and what its file's last version found is what a changed file's unchanged names take...
    let tenants = dir.path().join("tenants.toml");
    let text = std::fs::read_to_string(&tenants).unwrap();
    std::fs::write(&tenants, text + "\n# reviewed\n").unwrap();
    assert_eq!(blocked(&load(Some(&forged))), unlisted);
    // ...but not once the list changed: its names are screened again.
    let list = dir.path().join("screening-list.csv");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, text + "\n").unwrap();
    assert_eq!(blocked(&load(Some(&forged))), blocked(&first));
}

/// A tenant's own rules are spelled out from its entry: each names the tenant's file, line, key
/// and what it says, and one tenant's never reads as another's.
#[test]
fn policy_tenant_rules_name_their_own_entry() {
    let tenants = format!(
        "{TENANT_DE}allow_models = [\"mid\"]\n[tenants.end_use]\nid = \"D1\"\nexpires = 2027-06-30\npurposes = \
         [\"translation\", \"search\"]\n\n[[tenants]]\nid = \"off\"\nlegal_name = \"Off Ltd\"\ncountry = \"FR\"\n\
         jurisdiction = \"rest\"\nstatus = \"suspended\"\n"
    );
    let p = policy_with(NEEDS_DECLARATION, &tenants);
    let rule = rule_of(&p, "de", "small", None, "2027-01-01");
    assert_eq!((&*rule.key, rule.line), ("tenants[0] (de).allow_models", 8));
    assert_eq!(&*rule.detail, "the tenant's own allowlist does not include the model");
    assert!(rule.file.ends_with("tenants.toml"), "{}", rule.file);
    let rule = rule_of(&p, "de", "mid", Some("coding"), "2027-01-01");
    assert_eq!((&*rule.key, rule.line), ("tenants[0] (de).end_use", 10));
    assert_eq!(&*rule.detail, r#"declaration D1 valid through 2027-06-30, purposes ["translation", "search"]"#);
    let rule = rule_of(&p, "off", "mid", None, "2027-01-01");
    assert_eq!((&*rule.key, rule.line), ("tenants[1] (off).status", 19));
    assert_eq!(&*rule.detail, "status = \"suspended\"");
    // Ids past the last tenant's are no rule.
    let past = u32::try_from(p.rules.len()).unwrap() + 2 * TenantRule::PER_TENANT;
    assert!(p.rule(past).is_none());
}

/// A reload shares the compiled tenants of each tenant file whose bytes did not change, and of
/// none once a file they are compiled against changed.
#[test]
fn policy_reload_shares_the_segments_of_unchanged_tenant_files() {
    let dir = tempfile::TempDir::new().unwrap();
    for (name, text) in
        [("models.toml", MODELS), ("country-groups.toml", GROUPS), ("jurisdictions.toml", NEEDS_DECLARATION)]
    {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::create_dir(dir.path().join("tenants.d")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join("tenants.d").join(name), text).unwrap();
    write("a.toml", TENANT_DE);
    write("b.toml", &TENANT_DE.replace("\"de\"", "\"b\""));
    let load = |previous: Option<&Policy>| config::load_after(dir.path(), &|_| None, previous).unwrap().policy;
    let shared = |p: &Policy, q: &Policy| -> Vec<bool> {
        p.tenants.segments().iter().zip(q.tenants.segments()).map(|(a, b)| Arc::ptr_eq(a, b)).collect()
    };
    let first = load(None);
    write("b.toml", &TENANT_DE.replace("\"de\"", "\"b\"").replace("DE GmbH", "B GmbH"));
    let second = load(Some(&first));
    assert_eq!(shared(&first, &second), [true, false]);
    assert_eq!(&*second.tenant(1).unwrap().legal_name, "B GmbH");
    let third = load(Some(&second));
    assert_eq!(shared(&second, &third), [true, true]);
    std::fs::write(dir.path().join("jurisdictions.toml"), format!("{NEEDS_DECLARATION}\n# reviewed\n")).unwrap();
    let fourth = load(Some(&third));
    assert_eq!(shared(&third, &fourth), [false, false]);
}
