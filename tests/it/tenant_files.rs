//! Tenants split over `tenants.toml` and `tenants.d/*.toml`: one policy, every error placed in its
//! own file, ids and keys unique across files, and the policy version covering every file.

use std::fs;
use std::path::Path;

use crate::support::{US_JURISDICTION, load, load_err, test_env, write_config};

const MODELS: &str = r#"[[models]]
id = "m"
training_flops = 1e24
compute_basis = "assumed"
[[models.endpoints]]
url = "http://127.0.0.1:1/v1"
residency = "us-east"
"#;
const GROUPS: &str = "[[groups]]\nid = \"G\"\ncountries = [\"CN\"]\n";

fn tenant(id: &str, key: &str) -> String {
    let digest = hex::encode(customs::auth::digest(key.as_bytes()));
    format!(
        "[[tenants]]\nid = \"{id}\"\nlegal_name = \"{id} Inc.\"\ncountry = \"US\"\njurisdiction = \"us\"\nstatus = \"active\"\nkey_sha256 = [\"{digest}\"]\n\n"
    )
}

fn folder(main: Option<&str>, parts: &[(&str, &str)]) -> tempfile::TempDir {
    let mut files =
        vec![("models.toml", MODELS), ("country-groups.toml", GROUPS), ("jurisdictions.toml", US_JURISDICTION)];
    if let Some(m) = main {
        files.push(("tenants.toml", m));
    }
    let dir = write_config(&files);
    fs::create_dir(dir.path().join("tenants.d")).unwrap();
    for (name, text) in parts {
        fs::write(dir.path().join("tenants.d").join(name), text).unwrap();
    }
    dir
}

fn errors(dir: &Path) -> String {
    load_err(dir).replace(&format!("{}/", dir.display()), "")
}

#[test]
fn tenants_from_every_file_make_one_policy_in_file_order() {
    let b = tenant("b1", "sk-b1") + &tenant("b2", "sk-b2");
    let dir = folder(
        Some(&tenant("main", "sk-main")),
        &[("b.toml", &b), ("a.toml", &tenant("a1", "sk-a1")), ("notes.txt", "not toml")],
    );
    let policy = load(dir.path()).policy;
    let ids: Vec<&str> = policy.tenants().iter().map(|t| &*t.id).collect();
    assert_eq!(ids, ["main", "a1", "b1", "b2"]);
    let headers = |key: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        h
    };
    let found = customs::auth::authenticate(policy.keys(), &headers("sk-b2"), None).unwrap();
    assert_eq!(&*policy.tenant(found).unwrap().id, "b2");

    // The rule a tenant without a declaration is refused by names its own file and entry.
    let b2 = policy.tenant_by_id("b2").unwrap();
    let d = policy.decide(b2, "m", Some("research"), customs::policy::Day::today());
    let rule = policy.rule(d.rule.unwrap()).unwrap();
    assert!(rule.file.ends_with("tenants.d/b.toml"), "{}", rule.file);
    assert_eq!((&*rule.key, rule.line), ("tenants[1] (b2).end_use", 10));

    // tenants.toml may be left out when tenants.d holds them.
    let dir = folder(None, &[("a.toml", &tenant("a1", "sk-a1"))]);
    assert_eq!(load(dir.path()).policy.tenants().len(), 1);
}

#[test]
fn errors_name_the_tenant_file_they_are_in() {
    let bad = tenant("b1", "sk-b1") + &tenant("b2", "sk-b2").replace("\"us\"", "\"nowhere\"");
    let dir = folder(Some(&tenant("main", "sk-main")), &[("b.toml", &bad)]);
    let got = errors(dir.path());
    assert!(got.starts_with("tenants.d/b.toml:13:16: tenants[1] (b2).jurisdiction: unknown jurisdiction"), "{got}");

    let broken = tenant("b1", "sk-b1") + "[[tenants]]\nid = \n";
    let dir = folder(Some(&tenant("main", "sk-main")), &[("b.toml", &broken)]);
    assert!(errors(dir.path()).starts_with("tenants.d/b.toml:10:"), "{}", errors(dir.path()));

    // Ids and keys are unique across files.
    let dir = folder(Some(&tenant("a1", "sk-main")), &[("a.toml", &(tenant("x", "sk-x") + &tenant("a1", "sk-x")))]);
    let got = errors(dir.path());
    assert!(got.contains("tenants.d/a.toml:10:6: tenants[1] (a1).id: tenant \"a1\" is defined twice"), "{got}");
    assert!(got.contains("tenants[1] (a1).key_sha256[0]: this key digest is also listed for tenant \"x\""), "{got}");

    // Neither tenants.toml nor tenants.d: the required file is missing.
    let dir = write_config(&[
        ("models.toml", MODELS),
        ("country-groups.toml", GROUPS),
        ("jurisdictions.toml", US_JURISDICTION),
    ]);
    assert!(errors(dir.path()).starts_with("tenants.toml: cannot be read"), "{}", errors(dir.path()));
}

#[test]
fn the_policy_version_covers_every_tenant_file() {
    let dir = folder(Some(&tenant("main", "sk-main")), &[("a.toml", &tenant("a1", "sk-a1"))]);
    let before = load(dir.path()).policy.version().to_owned();
    fs::write(dir.path().join("tenants.d/a.toml"), tenant("a1", "sk-a1").replace("a1 Inc.", "A1 Inc.")).unwrap();
    let edited = load(dir.path()).policy.version().to_owned();
    assert_ne!(before, edited);
    // The same folder elsewhere is the same config.
    let copy = tempfile::TempDir::new().unwrap();
    fs::create_dir(copy.path().join("tenants.d")).unwrap();
    for name in ["models.toml", "country-groups.toml", "jurisdictions.toml", "tenants.toml", "tenants.d/a.toml"] {
        fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }
    assert_eq!(load(copy.path()).policy.version(), edited);
    // The same tenants under another file name are another config.
    fs::rename(dir.path().join("tenants.d/a.toml"), dir.path().join("tenants.d/z.toml")).unwrap();
    assert_ne!(load(dir.path()).policy.version(), edited);
}

/// A reload after one tenant file changed reads that file again and keeps the others' tenants:
/// the policy is the one a fresh load makes, and an error found against a file it did not read
/// is placed exactly as a fresh load places it.
#[test]
fn a_reload_after_one_file_changed_is_a_fresh_load() {
    let b = tenant("b1", "sk-b1") + &tenant("b2", "sk-b2");
    let dir = folder(Some(&tenant("main", "sk-main")), &[("a.toml", &tenant("a1", "sk-a1")), ("b.toml", &b)]);
    let reload =
        |previous: &customs::policy::Policy| customs::config::load_after(dir.path(), &*test_env(), Some(previous));
    let first = load(dir.path()).policy;
    fs::write(dir.path().join("tenants.d/a.toml"), tenant("a1", "sk-a1") + &tenant("a3", "sk-a3")).unwrap();
    let second = reload(&first).unwrap().policy;
    let fresh = load(dir.path()).policy;
    assert_ne!(second.version(), first.version());
    assert_eq!(second.version(), fresh.version());
    let ids = |p: &customs::policy::Policy| p.tenants().iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&second), ["main", "a1", "a3", "b1", "b2"]);
    for (key, id) in [("sk-a3", "a3"), ("sk-b2", "b2"), ("sk-main", "main")] {
        let t = customs::auth::key_tenant(second.keys(), key.as_bytes()).unwrap();
        assert_eq!(&*second.tenant(t).unwrap().id, id, "{key}");
        assert_eq!(second.tenant_by_id(id), Some(t), "{id}");
    }

    // `b2` is now in tenants.toml too: the clash is found at b.toml's `b2`, which was not read.
    fs::write(dir.path().join("tenants.toml"), tenant("main", "sk-main") + &tenant("b2", "sk-other")).unwrap();
    let Err(e) = reload(&second) else { panic!("a tenant defined twice loaded") };
    let err = e.to_string().replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(err, errors(dir.path()));
    assert!(err.contains("tenants.d/b.toml:10:6: tenants[1] (b2).id: tenant \"b2\" is defined twice"), "{err}");
}
