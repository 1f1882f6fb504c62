//! Config errors: every problem is reported at once, each naming file, line, column and key.

use std::process::Command;

use crate::support::{US_JURISDICTION as JURISDICTIONS, load_err, write_config};

const MODELS: &str = r#"[[models]]
id = "m"
aliases = ["m-latest"]
training_flops = 1e24
compute_basis = "assumed"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "us-east"
"#;
const GROUPS: &str = r#"[[groups]]
id = "G"
countries = ["CN", "MO"]
"#;
const TENANTS: &str = r#"[[tenants]]
id = "t"
legal_name = "T Inc."
country = "US"
jurisdiction = "us"
status = "active"
"#;

fn errors_for(models: &str, groups: &str, jurisdictions: &str, tenants: &str) -> String {
    let dir = write_config(&[
        ("models.toml", models),
        ("country-groups.toml", groups),
        ("jurisdictions.toml", jurisdictions),
        ("tenants.toml", tenants),
    ]);
    let prefix = format!("{}/", dir.path().display());
    load_err(dir.path()).replace(&prefix, "")
}

#[test]
fn config_base_fixture_is_valid() {
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", TENANTS),
    ]);
    crate::support::load(dir.path());
}

#[test]
fn config_cross_reference_errors_are_all_reported() {
    let tenants = r#"[[tenants]]
id = "t"
legal_name = "T Inc."
country = "CN"
jurisdiction = "us"
status = "active"
key_sha256 = ["abc"]

[[tenants]]
id = "t"
legal_name = "Other"
country = "US"
jurisdiction = "eu"
status = "active"
allow_models = ["gpt-*"]
"#;
    assert_eq!(
        errors_for(MODELS, GROUPS, JURISDICTIONS, tenants),
        [
            "tenants.toml:4:11: tenants[0] (t).country: country CN is not covered by any jurisdiction",
            "tenants.toml:7:15: tenants[0] (t).key_sha256[0]: must be 64 hex digits (the SHA-256 of the key; see `customs keygen`)",
            "tenants.toml:10:6: tenants[1] (t).id: tenant \"t\" is defined twice",
            "tenants.toml:13:16: tenants[1] (t).jurisdiction: unknown jurisdiction \"eu\"",
            "tenants.toml:15:17: tenants[1] (t).allow_models[0]: pattern \"gpt-*\" matches no model id",
        ]
        .join("\n")
    );
}

#[test]
fn config_jurisdiction_errors_name_the_key() {
    let jurisdictions = r#"[[jurisdictions]]
id = "us"
countries = ["US", "usa"]
max_training_flops = -1
allow_models = ["*"]
deny_models = ["claude-*"]
require_declaration = "at-or-above-flops"
allowed_residencies = ["us-*"]

[[jurisdictions]]
id = "restricted"
country_groups = ["G", "D:5"]
countries = ["US"]
"#;
    assert_eq!(
        errors_for(MODELS, GROUPS, jurisdictions, TENANTS),
        [
            "jurisdictions.toml:3:20: jurisdictions[0] (us).countries[1]: \"usa\" is not an ISO 3166-1 alpha-2 code",
            "jurisdictions.toml:6:16: jurisdictions[0] (us).deny_models[0]: pattern \"claude-*\" matches no model id or alias",
            "jurisdictions.toml:4:22: jurisdictions[0] (us).max_training_flops: must be a number > 0 (or inf)",
            "jurisdictions.toml:7:23: jurisdictions[0] (us).declaration_flops: is required when require_declaration = \"at-or-above-flops\"",
            "jurisdictions.toml:12:24: jurisdictions[1] (restricted).country_groups[1]: unknown country group \"D:5\"",
            "jurisdictions.toml:11:6: jurisdictions[1] (restricted).countries: country US is also covered by jurisdiction \"us\"; exclude it from one of them",
            "jurisdictions.toml:11:6: jurisdictions[1] (restricted).allow_models: is required unless embargoed = true; list the model id patterns this jurisdiction may use",
            "jurisdictions.toml:11:6: jurisdictions[1] (restricted).max_training_flops: is required unless embargoed = true; models trained with this many FLOPs or more are denied (use inf for no line)",
            "jurisdictions.toml:11:6: jurisdictions[1] (restricted).require_declaration: is required unless embargoed = true; one of \"always\", \"never\", \"at-or-above-flops\"",
            "jurisdictions.toml:11:6: jurisdictions[1] (restricted).allowed_residencies: is required unless embargoed = true; list the endpoint residency labels (patterns) that may serve this jurisdiction",
            "tenants.toml:5:16: tenants[0] (t).jurisdiction: country US belongs to jurisdiction \"restricted\", not \"us\"",
        ]
        .join("\n")
    );
}

#[test]
fn config_jurisdiction_version_errors_name_both_lines() {
    let jurisdictions = format!(
        r#"{JURISDICTIONS}until = 2026-12-31
[jurisdictions.limits]
requests_per_minute = 60

[[jurisdictions]]
id = "us"
effective_from = 2027-01-01
until = 2026-06-30
countries = ["US"]
embargoed = true
[jurisdictions.limits]
requests_per_minute = 60

[[jurisdictions]]
id = "us"
effective_from = 2026-07-01
countries = ["US", "CA"]
embargoed = true
[jurisdictions.limits]
requests_per_minute = 30

[[jurisdictions]]
id = "us"
effective_from = 2027-01-01T00:00:00Z
countries = ["US"]
embargoed = true
[jurisdictions.limits]
requests_per_minute = 60
"#
    );
    assert_eq!(
        errors_for(MODELS, GROUPS, &jurisdictions, TENANTS),
        [
            "jurisdictions.toml:15:9: jurisdictions[1] (us).until: 2026-06-30 is before effective_from 2027-01-01",
            "jurisdictions.toml:22:6: jurisdictions[2] (us).countries: covers other countries than its version at jurisdictions.toml:2 (only here: CA; only there: none); every version covers the same countries, since tenants are bound to the jurisdiction",
            "jurisdictions.toml:26:1: jurisdictions[2] (us).limits: differ from its version at jurisdictions.toml:2; limits are not dated, so every version sets the same",
            "jurisdictions.toml:31:18: jurisdictions[3] (us).effective_from: must be a date such as 2027-01-01 (no time of day)",
            "jurisdictions.toml:22:6: jurisdictions[2] (us): in force from 2026-07-01, which overlaps its version at jurisdictions.toml:2 (in force through 2026-12-31); versions of a jurisdiction need effective_from/until ranges that do not overlap",
        ]
        .join("\n")
    );
}

#[test]
fn config_tenant_date_errors_name_the_key() {
    let tenants = format!(
        r#"{TENANTS}[tenants.end_use]
id = "D1"
effective_from = 2027-01-01
expires = 2026-12-31
purposes = ["research"]
[tenants.suspension]
effective_from = 2027-03-01
until = 2027-02-28
reason = " "
"#
    );
    assert_eq!(
        errors_for(MODELS, GROUPS, JURISDICTIONS, &tenants),
        [
            "tenants.toml:10:11: tenants[0] (t).end_use.expires: 2026-12-31 is before effective_from 2027-01-01",
            "tenants.toml:14:9: tenants[0] (t).suspension.until: 2027-02-28 is before effective_from 2027-03-01",
            "tenants.toml:15:10: tenants[0] (t).suspension.reason: must say why the tenant is suspended",
        ]
        .join("\n")
    );
}

#[test]
fn config_expectation_errors_name_the_key() {
    let expectations = r#"[[expect]]
tenant = "nobody"
model = "m"
decision = "allow"

[[expect]]
tenant = "t"
model = "m"
decision = "deny"
reason = "compute_too_high"

[[expect]]
tenant = "t"
model = "m"
purpose = "Research"
at = 2026-02-03T10:00:00
decision = "deny"

[[expect]]
tenant = "t"
model = "m"
decision = "allow"
reason = "model_not_allowed"
"#;
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", TENANTS),
        ("expectations.toml", expectations),
    ]);
    let prefix = format!("{}/", dir.path().display());
    assert_eq!(
        load_err(dir.path()).replace(&prefix, ""),
        [
            "expectations.toml:2:10: expect[0].tenant: unknown tenant \"nobody\"",
            "expectations.toml:10:10: expect[1].reason: unknown reason code \"compute_too_high\"; one of tenant_suspended, denied_party, kyc_expired, jurisdiction_embargoed, model_not_found, model_not_allowed, compute_threshold_exceeded, end_use_declaration_required, end_use_declaration_expired, purpose_not_declared, no_resident_endpoint",
            "expectations.toml:15:11: expect[2].purpose: must be lowercase letters, digits and '-', as x-customs-purpose",
            "expectations.toml:16:6: expect[2].at: must be a date such as 2027-01-01 (no time of day)",
            "expectations.toml:17:12: expect[2].reason: is required when decision = \"deny\": name the reason code expected",
            "expectations.toml:23:10: expect[3].reason: only applies when decision = \"deny\"",
        ]
        .join("\n")
    );
}

#[test]
fn config_residency_patterns_must_match_an_endpoint_label() {
    // Labels are lowercase, so "US-EAST" can never match; a typo would refuse every request of
    // the jurisdiction with no_resident_endpoint.
    let jurisdictions = JURISDICTIONS.replace(
        r#"allowed_residencies = ["us-*"]"#,
        r#"allowed_residencies = ["us-*", "ap-south", "zz-*", "US-EAST"]"#,
    );
    assert_eq!(
        errors_for(MODELS, GROUPS, &jurisdictions, TENANTS),
        [
            "jurisdictions.toml:7:32: jurisdictions[0] (us).allowed_residencies[1]: pattern \"ap-south\" matches no endpoint residency label",
            "jurisdictions.toml:7:44: jurisdictions[0] (us).allowed_residencies[2]: pattern \"zz-*\" matches no endpoint residency label",
            "jurisdictions.toml:7:52: jurisdictions[0] (us).allowed_residencies[3]: pattern \"US-EAST\" matches no endpoint residency label",
        ]
        .join("\n")
    );
}

#[test]
fn config_an_alias_with_a_slash_is_refused_on_a_model_azure_clients_name_in_the_path() {
    // On an OpenAI-kind model a "/" alias is fine (sent as the body's model); with an Azure
    // endpoint its clients would have to put it in /openai/deployments/{name}/.
    let azure = MODELS.replace("aliases = [\"m-latest\"]", "aliases = [\"m-latest\", \"org/m\"]").replace(
        "residency = \"us-east\"",
        "residency = \"us-east\"\nkind = \"azure\"\ndeployment = \"m-prod\"\napi_version = \"2024-10-21\"",
    );
    assert_eq!(
        errors_for(&azure, GROUPS, JURISDICTIONS, TENANTS),
        "models.toml:3:24: models[0] (m).aliases[1]: \"org/m\" contains '/': this model has an Azure endpoint, and Azure clients name a model as a deployment in the URL path, where '/' cannot be"
    );
    let id = azure.replace("id = \"m\"", "id = \"org/m2\"").replace(", \"org/m\"", "");
    assert!(
        errors_for(&id, GROUPS, JURISDICTIONS, TENANTS)
            .starts_with("models.toml:2:6: models[0] (org/m2).id: \"org/m2\" contains '/'")
    );
    let openai = MODELS.replace("aliases = [\"m-latest\"]", "aliases = [\"m-latest\", \"org/m\"]");
    let dir = crate::support::write_config(&[
        ("models.toml", openai.as_str()),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", TENANTS),
    ]);
    crate::support::load(dir.path());
}

#[test]
fn config_operations_name_known_ones() {
    let models = MODELS
        .replace("compute_basis = \"assumed\"", "compute_basis = \"assumed\"\noperations = [\"chat\", \"images\"]");
    assert_eq!(
        errors_for(&models, GROUPS, JURISDICTIONS, TENANTS),
        "models.toml:6:23: models[0] (m).operations[1]: unknown operation \"images\"; one of chat, completions, embeddings, responses, messages"
    );
    let models = MODELS.replace("compute_basis = \"assumed\"", "compute_basis = \"assumed\"\noperations = []");
    assert_eq!(
        errors_for(&models, GROUPS, JURISDICTIONS, TENANTS),
        "models.toml:6:14: models[0] (m).operations: lists no operation; leave it out to serve all its endpoints serve"
    );
}

#[test]
fn config_model_errors_name_the_key() {
    let models = r#"[[models]]
id = "m"
aliases = ["m "]
training_flops = nan
compute_basis = "assumed"
[[models.endpoints]]
url = "http://user:pw@127.0.0.1:1/v1"
residency = "US East"
api_key_env = "NOT_SET_ANYWHERE"
stream_idle_timeout = "0s"

[[models]]
id = "n"
aliases = ["m"]
training_flops = 1e20
compute_basis = "assumed"
max_output_tokens = 0
"#;
    assert_eq!(
        errors_for(models, GROUPS, JURISDICTIONS, TENANTS),
        [
            "models.toml:3:12: models[0] (m).aliases[0]: \"m \" must be printable ASCII without spaces",
            "models.toml:4:18: models[0] (m).training_flops: must be a finite number >= 0",
            "models.toml:8:13: models[0] (m).endpoints[0].residency: must be lowercase letters, digits and '-', e.g. \"us-east\"",
            "models.toml:7:7: models[0] (m).endpoints[0].stream_idle_timeout: must be greater than zero",
            "models.toml:9:15: models[0] (m).endpoints[0].api_key_env: environment variable NOT_SET_ANYWHERE is not set",
            "models.toml:7:7: models[0] (m).endpoints[0].url: must not carry credentials or a query; name an environment variable in api_key_env",
            "models.toml:14:12: models[1] (n).aliases[0]: \"m\" is already a model id or alias",
            "models.toml:17:21: models[1] (n).max_output_tokens: must be at least 1",
            "models.toml:13:6: models[1] (n).endpoints: a model needs at least one endpoint",
        ]
        .join("\n")
    );
}

#[test]
fn config_syntax_and_unknown_keys_report_line_and_column() {
    let jurisdictions = JURISDICTIONS.replace("max_training_flops = inf", "max_training_flop = inf");
    let tenants = TENANTS.replace("status = \"active\"", "status = \"enabled\"");
    let models = MODELS.replace("training_flops = 1e24", "training_flops = ");
    let got = errors_for(&models, GROUPS, &jurisdictions, &tenants);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert!(lines[0].starts_with("models.toml:4:18: "), "{got}");
    assert!(lines[1].starts_with("jurisdictions.toml:4:1: unknown field `max_training_flop`"), "{got}");
    assert!(
        lines[2].starts_with("tenants.toml:6:10: unknown variant `enabled`, expected `active` or `suspended`"),
        "{got}"
    );
}

#[test]
fn config_missing_and_unexpected_files_are_errors() {
    let dir = write_config(&[("models.toml", MODELS), ("country-groups.toml", GROUPS), ("tenant.toml", TENANTS)]);
    let prefix = format!("{}/", dir.path().display());
    let got = load_err(dir.path()).replace(&prefix, "");
    let mut lines: Vec<&str> = got.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "jurisdictions.toml: cannot be read: No such file or directory (os error 2)",
            "tenant.toml: unexpected file; a config folder holds only gateway.toml, models.toml, country-groups.toml, jurisdictions.toml, tenants.toml, screening.toml, ownership.toml, expectations.toml",
            "tenants.toml: cannot be read: No such file or directory (os error 2)",
        ]
    );
}

#[test]
fn check_cli_exits_1_and_lists_every_error() {
    let tenants = TENANTS.replace("jurisdiction = \"us\"", "jurisdiction = \"nowhere\"").replace("US", "ZZ");
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", &JURISDICTIONS.replace("allowed_residencies = [\"us-*\"]", "")),
        ("tenants.toml", &tenants),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_customs")).args(["check", "--config"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("jurisdictions[0] (us).allowed_residencies: is required"), "{stdout}");
    assert!(stdout.contains("tenants[0] (t).jurisdiction: unknown jurisdiction \"nowhere\""), "{stdout}");
    assert!(stdout.trim_end().ends_with(": 2 error(s)"), "{stdout}");

    let ok = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["check", "--config"])
        .arg(crate::support::example_dir())
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

/// A tenants.toml large enough to be parsed in slices: `n` tenants with multi-byte names and a
/// sub-table each, and whatever `extra` says about tenant `bad`.
fn many_tenants(n: usize, bad: usize, extra: &str) -> String {
    let mut text = String::from("# A large tenants file.\n\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[tenants]]\nid = \"t{i:05}\"\nlegal_name = \"Zürich Société Nº{i} — a long legal name to make the file large, GmbH\"\ncountry = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\n"
        ));
        if i == bad {
            text.push_str(extra);
        }
        text.push_str("[tenants.limits]\nrequests_per_minute = 60\n\n");
    }
    assert!(text.len() > 256 * 1024, "{} bytes is below the slicing size", text.len());
    text
}

#[test]
fn config_a_large_tenants_file_loads_and_reports_errors_at_the_files_own_lines() {
    let ok = many_tenants(1800, usize::MAX, "");
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", &ok),
    ]);
    let config = crate::support::load(dir.path());
    let tenants = config.policy.tenants();
    assert_eq!(tenants.len(), 1800);
    assert_eq!(&*tenants.get(1234).unwrap().id, "t01234");
    assert!(tenants.get(1799).unwrap().legal_name.starts_with("Zürich Société Nº1799 —"));

    // A compile error (spans from a sliced parse), an unknown key and a syntax error, all in late
    // slices: the line and column are the file's own.
    let pattern = many_tenants(1800, 1500, "allow_models = [\"nope-*\"]\n");
    let line = pattern.lines().position(|l| l.starts_with("allow_models")).unwrap() + 1;
    let got = errors_for(MODELS, GROUPS, JURISDICTIONS, &pattern);
    assert!(got.starts_with(&format!("tenants.toml:{line}:17: tenants[1500] (t01500).allow_models[0]:")), "{got}");
    let bad = many_tenants(1800, 1600, "country_code = \"US\"\n");
    let line = bad.lines().position(|l| l == "country_code = \"US\"").unwrap() + 1;
    let got = errors_for(MODELS, GROUPS, JURISDICTIONS, &bad);
    assert!(got.starts_with(&format!("tenants.toml:{line}:1: unknown field `country_code`")), "{got}");
    let broken = many_tenants(1800, 1700, "status = \n");
    let line = broken.lines().position(|l| l == "status = ").unwrap() + 1;
    let got = errors_for(MODELS, GROUPS, JURISDICTIONS, &broken);
    assert!(got.starts_with(&format!("tenants.toml:{line}:10:")), "{got}");

    // Each slice is parsed on its own, so errors in two slices are both reported.
    let both = many_tenants(1800, 200, "status = \n").replacen(
        "id = \"t01700\"\n",
        "id = \"t01700\"\ncountry_code = \"US\"\n",
        1,
    );
    let line = both.lines().position(|l| l == "country_code = \"US\"").unwrap() + 1;
    let got = errors_for(MODELS, GROUPS, JURISDICTIONS, &both);
    assert!(got.contains(&format!("tenants.toml:{line}:1: unknown field `country_code`")), "{got}");
    assert_eq!(got.lines().filter(|l| l.contains("tenants.toml:")).count(), 2, "{got}");

    // A line starting with `[[tenants]]` inside a multi-line string is not a table: the file
    // still loads with the string whole. (Slices start at every 500th table; this fake start is
    // the 1,000th.)
    let odd = many_tenants(1800, usize::MAX, "").replacen(
        "id = \"t00999\"\n",
        "id = \"t00999\"\naliases = [\"\"\"\n[[tenants]]\nid = \"ghost\"\n\"\"\"]\n",
        1,
    );
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", JURISDICTIONS),
        ("tenants.toml", &odd),
    ]);
    let config = crate::support::load(dir.path());
    assert_eq!(config.policy.tenants().len(), 1800);
    assert!(config.policy.tenant_by_id("ghost").is_none());
    let t = config.policy.tenant_by_id("t00999").and_then(|t| config.policy.tenant(t)).unwrap();
    assert!(t.legal_name.starts_with("Zürich"), "{}", t.legal_name);
}

#[test]
fn config_gateway_limits_that_cannot_work_are_named() {
    let dir = crate::support::example_config_for("127.0.0.1:1".parse().unwrap());
    crate::support::edit_file(
        dir.path(),
        "gateway.toml",
        "max_buffered_body_bytes = 268435456",
        "max_buffered_body_bytes = 1024",
    );
    crate::support::edit_file(dir.path(), "gateway.toml", "max_connections = 64 ", "max_connections = 0 ");
    let err = crate::support::load_err(dir.path());
    assert!(
        err.contains("gateway.toml: server.max_buffered_body_bytes: must be at least server.max_body_bytes"),
        "{err}"
    );
    assert!(err.contains("gateway.toml: admin.max_connections: must be greater than zero"), "{err}");
}

#[test]
fn config_plain_http_upstreams_off_loopback_are_refused_unless_allowed() {
    let dir = crate::support::example_config_for("10.1.2.3:8081".parse().unwrap());
    let err = crate::support::load_err(dir.path());
    assert!(
        err.contains(
            "models[0] (gpt-4o).endpoints[0].url: is http:// off loopback, where the upstream key would travel in clear"
        ),
        "{err}"
    );
    let models = std::fs::read_to_string(dir.path().join("models.toml")).unwrap();
    let allowed = models.replace("residency = ", "allow_http = true\nresidency = ");
    std::fs::write(dir.path().join("models.toml"), allowed).unwrap();
    crate::support::load(dir.path());
}

#[test]
fn config_client_certificate_names_are_one_tenants_each() {
    let tenants = format!(
        "{TENANTS}client_certificate_names = [\"app.example\"]\n\n[[tenants]]\nid = \"u\"\nlegal_name = \"U Inc.\"\n\
         country = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\nclient_certificate_names = [\"app.example\"]\n\n\
         [[tenants]]\nid = \"v\"\nlegal_name = \"V Inc.\"\ncountry = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\n\
         require_key_and_certificate = true\n"
    );
    let err = errors_for(MODELS, GROUPS, JURISDICTIONS, &tenants);
    assert_eq!(
        err,
        "tenants.toml:15:29: tenants[1] (u).client_certificate_names[0]: this name is also listed for tenant \"t\"\n\
         tenants.toml:18:6: tenants[2] (v).require_key_and_certificate: needs client_certificate_names: no certificate could ever satisfy it"
    );
}
