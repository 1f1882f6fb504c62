//! `customs generate`: the folder it writes is a valid config that `customs check` passes, with
//! the tenants asked for (split over `tenants.d/` when asked), and the same bytes on a rerun.

use std::process::Command;

fn generate(out: &std::path::Path, files: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["generate", "--tenants", "3000", "--list-entries", "200", "--files", files, "--from"])
        .arg(crate::support::example_dir())
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn generated_folders_load_and_pass_their_expectations() {
    let dir = tempfile::TempDir::new().unwrap();
    let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
    generate(&whole, "0");
    generate(&split, "3");
    let parts: Vec<_> = std::fs::read_dir(split.join("tenants.d")).unwrap().collect();
    assert_eq!(parts.len(), 3);
    for folder in [&whole, &split] {
        let out = Command::new(env!("CARGO_BIN_EXE_customs")).args(["check", "--config"]).arg(folder).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(": 3013 tenants"), "{stdout}");
    }
    // The same tenants either way, so the same decisions; and a rerun writes the same bytes.
    let a = crate::support::load(&whole).policy;
    let b = crate::support::load(&split).policy;
    let ids = |p: &customs::policy::Policy| p.tenants().iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    let again = dir.path().join("again");
    generate(&again, "0");
    assert_eq!(std::fs::read(whole.join("tenants.toml")).unwrap(), std::fs::read(again.join("tenants.toml")).unwrap());
    // Generating into a folder that holds anything is refused.
    let refused = Command::new(env!("CARGO_BIN_EXE_customs")).args(["generate", "--out"]).arg(&whole).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
}
