//! Bad configuration, rules or templates stop forewarn at start, saying where.

use crate::helpers::{forewarn_cli, repo};

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    forewarn_cli(dir, args, &[])
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
    let (code, stderr) = forewarn_cli(
        dir.path(),
        &["migrate"],
        &[("FOREWARN_OUTBOX__BATCH_SIZE", "lots")],
    );
    assert_eq!(code, 1, "{stderr}");
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
        vec!["risk", "--help"],
        vec!["explain", "--help"],
        vec!["risk", "fit", "--help"],
        vec!["risk", "export", "--help"],
    ] {
        let (code, text) = forewarn_cli(dir.path(), &command, &[]);
        assert_eq!(code, 0, "{text}");
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
        stderr.contains(
            "vip.toml:6:37: invalid expression: the expression ends before it is complete"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_quiet_window_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = forewarn_cli(
        dir.path(),
        &["migrate"],
        &[(
            "FOREWARN_QUIET_HOURS__DEFAULT__TRANSACTIONAL_SMS",
            "10pm-7am",
        )],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("quiet_hours.default.transactional_sms: `10pm-7am` is not a quiet window; write it as HH:MM-HH:MM"),
        "{out}"
    );
}
