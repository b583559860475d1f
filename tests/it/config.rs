//! Bad configuration, rules or templates stop forewarn at start, saying where.

use std::process::Command;

use crate::helpers::repo;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(args)
        .current_dir(dir)
        .env_remove("FOREWARN_CONFIG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `forewarn run` with `rule` as the only rule file, and the repository's templates.
fn run_with_rule(file: &str, rule: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join(file), rule).unwrap();
    std::fs::write(
        dir.path().join("forewarn.toml"),
        format!(
            "[paths]\nrules = \"{}\"\ntemplates = \"{}/templates\"\n",
            rules.display(),
            repo().display()
        ),
    )
    .unwrap();
    run(&["run"], dir.path())
}

#[test]
fn an_unknown_config_key_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("forewarn.toml"),
        "[nats]\nulr = \"nats://x:4222\"\n",
    )
    .unwrap();
    let (code, stderr) = run(&["run"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ulr"), "{stderr}");
}

#[test]
fn an_environment_override_with_a_bad_value_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("FOREWARN_CONFIG")
        .env("FOREWARN_OUTBOX__BATCH_SIZE", "lots")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("outbox.batch_size"), "{stderr}");
    assert!(stderr.contains("FOREWARN_OUTBOX__BATCH_SIZE"), "{stderr}");
}

#[test]
fn a_bad_rule_stops_forewarn_at_start_with_file_and_line() {
    let (code, stderr) = run_with_rule(
        "broken.toml",
        "[[rule]]\nid = \"x\"\non = [\"shipment.teleported\"]\ntemplate = \"delay-apology\"\nchannels = [\"sms\"]\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("broken.toml:3:7: unknown event type `shipment.teleported`"),
        "{stderr}"
    );
}

#[test]
fn migrate_creates_the_database_with_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(&["migrate"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.path().join("forewarn.db").exists());
}

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["migrate", "--help"],
        vec!["demo", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
            .args(&command)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.len() > 200, "{command:?} says too little:\n{text}");
    }
}

#[test]
fn a_cel_syntax_error_in_a_rule_stops_forewarn_with_its_position() {
    let (code, stderr) = run_with_rule(
        "vip.toml",
        "[[rule]]\nid = \"vip\"\non = [\"shipment.delayed\"]\ntemplate = \"delay-apology\"\nchannels = [\"sms\"]\nwhen = \"customer.segment == 'vip' &&\"\n",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("vip.toml:6:38: invalid CEL expression"),
        "{stderr}"
    );
}
