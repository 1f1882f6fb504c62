//! Denied-party screening through the config: a listed name blocks its tenant with
//! `denied_party` unless cleared; `customs screen` shows what matched and why; list and clearance
//! mistakes are config errors with file and line.

use std::process::Command;

use crate::support::{example_copy, example_dir, load_err};

fn screen(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_customs")).arg("screen").args(args).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn screen_lists_blocked_and_cleared_tenants_with_scores_and_sources() {
    let dir = example_dir();
    let (ok, out) = screen(&["--config", dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("BLOCKED  demo-listed"), "{out}");
    assert!(out.contains("\"ZEPHYRA QUANTUM COMPUTE CO., LTD.\""), "{out}");
    assert!(out.contains("Entity List (EL) - Bureau of Industry and Security"), "{out}");
    assert!(out.contains("CLEARED  demo-nl"), "{out}");
    assert!(out.contains("cleared by j.doe@compliance.example on 2026-11-20"), "{out}");
    assert!(out.contains("1 blocked (denied_party), 1 cleared, 0 for review"), "{out}");
    // The listed owners of ownership.toml, by their entity ids; the cleared one beside them.
    assert!(out.contains("BLOCKED  entity:northwind-avionics 100"), "{out}");
    assert!(out.contains("CLEARED  entity:obsidian-lantern-nl 100"), "{out}");
    assert!(out.contains("entities of ownership.toml: 2 listed parties, 1 cleared, 0 for review, of 9"), "{out}");
    // Nobody else matches: "Example Shanghai Translation Co., Ltd." shares only a legal form.
    assert!(!out.contains("demo-cn"), "{out}");

    let (_, json) = screen(&["--config", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = v["findings"].as_array().unwrap().iter().find(|f| f["tenant"] == "demo-listed").unwrap();
    assert_eq!(listed["status"], "blocked");
    assert!(listed["score"].as_f64().unwrap() >= 85.0);
    assert_eq!(listed["list_line"], 2);
}

#[test]
fn explain_names_the_list_entry_that_blocks() {
    let out = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["explain", "--tenant", "demo-listed", "--model", "gpt-4o-mini", "--config"])
        .arg(example_dir())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("DENY denied_party (HTTP 403)"), "{text}");
    assert!(text.contains("screening-list.csv:2"), "{text}");
}

fn with_screening(screening_toml: &str, list: Option<&str>) -> String {
    let dir = example_copy();
    std::fs::write(dir.path().join("screening.toml"), screening_toml).unwrap();
    if let Some(list) = list {
        std::fs::write(dir.path().join("screening-list.csv"), list).unwrap();
    }
    load_err(dir.path())
}

#[test]
fn clearance_and_list_mistakes_are_config_errors() {
    let err = with_screening(
        "[[clearances]]\ntenant = \"demo-nobody\"\nentry = \"99999\"\nreviewer = \"x\"\ndate = 2026-01-01\nnote = \"n\"\n",
        None,
    );
    assert!(err.contains("screening.toml:2:10: clearances[0].tenant: unknown tenant \"demo-nobody\""), "{err}");

    let err = with_screening("[screening]\nthreshold = 120\n", None);
    assert!(err.contains("screening.toml:2:13: screening.threshold: must be between 0 and 100"), "{err}");

    let header = std::fs::read_to_string(example_dir().join("screening-list.csv")).unwrap();
    let header = header.lines().next().unwrap();
    let err = with_screening("", Some(&format!("{header}\n\"1\",\"src\"\n")));
    assert!(err.contains("screening-list.csv:2:"), "{err}");
}
