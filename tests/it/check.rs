//! `forewarn check` finds what CX authors get wrong before a customer sees it.

use std::path::Path;
use std::process::Command;

use crate::helpers::repo;

fn check(dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .arg("check")
        .current_dir(dir)
        .env_remove("FOREWARN_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A folder with one rule on `shipment.delayed`, one template and the shipped example events.
fn workspace(sms: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("templates/t")).unwrap();
    std::fs::create_dir_all(dir.path().join("examples/events")).unwrap();
    std::fs::write(
        dir.path().join("rules/r.toml"),
        "[[rule]]\nid = \"delay\"\non = [\"shipment.delayed\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("templates/t/sms.hbs"), sms).unwrap();
    std::fs::copy(
        repo().join("examples/events/01-shoe-delay.jsonl"),
        dir.path().join("examples/events/01-shoe-delay.jsonl"),
    )
    .unwrap();
    dir
}

#[test]
fn the_shipped_rules_and_templates_pass_check() {
    let (code, out) = check(&repo(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok: config, 4 rules, 4 templates;"),
        "{out}"
    );
}

#[test]
fn a_variable_an_example_event_does_not_carry_is_reported_with_the_rule_and_example() {
    let dir = workspace("Hi {{customer.name}}, your {{data.parcel_colour}} parcel is late.");
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rules/r.toml:1:1: rule `delay`, template `t` sms (default), example examples/events/01-shoe-delay.jsonl:5"),
        "{out}"
    );
    assert!(out.contains("data.parcel_colour"), "{out}");
}

#[test]
fn an_sms_over_the_segment_budget_is_reported() {
    // 210 Hangul syllables: UCS-2, 67 per segment, so 4 segments against the default budget of 3.
    let dir = workspace(&"배송이늦어지고있어요".repeat(21));
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the SMS takes 4 segments (UCS-2, 210 units), over the budget of 3"),
        "{out}"
    );
    let (code, out) = check(dir.path(), &[("FOREWARN_RENDER__SMS_MAX_SEGMENTS", "4")]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn preview_shows_every_channel_and_locale_with_sms_size_and_push_payload() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(repo().join("examples/events/01-shoe-delay.jsonl")).unwrap();
    let event = dir.path().join("delay.json");
    std::fs::write(&event, example.lines().nth(4).unwrap()).unwrap();
    let html = dir.path().join("apology.html");
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args([
            "preview",
            "--template",
            "delay-apology",
            "--locale",
            "ko-KR",
            "--event",
        ])
        .arg(&event)
        .arg("--html-out")
        .arg(&html)
        .current_dir(repo())
        .env_remove("FOREWARN_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "── SMS · ko-KR",
        "UCS-2 ·",
        "── EMAIL · ko-KR",
        "Subject: [슈즈샵]",
        "── PUSH · ko-KR",
        "FCM payload",
    ] {
        assert!(out.contains(expected), "missing {expected} in:\n{out}");
    }
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<strong>SORRY10</strong>"), "{html}");
    assert!(html.contains("강남점"), "{html}");
}
