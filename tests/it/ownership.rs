//! Customer due diligence. Ownership and the Affiliates rule: shares owned by listed parties,
//! directly, through other entities and together, against the threshold; clearances; the rule's
//! dates; graph errors; a real request refused with the chain in its audit record. KYC records:
//! re-verification dates with grace, their config errors, a lapsed tenant's request.

use customs::config::Config;
use customs::policy::{Day, Verdict};
use http::StatusCode;

use crate::support::{Example, US_JURISDICTION, chat, load, load_err, trail, write_config};

const MODELS: &str = r#"[[models]]
id = "m"
training_flops = 1e24
compute_basis = "assumed"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "us-east"
"#;
const GROUPS: &str = "";
const TENANT: &str = r#"[[tenants]]
id = "t"
legal_name = "Plain Example Inc."
country = "US"
jurisdiction = "us"
status = "active"
entity = "t-co"
"#;
/// The entities every test starts from: the tenant's own, two listed parties (their names are on
/// the example's synthetic list: Entity List, MEU List), and one not listed.
const BASE: &str = r#"
[[entities]]
id = "zephyra"
legal_name = "Zephyra Quantum Compute Co., Ltd."
incorporated = "CN"
headquarters = "CN"

[[entities]]
id = "northwind"
legal_name = "Northwind Avionics Research Institute"
incorporated = "CN"
headquarters = "CN"

[[entities]]
id = "plain"
legal_name = "Plain Holdings Inc."
incorporated = "US"
headquarters = "US"
"#;

fn list() -> String {
    std::fs::read_to_string(crate::support::example_dir().join("screening-list.csv")).unwrap()
}

/// The config with `entities` appended to [`BASE`] (the tenant's entity `t-co` among them),
/// `rule` as the `[affiliates_rule]` table and `screening` appended to screening.toml.
fn config(rule: &str, entities: &str, screening: &str) -> (tempfile::TempDir, String) {
    let ownership = format!("{rule}\n{BASE}\n{entities}");
    let screening = format!("[screening]\nlist = \"list.csv\"\n{screening}");
    let list = list();
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", US_JURISDICTION),
        ("tenants.toml", TENANT),
        ("screening.toml", &screening),
        ("list.csv", &list),
        ("ownership.toml", &ownership),
    ]);
    (dir, ownership)
}

fn policy(entities: &str) -> Config {
    let (dir, _) = config("", entities, "");
    load(dir.path())
}

/// The tenant's decision for model `m` on `day`: `None` when allowed, else the reason code.
fn refusal(c: &Config, day: &str) -> Option<&'static str> {
    let p = &c.policy;
    let d = p.decide(p.tenant_by_id("t").unwrap(), "m", None, Day::parse(day).unwrap());
    match d.verdict {
        Verdict::Allow { .. } => None,
        Verdict::Deny(denial) => Some(denial.reason().as_str()),
    }
}

fn share(c: &Config, entity: &str) -> f64 {
    let o = c.policy.ownership();
    o.entity(o.entity_by_id(entity).unwrap()).unwrap().listed_share
}

fn t_co(owners: &str) -> String {
    format!(
        "[[entities]]\nid = \"t-co\"\nlegal_name = \"Plain Example Inc.\"\nincorporated = \"US\"\nheadquarters = \"US\"\n\
         owners = [{owners}]\n"
    )
}

const TODAY: &str = "2026-12-01";

#[test]
fn a_direct_share_is_refused_at_and_above_the_threshold_and_served_below() {
    for (pct, refused) in [("49.99", false), ("50", true), ("60", true), ("100", true)] {
        let c = policy(&t_co(&format!("{{ entity = \"zephyra\", percent = {pct} }}")));
        let want = refused.then_some("denied_party");
        assert_eq!(refusal(&c, TODAY), want, "{pct}% held by a listed party");
    }
}

#[test]
fn an_owner_at_the_threshold_counts_whole_and_one_below_it_multiplies() {
    // zephyra holds 60% of mid: mid is restricted, and its 60% of t-co counts whole (60%).
    let mid = |pct: &str| {
        format!(
            "[[entities]]\nid = \"mid\"\nlegal_name = \"Middle Holdings Ltd.\"\nincorporated = \"HK\"\n\
             headquarters = \"HK\"\nowners = [{{ entity = \"zephyra\", percent = {pct} }}]\n"
        )
    };
    let c = policy(&format!("{}{}", mid("60"), t_co("{ entity = \"mid\", percent = 60 }")));
    assert_eq!((share(&c, "mid"), share(&c, "t-co")), (60.0, 60.0));
    assert_eq!(refusal(&c, TODAY), Some("denied_party"));

    // zephyra holds 40% of mid: mid is not restricted; 40% of its 100% is 40%: served.
    let c = policy(&format!("{}{}", mid("40"), t_co("{ entity = \"mid\", percent = 100 }")));
    assert_eq!(share(&c, "t-co"), 40.0);
    assert_eq!(refusal(&c, TODAY), None);

    // The same, plus 10% held by zephyra directly: 40% + 10% reaches 50%.
    let owners = "{ entity = \"mid\", percent = 90 }, { entity = \"zephyra\", percent = 10 }";
    let c = policy(&format!("{}{}", mid("40"), t_co(owners)));
    assert!((share(&c, "t-co") - 46.0).abs() < 1e-9, "{}", share(&c, "t-co"));
    assert_eq!(refusal(&c, TODAY), None, "90% of a 40%-listed owner is 36%, plus 10%: 46%");
    let owners = "{ entity = \"mid\", percent = 90 }, { entity = \"zephyra\", percent = 10 }";
    let c = policy(&format!("{}{}", mid("44.5"), t_co(owners)));
    assert_eq!(refusal(&c, TODAY), Some("denied_party"), "90% x 44.5% = 40.05%, plus 10%");
}

#[test]
fn shares_of_different_listed_parties_add_up() {
    let below = "{ entity = \"zephyra\", percent = 25 }, { entity = \"northwind\", percent = 24 }, \
                 { entity = \"plain\", percent = 51 }";
    let c = policy(&t_co(below));
    assert_eq!(share(&c, "t-co"), 49.0);
    assert_eq!(refusal(&c, TODAY), None);
    let at = "{ entity = \"zephyra\", percent = 25 }, { entity = \"northwind\", percent = 25 }, \
              { entity = \"plain\", percent = 50 }";
    assert_eq!(refusal(&policy(&t_co(at)), TODAY), Some("denied_party"));
}

#[test]
fn a_listed_grandparent_through_two_chains_is_summed_and_explained() {
    // zephyra holds 50% of p1 (restricted: counts whole) and 40% of p2 (not restricted).
    // p1 holds 30% of t-co, p2 holds 50%: 30% + 40% x 50% = 50%.
    let entities = format!(
        r#"[[entities]]
id = "p1"
legal_name = "First Parent Ltd."
incorporated = "HK"
headquarters = "HK"
owners = [{{ entity = "zephyra", percent = 50 }}]

[[entities]]
id = "p2"
legal_name = "Second Parent Ltd."
incorporated = "SG"
headquarters = "SG"
owners = [{{ entity = "zephyra", percent = 40 }}, {{ entity = "plain", percent = 60 }}]

{}"#,
        t_co(
            "{ entity = \"p1\", percent = 30 }, { entity = \"p2\", percent = 50 }, { entity = \"plain\", percent = 20 }"
        )
    );
    let c = policy(&entities);
    assert_eq!(share(&c, "t-co"), 50.0);
    let p = &c.policy;
    let d = p.decide(p.tenant_by_id("t").unwrap(), "m", None, Day::parse(TODAY).unwrap());
    assert!(matches!(d.verdict, Verdict::Deny(_)));
    let rule = p.rule(d.rule.unwrap()).unwrap();
    assert_eq!(rule.file.rsplit('/').next(), Some("ownership.toml"));
    let detail = &*rule.detail;
    assert!(detail.starts_with("t-co is 50% owned by listed parties together"), "{detail}");
    assert!(detail.contains("p1 [restricted, 50% owned by listed parties] -30%-> t-co = 30%"), "{detail}");
    assert!(detail.contains("zephyra [listed: Entity List (EL)"), "{detail}");
    assert!(detail.contains("-40%-> p2 -50%-> t-co = 20%"), "{detail}");
    assert!(detail.contains("p1 counts whole, being 50% owned by listed parties: zephyra"), "{detail}");
}

#[test]
fn a_cleared_owner_does_not_count_and_an_uncleared_one_does() {
    // Its name is the SDN entry's (legal form aside): a hit, unless a reviewer cleared it.
    let entities = format!(
        "[[entities]]\nid = \"lantern\"\nlegal_name = \"Obsidian Lantern Data Services B.V.\"\n\
         incorporated = \"NL\"\nheadquarters = \"NL\"\n{}",
        t_co("{ entity = \"lantern\", percent = 60 }")
    );
    let (dir, _) = config("", &entities, "");
    assert_eq!(refusal(&load(dir.path()), TODAY), Some("denied_party"));
    let cleared = "[[clearances]]\nentity = \"lantern\"\nentry = \"99999\"\nreviewer = \"j.doe\"\n\
                   date = 2026-11-20\nnote = \"Different company.\"\n";
    let (dir, _) = config("", &entities, cleared);
    let c = load(dir.path());
    assert_eq!(share(&c, "t-co"), 0.0);
    assert_eq!(refusal(&c, TODAY), None);
}

#[test]
fn the_rule_is_suspended_on_a_day_and_in_force_the_next() {
    let rule = "[affiliates_rule]\nthreshold = 50\neffective_from = 2025-09-29\n\
                [[affiliates_rule.suspensions]]\neffective_from = 2025-11-10\nuntil = 2026-11-09\n\
                reason = \"suspended for one year\"\n";
    let (dir, _) = config(rule, &t_co("{ entity = \"zephyra\", percent = 60 }"), "");
    let c = load(dir.path());
    assert_eq!(refusal(&c, "2025-09-28"), None, "before the rule");
    assert_eq!(refusal(&c, "2025-09-29"), Some("denied_party"));
    assert_eq!(refusal(&c, "2025-11-10"), None, "suspended");
    assert_eq!(refusal(&c, "2026-11-09"), None, "suspended");
    assert_eq!(refusal(&c, "2026-11-10"), Some("denied_party"), "back in force");

    // An entity that is itself listed is refused on its name, whatever the rule's dates.
    let (dir, _) = config(
        rule,
        "[[entities]]\nid = \"t-co\"\nlegal_name = \"Zephyra Quantum Compute Co Ltd\"\n\
                                  incorporated = \"CN\"\nheadquarters = \"CN\"\n",
        "",
    );
    assert_eq!(refusal(&load(dir.path()), "2026-01-01"), Some("denied_party"));
}

#[test]
fn cycles_unknown_owners_and_shares_over_100_percent_are_config_errors() {
    let cyclic = "[[entities]]\nid = \"a\"\nlegal_name = \"A Ltd.\"\nincorporated = \"HK\"\nheadquarters = \"HK\"\n\
                  owners = [{ entity = \"b\", percent = 50 }]\n\n\
                  [[entities]]\nid = \"b\"\nlegal_name = \"B Ltd.\"\nincorporated = \"HK\"\nheadquarters = \"HK\"\n\
                  owners = [{ entity = \"a\", percent = 50 }]\n";
    let entities =
        format!("{cyclic}\n{}", t_co("{ entity = \"a\", percent = 10 }, { entity = \"ghost\", percent = 5 }"));
    let (dir, text) = config("", &entities, "");
    let err = load_err(dir.path());
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let a = line_of("id = \"a\"");
    assert!(err.contains(&format!("ownership.toml:{a}:")), "{err}");
    assert!(err.contains("ownership cycle: a -> b -> a"), "{err}");
    assert!(err.contains("unknown entity \"ghost\""), "{err}");

    let over = t_co("{ entity = \"zephyra\", percent = 70 }, { entity = \"plain\", percent = 40 }");
    let (dir, _) = config("", &over, "");
    let err = load_err(dir.path());
    assert!(err.contains("owners hold 110% together; at most 100%"), "{err}");

    let (dir, _) = config("", &t_co("{ entity = \"zephyra\", percent = 0 }"), "");
    assert!(load_err(dir.path()).contains("must be above 0 and at most 100"));
}

#[tokio::test]
async fn a_request_of_an_owned_tenant_is_refused_with_the_chain_in_its_audit_record() {
    // The example serves as of 2026-11-28: the Affiliates rule is back in force.
    let ex = Example::start().await;
    let r = chat(ex.gw.addr, "sk-demo-sg", "gpt-4o-mini", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "denied_party".to_owned()));
    // Refused before its body is forwarded: the upstream never saw it.
    assert!(ex.mock.requests().await.is_empty());
    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    let records = trail(&audit);
    let record = records.iter().find(|r| r["tenant"] == "demo-sg").unwrap();
    assert_eq!(record["reason"], "denied_party");
    let rule = record["rule"].as_str().unwrap();
    assert!(rule.contains("ownership.toml"), "{rule}");
    assert!(rule.contains("lumen-translation is 55% owned by listed parties together"), "{rule}");
    assert!(rule.contains("northwind-avionics [listed: Military End User (MEU) List"), "{rule}");
    ex.mock.stop().await;

    // During the rule's suspension the same tenant is served.
    let day = customs::policy::DayClock::Fixed(Day::parse("2026-06-01").unwrap());
    let ex = Example::start_on(day, |_| {}).await;
    let r = chat(ex.gw.addr, "sk-demo-sg", "gpt-4o-mini", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    ex.stop().await;
}

/// The tenant `t` with a KYC record due `due`, with `grace` days.
fn kyc_config(due: &str, extra: &str) -> tempfile::TempDir {
    let tenant = TENANT.replace("entity = \"t-co\"\n", "");
    let tenants = format!(
        "{tenant}[tenants.kyc]\nverified_by = \"j.doe\"\nverified_on = 2026-01-01\nevidence = [\"REG-1\"]\n\
         reverify_by = {due}\n{extra}"
    );
    write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", US_JURISDICTION),
        ("tenants.toml", &tenants),
    ])
}

#[test]
fn a_lapsed_verification_is_refused_after_its_grace_and_not_before() {
    let c = load(kyc_config("2026-12-31", "grace_days = 10\n").path());
    assert_eq!(refusal(&c, "2026-12-31"), None, "the due day itself");
    assert_eq!(refusal(&c, "2027-01-10"), None, "the last day of grace");
    assert_eq!(refusal(&c, "2027-01-11"), Some("kyc_expired"));
    let p = &c.policy;
    let d = p.decide(p.tenant_by_id("t").unwrap(), "m", None, Day::parse("2027-01-11").unwrap());
    let rule = p.rule(d.rule.unwrap()).unwrap();
    assert_eq!(&*rule.key, "tenants[0] (t).kyc");
    assert!(rule.detail.contains("verified by j.doe on 2026-01-01"), "{}", rule.detail);
    assert!(rule.detail.contains("from 2027-01-11 the tenant is refused"), "{}", rule.detail);

    let c = load(kyc_config("2026-12-31", "").path());
    assert_eq!(refusal(&c, "2027-01-01"), Some("kyc_expired"), "no grace");
}

#[test]
fn a_kyc_record_due_before_it_was_made_or_holding_a_document_is_a_config_error() {
    let err = load_err(kyc_config("2025-12-31", "grace_days = 400\n").path());
    assert!(err.contains("tenants[0] (t).kyc.reverify_by: 2025-12-31 is before verified_on 2026-01-01"), "{err}");
    assert!(err.contains("tenants[0] (t).kyc.grace_days: must be at most 365"), "{err}");
    let dir = kyc_config("2026-12-31", "");
    let pasted = dir.path().join("tenants.toml");
    let text = std::fs::read_to_string(&pasted).unwrap().replace("[\"REG-1\"]", "[\"\"\"line one\nline two\"\"\"]");
    std::fs::write(&pasted, text).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("kyc.evidence[0]: must be a reference"), "{err}");
}

#[tokio::test]
async fn a_lapsed_tenant_is_refused_before_its_body_with_the_record_audited() {
    let ex = Example::start().await;
    let r = chat(ex.gw.addr, "sk-demo-lapsed", "gpt-4o-mini", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "kyc_expired".to_owned()));
    assert!(ex.mock.requests().await.is_empty());
    let audit = ex.audit_dir();
    ex.gw.shutdown().await;
    let records = trail(&audit);
    let record = records.iter().find(|r| r["tenant"] == "demo-lapsed").unwrap();
    assert_eq!(record["reason"], "kyc_expired");
    let rule = record["rule"].as_str().unwrap();
    assert!(rule.contains("tenants.toml") && rule.contains("re-verification due by 2026-09-30"), "{rule}");
    ex.mock.stop().await;
}

/// Two jurisdictions: `us` by country, and `cn`, which denies every model, with `applies_by` as
/// given; the tenant `t` (US) is owned through `chain` by an entity headquartered in CN.
fn hq_config(applies_by: &str, chain: &str) -> tempfile::TempDir {
    let jurisdictions = format!(
        "{US_JURISDICTION}\n[[jurisdictions]]\nid = \"cn\"\ncountries = [\"CN\"]\n{applies_by}\nmax_training_flops = inf\n\
         allow_models = [\"*\"]\ndeny_models = [\"m\"]\nrequire_declaration = \"never\"\nallowed_residencies = [\"us-*\"]\n"
    );
    let ownership = format!(
        "[[entities]]\nid = \"cn-parent\"\nlegal_name = \"Parent Co., Ltd.\"\nincorporated = \"CN\"\nheadquarters = \"CN\"\n\n\
         [[entities]]\nid = \"mid\"\nlegal_name = \"Middle Holdings Ltd.\"\nincorporated = \"HK\"\nheadquarters = \"HK\"\n\
         owners = [{{ entity = \"cn-parent\", percent = 100 }}]\n\n{}",
        t_co(chain)
    );
    write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", &jurisdictions),
        ("tenants.toml", TENANT),
        ("ownership.toml", &ownership),
    ])
}

#[test]
fn a_jurisdiction_applying_by_headquarters_reaches_a_tenant_through_its_ultimate_parent() {
    // t-co is 60% held by mid, which cn-parent holds whole: the ultimate parent is cn-parent (CN).
    let majority = "{ entity = \"mid\", percent = 60 }";
    let c = load(hq_config("applies_by = \"country-or-headquarters\"", majority).path());
    assert_eq!(refusal(&c, TODAY), Some("model_not_allowed"), "cn answers too, and denies m");
    let p = &c.policy;
    let d = p.decide(p.tenant_by_id("t").unwrap(), "m", None, Day::parse(TODAY).unwrap());
    assert!(p.rule(d.rule.unwrap()).unwrap().key.contains("(cn).deny_models"));
    let e = customs::explain::explain(p, "t", "m", None, Day::parse(TODAY).unwrap()).unwrap();
    assert_eq!(e.also.as_deref(), Some("cn (headquarters of its ultimate parent cn-parent, CN)"));

    // By country only (the default), cn never reaches a US tenant.
    assert_eq!(refusal(&load(hq_config("", majority).path()), TODAY), None);
    // Exactly half is not control: t-co is its own ultimate parent, headquartered in the US.
    let half = "{ entity = \"mid\", percent = 50 }";
    let c = load(hq_config("applies_by = \"country-or-headquarters\"", half).path());
    assert_eq!(refusal(&c, TODAY), None);
}

#[test]
fn a_tenant_bound_where_no_rule_puts_it_is_a_config_error() {
    // cn applies by headquarters only; a tenant bound to us whose parent is in CN must be bound
    // to cn (us applies by country, so both apply and either binding is accepted)...
    let c = load(hq_config("applies_by = \"headquarters\"", "{ entity = \"mid\", percent = 100 }").path());
    assert!(c.policy.tenant(c.policy.tenant_by_id("t").unwrap()).unwrap().also.is_some());
    // ...but a tenant bound to cn without a parent there is refused at load.
    let dir = hq_config("applies_by = \"headquarters\"", "{ entity = \"plain\", percent = 10 }");
    let tenants = TENANT.replace("jurisdiction = \"us\"", "jurisdiction = \"cn\"");
    std::fs::write(dir.path().join("tenants.toml"), tenants).unwrap();
    let ownership = std::fs::read_to_string(dir.path().join("ownership.toml")).unwrap()
        + "\n[[entities]]\nid = \"plain\"\nlegal_name = \"Plain Holdings Inc.\"\nincorporated = \"US\"\nheadquarters = \"US\"\n";
    std::fs::write(dir.path().join("ownership.toml"), ownership).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("tenants[0] (t).jurisdiction: country US belongs to jurisdiction \"us\", not \"cn\""),
        "{err}"
    );

    // A tenant owned from CN bound to neither of the two that apply is told both.
    let dir = hq_config("applies_by = \"country-or-headquarters\"", "{ entity = \"mid\", percent = 100 }");
    let jurisdictions = std::fs::read_to_string(dir.path().join("jurisdictions.toml")).unwrap()
        + "\n[[jurisdictions]]\nid = \"other\"\ncountries = [\"*\"]\nallow_models = [\"*\"]\nrequire_declaration = \"never\"\nallowed_residencies = [\"us-*\"]\n";
    std::fs::write(dir.path().join("jurisdictions.toml"), jurisdictions).unwrap();
    let tenants = TENANT.replace("jurisdiction = \"us\"", "jurisdiction = \"other\"");
    std::fs::write(dir.path().join("tenants.toml"), tenants).unwrap();
    let err = load_err(dir.path());
    let want = "\"other\" does not apply to this tenant; \"us\" (its country US) and \"cn\" (headquarters of its \
                ultimate parent cn-parent, CN) do";
    assert!(err.contains(want), "{err}");
}

#[test]
fn explain_notes_what_decides_on_other_days() {
    let c = load(&crate::support::example_dir());
    let day = |d: &str| Day::parse(d).unwrap();
    // Served during the Affiliates rule's suspension, and told why it will not be.
    let e = customs::explain::explain(&c.policy, "demo-sg", "gpt-4o-mini", None, day("2026-06-01")).unwrap();
    assert_eq!(e.decision, "allow");
    assert_eq!(e.notes.len(), 1, "{:?}", e.notes);
    assert!(e.notes[0].contains("refused denied_party on days the rule is in force"), "{:?}", e.notes);
    assert!(e.notes[0].contains("suspended from 2025-11-10 through 2026-11-09"), "{:?}", e.notes);
    let e = customs::explain::explain(&c.policy, "demo-sg", "gpt-4o-mini", None, day("2026-11-10")).unwrap();
    assert!(e.notes.is_empty(), "in force: the refusal itself says it");
    // A verification due within 30 days, and in its grace.
    let e = customs::explain::explain(&c.policy, "demo-nl", "text-embedding-3-small", None, day("2027-07-01")).unwrap();
    assert_eq!(e.notes, ["customer verification due by 2027-06-14; refused kyc_expired from 2027-07-15"]);
    let e = customs::explain::explain(&c.policy, "demo-nl", "text-embedding-3-small", None, day("2027-05-01")).unwrap();
    assert!(e.notes.is_empty(), "{:?}", e.notes);
}

fn customs(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_customs")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn screen_ownership_prints_each_tenants_tree_and_review_record() {
    let dir = crate::support::example_dir();
    let config = dir.to_str().unwrap();
    let (ok, text) = customs(&["screen", "--config", config, "--ownership", "--at", "2026-11-28"]);
    assert!(ok, "{text}");
    assert!(text.starts_with(
        "ownership as of 2026-11-28: the Affiliates rule (50% and more owned by listed parties) is in force"
    ));
    let sg = &text[text.find("\ndemo-sg ").unwrap()..];
    let sg = &sg[..sg[1..].find("\n\n").unwrap_or(sg.len() - 1) + 1];
    assert!(sg.contains("  lumen-translation \"Lumen Translation Pte. Ltd.\" (incorporated SG, headquarters SG): restricted: 55% owned"), "{sg}");
    assert!(sg.contains("    30% harbor-bridge-holdings "), "{sg}");
    assert!(sg.contains("      100% zephyra-quantum \"Zephyra Quantum Compute Co., Ltd.\" (incorporated CN, headquarters CN): LISTED: Entity List (EL)"), "{sg}");
    assert!(sg.contains("lumen-translation: owned 55% by listed parties: refused denied_party"), "{sg}");
    assert!(
        text.contains(
            "      cleared: \"Obsidian Lantern Data Services B.V.\" ~ \"OBSIDIAN LANTERN DATA SERVICES LLC\""
        ),
        "{text}"
    );
    assert!(text.contains("ultimate parent: example-cn-parent (headquarters CN)"), "{text}");
    assert!(text.contains("KYC: verified by a.nguyen@compliance.example on 2025-10-01 (evidence: ABN 00 000 000 000 (Australian Business Register)); LAPSED: refused kyc_expired since 2026-10-31"), "{text}");
    // During the suspension the same tree says the tenant is served.
    let (_, text) = customs(&["screen", "--config", config, "--ownership", "--at", "2026-06-01"]);
    assert!(
        text.contains("lumen-translation: owned 55% by listed parties: served while the rule is not in force"),
        "{text}"
    );

    let (ok, json) = customs(&["screen", "--config", config, "--ownership", "--json", "--at", "2026-11-28"]);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sg = v["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "demo-sg").unwrap();
    assert_eq!((sg["entity"].as_str(), sg["affiliated"].as_bool()), (Some("lumen-translation"), Some(true)));
    let parented = v["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "demo-parented").unwrap();
    assert_eq!(parented["ultimate_parent"], "example-cn-parent");
}

#[test]
fn report_with_a_config_lists_verifications_due_in_grace_and_lapsed() {
    let trail = tempfile::TempDir::new().unwrap();
    std::fs::write(trail.path().join("audit-000001.jsonl"), "").unwrap();
    let config = crate::support::example_dir();
    let run = |until: &str, with_config: bool| {
        let mut args =
            vec!["report", "--audit", trail.path().to_str().unwrap(), "--since", "2026-01-01", "--until", until];
        args.extend(["--format", "json", "--home", "us", "--flops-line", "1e25"]);
        if with_config {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        let (ok, out) = customs(&args);
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["kyc"].clone()
    };
    let states = |kyc: &serde_json::Value| -> Vec<(String, String)> {
        kyc["tenants"].as_array().unwrap().iter().map(|t| (t["tenant"].to_string(), t["state"].to_string())).collect()
    };
    let q = |s: &str| format!("\"{s}\"");
    // demo-nl is due by 2027-06-14: 31 days before, not yet listed; 30 days before, due.
    assert_eq!(states(&run("2027-05-14", true)), [(q("demo-lapsed"), q("lapsed"))]);
    assert_eq!(states(&run("2027-05-15", true)), [(q("demo-lapsed"), q("lapsed")), (q("demo-nl"), q("due"))]);
    assert_eq!(states(&run("2027-06-15", true)), [(q("demo-lapsed"), q("lapsed")), (q("demo-nl"), q("in_grace"))]);
    assert_eq!(run("2027-05-15", false), serde_json::Value::Null, "no config, no tenants to list");
}
