//! `customs check` evaluates expectations.toml: passes on the example config, fails with one
//! readable line per wrong expectation and exit 1; `explain --at` and `check --at` answer for a
//! day on either side of the example's staged change.

use std::path::Path;
use std::process::{Command, Output};

use customs::config;
use customs::policy::{Day, expect};
use tempfile::TempDir;

use crate::support::{example_copy, example_dir, load};

fn customs(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_customs")).args(args).arg("--config").arg(dir).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The example config, copied, with `more` appended to its expectations.
fn example_with_expectations(more: &str) -> TempDir {
    let dir = example_copy();
    let path = dir.path().join(config::EXPECTATIONS);
    let text = std::fs::read_to_string(&path).unwrap() + more;
    std::fs::write(path, text).unwrap();
    dir
}

fn line_of(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn check_example_expectations_all_pass() {
    let out = customs(&["check"], &example_dir());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let n = std::fs::read_to_string(example_dir().join(config::EXPECTATIONS)).unwrap().matches("[[expect]]").count();
    assert!(n > 0);
    assert!(text.ends_with(&format!("\n{n} expectations: {n} passed, 0 failed\n")), "{text}");
    assert!(!text.contains("FAIL"), "{text}");

    let verbose = stdout(&customs(&["check", "--verbose"], &example_dir()));
    assert_eq!(verbose.lines().filter(|l| l.starts_with("PASS ")).count(), n, "{verbose}");
}

/// The example ships expectations for every tenant, and for every version of every jurisdiction
/// (so both sides of a staged change), with allow and deny cases.
#[test]
fn check_example_expectations_cover_every_tenant_and_jurisdiction_version() {
    let c = load(&example_dir());
    let p = &c.policy;
    let today = Day::today();
    let report = expect::evaluate(p, &c.expectations, today);
    for (t, tenant) in p.tenants().iter().enumerate() {
        assert!(c.expectations.iter().any(|e| e.tenant as usize == t), "no expectation for tenant {}", tenant.id);
    }
    for (j, jurisdiction) in p.jurisdictions().iter().enumerate() {
        for period in jurisdiction.periods().iter().filter(|p| p.has_version()) {
            let covered = report.outcomes.iter().any(|o| {
                p.tenant(o.expectation.tenant).is_some_and(|t| t.jurisdiction as usize == j)
                    && period.window.contains(o.day)
            });
            assert!(covered, "no expectation for jurisdiction {} {}", jurisdiction.id, period.window);
        }
    }
    let allowed = report.outcomes.iter().filter(|o| o.expectation.expected == expect::Expected::Allow).count();
    assert!(allowed > 0 && allowed < report.outcomes.len());
}

#[test]
fn check_wrong_expectation_prints_readable_diff_and_exits_1() {
    let dir = example_with_expectations(
        r#"
[[expect]]
name = "a wrong expectation"
tenant = "demo-cn"
model = "gpt-4o"
purpose = "translation"
at = 2026-11-28
decision = "allow"

[[expect]]
tenant = "demo-de"
model = "gpt-4o-mini"
at = 2027-01-01
decision = "allow"
"#,
    );
    let out = customs(&["check"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let d = dir.path().display();
    let expectations = dir.path().join(config::EXPECTATIONS);
    let n = std::fs::read_to_string(&expectations).unwrap().matches("[[expect]]").count();
    let first = line_of(&expectations, "name = \"a wrong expectation\"") - 1;
    let second = first + 8;
    let jurisdictions = dir.path().join("jurisdictions.toml");
    let cn_line = line_of(&jurisdictions, "max_training_flops = 1e25");
    let de_line = line_of(&jurisdictions, "declaration_flops = 1e24");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(&format!("{d}: ok (policy ")), "{text}");
    assert_eq!(
        lines[1..],
        [
            format!(
                "FAIL {d}/expectations.toml:{first} [a wrong expectation] demo-cn gpt-4o (purpose translation, 2026-11-28): \
                 expected allow, got deny compute_threshold_exceeded (rule {d}/jurisdictions.toml:{cn_line}: \
                 jurisdictions[2] (d5-macau).max_training_flops: models trained with 1e25 FLOPs or more are denied)"
            ),
            format!(
                "FAIL {d}/expectations.toml:{second} demo-de gpt-4o-mini (2027-01-01): \
                 expected allow, got deny end_use_declaration_required (rule {d}/jurisdictions.toml:{de_line}: \
                 jurisdictions[4] (rest-of-world).declaration_flops: an end-use declaration is required for models \
                 trained with 1e24 FLOPs or more)"
            ),
            format!("{n} expectations: {} passed, 2 failed", n - 2),
        ],
        "{text}"
    );
}

#[test]
fn check_at_sets_the_day_of_undated_expectations() {
    let dir = example_with_expectations(
        r#"
[[expect]]
tenant = "demo-de"
model = "gpt-4o-mini"
decision = "allow"
"#,
    );
    let before = customs(&["check", "--at", "2026-12-31"], dir.path());
    assert_eq!(before.status.code(), Some(0), "{}", stdout(&before));
    let after = customs(&["check", "--at", "2027-01-01"], dir.path());
    let text = stdout(&after);
    assert_eq!(after.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            " demo-de gpt-4o-mini (2027-01-01): expected allow, got deny end_use_declaration_required (rule "
        ),
        "{text}"
    );
    assert!(text.trim_end().ends_with("passed, 1 failed"), "{text}");
}

#[test]
fn check_notes_days_no_jurisdiction_version_covers() {
    let dir = example_with_expectations("");
    let jurisdictions = dir.path().join("jurisdictions.toml");
    let text = std::fs::read_to_string(&jurisdictions).unwrap().replacen("until = 2026-12-31", "until = 2026-10-31", 1);
    std::fs::write(&jurisdictions, text).unwrap();
    std::fs::write(dir.path().join(config::EXPECTATIONS), "").unwrap();
    let out = customs(&["check"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "a gap is allowed: {text}");
    let line = line_of(&jurisdictions, "effective_from = 2027-01-01");
    let d = dir.path().display();
    assert_eq!(
        text.lines().nth(1),
        Some(
            format!(
                "note: {d}/jurisdictions.toml:{line}: jurisdictions[4] (rest-of-world).effective_from: no version of \
                 jurisdiction \"rest-of-world\" is in force from 2026-11-01 through 2026-12-31, so every model is denied \
                 (default deny)"
            )
            .as_str()
        ),
        "{text}"
    );
}

#[test]
fn check_lists_expectation_errors_with_the_config_errors() {
    let dir = example_with_expectations(
        r#"
[[expect]]
tenant = "demo-xx"
model = "gpt-4o"
decision = "deny"
reason = "compute_threshold_exceeded"
"#,
    );
    let out = customs(&["check"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = line_of(&dir.path().join(config::EXPECTATIONS), "tenant = \"demo-xx\"");
    let shipped =
        std::fs::read_to_string(example_dir().join(config::EXPECTATIONS)).unwrap().matches("[[expect]]").count();
    let d = dir.path().display();
    assert_eq!(
        text,
        format!(
            "{d}/expectations.toml:{line}:10: expect[{shipped}].tenant: unknown tenant \"demo-xx\"\n{d}: 1 error(s)\n"
        )
    );
}

#[test]
fn explain_at_answers_for_the_version_in_force_that_day() {
    let explain = |at: &str| {
        let out = customs(
            &["explain", "--json", "--tenant", "demo-de", "--model", "gpt-4o-mini", "--at", at],
            &example_dir(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = explain("2026-12-31");
    assert_eq!((before["decision"].as_str(), before["date"].as_str()), (Some("allow"), Some("2026-12-31")));
    assert_eq!(before["jurisdiction_version"]["key"], "jurisdictions[3] (rest-of-world)");
    assert_eq!(before["jurisdiction_version"]["detail"], "in force through 2026-12-31");

    let after = explain("2027-01-01");
    assert_eq!(after["reason"], "end_use_declaration_required");
    assert_eq!(after["jurisdiction_version"]["key"], "jurisdictions[4] (rest-of-world)");
    assert_eq!(after["jurisdiction_version"]["detail"], "in force from 2027-01-01");
    assert_eq!(after["rule"]["key"], "jurisdictions[4] (rest-of-world).declaration_flops");
    let line = line_of(&example_dir().join("jurisdictions.toml"), "declaration_flops = 1e24");
    assert_eq!(after["rule"]["line"].as_u64(), Some(line as u64));

    let text = Command::new(env!("CARGO_BIN_EXE_customs"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", "--config", "config", "--tenant", "demo-de", "--model", "gpt-4o-mini", "--at", "2027-01-01"])
        .output()
        .unwrap();
    let text = stdout(&text);
    let file = std::fs::read_to_string(example_dir().join("jurisdictions.toml")).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    let staged = lines.iter().position(|l| l.starts_with("effective_from = 2027-01-01")).unwrap();
    let version_line = lines[..staged].iter().rposition(|l| l.starts_with("id = ")).unwrap() + 1;
    assert!(
        text.contains(&format!(
            "  version:      config/jurisdictions.toml:{version_line}: jurisdictions[4] (rest-of-world)\n                in force from 2027-01-01\n"
        )),
        "{text}"
    );
}
