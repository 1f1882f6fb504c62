//! The curl commands `customs demo` prints, run as printed (with the real curl) against the
//! example config: each answers what its comment says.

use crate::support::Example;

#[tokio::test]
async fn the_demos_curls_answer_what_their_comments_say() {
    let ex = Example::start().await;
    let text = customs::demo::instructions(ex.gw.addr, ex.gw.admin_addr);
    for (heading, expected) in [
        ("# 1. allowed", "\"object\":\"chat.completion\""),
        ("# 3. model_not_allowed", "\"type\":\"permission_error\""),
        ("# the OpenAI Responses API", "\"object\":\"response\""),
        ("# Anthropic's Messages API, streamed", "event: message_stop"),
    ] {
        let block = text.split("\n\n").find(|b| b.starts_with(heading)).unwrap_or_else(|| panic!("{heading}: {text}"));
        let command: Vec<&str> = block.lines().filter(|l| !l.starts_with('#')).collect();
        let command = command.join("\n");
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh").arg("-c").arg(&command).output().expect("sh and curl")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expected), "{heading}: {stdout}");
    }
    ex.stop().await;
}
