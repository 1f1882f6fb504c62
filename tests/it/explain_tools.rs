//! `customs explain --key` and `--batch`, run as the real binary on the example config: a key
//! finds its tenant as the server would and is never printed; a batch answers every line, in order.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{EXAMPLE_DAY, example_dir};

/// `customs explain --config config --at EXAMPLE_DAY ARGS`, with `stdin` as its standard input.
fn explain(args: &[&str], stdin: &str) -> Output {
    explain_at(EXAMPLE_DAY, args, stdin)
}

fn explain_at(day: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_customs"))
        .args(["explain", "--at", day, "--config"])
        .arg(example_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that exits before reading its input closes the pipe; that is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Fails if `key` shows anywhere in what the command printed.
fn assert_key_not_printed(out: &Output, key: &str) {
    let (stdout, stderr) = text(out);
    assert!(!stdout.contains(key), "stdout shows the key:\n{stdout}");
    assert!(!stderr.contains(key), "stderr shows the key:\n{stderr}");
}

fn succeeded(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    stdout
}

#[test]
fn explain_key_finds_its_tenant_and_is_never_printed() {
    for format in [&[][..], &["--json"][..]] {
        let by_key = explain(&[&["--key", "sk-demo-cn", "--model", "gpt-4o"], format].concat(), "");
        let by_tenant = explain(&[&["--tenant", "demo-cn", "--model", "gpt-4o"], format].concat(), "");
        assert_key_not_printed(&by_key, "sk-demo-cn");
        assert_eq!(succeeded(&by_key), succeeded(&by_tenant), "{format:?}");
    }
    let out = explain(&["--key", "sk-demo-cn", "--model", "gpt-4o", "--json"], "");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&e["tenant"], &e["decision"], &e["reason"]),
        (&"demo-cn".into(), &"deny".into(), &"compute_threshold_exceeded".into())
    );
}

#[test]
fn explain_key_dash_reads_the_key_from_stdin() {
    for stdin in ["sk-demo-us\n", "sk-demo-us\r\n", "sk-demo-us"] {
        let out = explain(&["--key", "-", "--model", "gpt-4o", "--json"], stdin);
        assert_key_not_printed(&out, "sk-demo-us");
        let e: Value = serde_json::from_str(&succeeded(&out)).unwrap();
        assert_eq!(
            (&e["tenant"], &e["decision"], &e["status"]),
            (&"demo-us".into(), &"allow".into(), &200.into()),
            "{stdin:?}"
        );
    }
    // Another tenant's key on stdin gets that tenant's answer, not a default.
    let out = explain(&["--key", "-", "--model", "gpt-4o", "--json"], "sk-demo-suspended\n");
    let e: Value = serde_json::from_str(&succeeded(&out)).unwrap();
    assert_eq!((&e["tenant"], &e["reason"]), (&"demo-suspended".into(), &"tenant_suspended".into()));
}

#[test]
fn explain_unknown_key_exits_non_zero_without_printing_it() {
    let key = "sk-demo-nobody-7c1e";
    for (args, stdin) in [(&["--key", key][..], ""), (&["--key", "-"][..], "sk-demo-nobody-7c1e\n")] {
        let out = explain(&[args, &["--model", "gpt-4o"]].concat(), stdin);
        assert_key_not_printed(&out, key);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stdout, "");
        assert_eq!(stderr, "error: no tenant has this key\n", "{args:?}");
    }
    // A key the server would refuse as malformed, and nothing at all on stdin.
    let out = explain(&["--key", "-", "--model", "gpt-4o"], "sk-demo-us \n");
    assert_key_not_printed(&out, "sk-demo-us");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.starts_with("error: the key is malformed"), "{}", text(&out).1);
    let out = explain(&["--key", "-", "--model", "gpt-4o"], "");
    assert_eq!((out.status.code(), text(&out).1.as_str()), (Some(1), "error: no key on standard input\n"));
}

#[test]
fn explain_takes_exactly_one_of_tenant_and_key() {
    let both = explain(&["--tenant", "demo-us", "--key", "sk-demo-cn", "--model", "gpt-4o"], "");
    assert_key_not_printed(&both, "sk-demo-cn");
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both).1.contains("cannot be used with"), "{}", text(&both).1);
    let neither = explain(&["--model", "gpt-4o"], "");
    assert_eq!(neither.status.code(), Some(2));
    assert!(text(&neither).1.contains("<--tenant <TENANT>|--key <KEY>|--batch>"), "{}", text(&neither).1);
    let key_in_batch = explain(&["--batch", "--key", "sk-demo-cn"], "");
    assert_key_not_printed(&key_in_batch, "sk-demo-cn");
    assert_eq!(key_in_batch.status.code(), Some(2));
}

#[test]
fn explain_batch_answers_every_line_in_order() {
    let questions = [
        r#"{"tenant":"demo-de","model":"llama-3.1-8b-instruct"}"#,
        // The staged change: rest-of-world needs a declaration from 1e24 FLOPs on 2027-01-01.
        r#"{"tenant":"demo-de","model":"llama-3.1-8b-instruct","at":"2027-01-01"}"#,
        r#"{"tenant":"demo-de","model":"#,
        r#"{"tenant":"demo-nobody","model":"gpt-4o"}"#,
        "",
        r#"{"key":"sk-demo-cn","model":"gpt-4o"}"#,
        r#"{"key":"sk-demo-nobody","model":"gpt-4o"}"#,
        r#"{"tenant":"demo-cn","model":"qwen2.5-72b-instruct","purpose":"translation"}"#,
        r#"{"tenant":"demo-cn","model":"qwen2.5-72b-instruct","purpose":"legal"}"#,
        r#"{"tenant":"demo-us","model":"gpt-4o","at":"2026-02-30"}"#,
        r#"{"tenant":"demo-us"}"#,
        r#"{"key":"sk-demo-us","tenant":"demo-us","model":"gpt-4o"}"#,
    ];
    let out = explain(&["--batch"], &(questions.join("\n") + "\n"));
    assert_key_not_printed(&out, "sk-demo");
    let stdout = succeeded(&out);
    let answers: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<String> = answers
        .iter()
        .map(|a| match &a["error"] {
            Value::String(e) => format!("error: {e}"),
            _ => format!("{} {} {} {}", a["tenant"], a["date"], a["decision"], a["reason"]),
        })
        .collect();
    let want = [
        r#""demo-de" "2026-11-28" "allow" null"#,
        r#""demo-de" "2027-01-01" "deny" "end_use_declaration_required""#,
        "error: not a question: EOF while parsing a value at line 1 column 28",
        r#"error: unknown tenant "demo-nobody""#,
        r#""demo-cn" "2026-11-28" "deny" "compute_threshold_exceeded""#,
        "error: no tenant has this key",
        r#""demo-cn" "2026-11-28" "allow" null"#,
        r#""demo-cn" "2026-11-28" "deny" "purpose_not_declared""#,
        r#"error: "2026-02-30" is not a date (YYYY-MM-DD)"#,
        "error: not a question: missing field `model` at line 1 column 20",
        r#"error: the question names both a "tenant" and a "key"; give one"#,
    ];
    assert_eq!(got, want, "one answer per non-empty line, in order:\n{stdout}");
    assert_eq!(text(&out).1, "11 question(s) answered, 6 of them with an error\n");

    // Each answer is the very object `--json` prints for the same question.
    let single =
        |day, args: &[&str]| -> Value { serde_json::from_str(&succeeded(&explain_at(day, args, ""))).unwrap() };
    let llama = ["--tenant", "demo-de", "--model", "llama-3.1-8b-instruct", "--json"];
    assert_eq!(answers[0], single(EXAMPLE_DAY, &llama));
    assert_eq!(answers[1], single("2027-01-01", &llama));
    assert_eq!(answers[4], single(EXAMPLE_DAY, &["--tenant", "demo-cn", "--model", "gpt-4o", "--json"]));
}

#[test]
fn explain_batch_exits_zero_when_every_line_is_an_error() {
    let out = explain(&["--batch"], "nonsense\n\n\n[]\n");
    let stdout = succeeded(&out);
    let errors: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(errors.len(), 2, "{stdout}");
    assert!(errors.iter().all(|e| e["error"].is_string() && e.as_object().unwrap().len() == 1), "{stdout}");
    let nothing = explain(&["--batch"], "");
    assert_eq!(succeeded(&nothing), "");
}
