//! The CLI as a tool among tools: a closed pipe ends a command quietly, stdout carries only
//! what a script captures, and no library's chatter or Rust debug value reaches a person.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::repo;

/// Runs forewarn in `dir` with stdout a pipe nobody reads (`| head` that has already quit);
/// returns its exit code and stderr.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(args)
        .current_dir(dir)
        .env_remove("FOREWARN_CONFIG")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_reader_that_stops_reading_ends_each_command_quietly() {
    let empty = tempfile::tempdir().unwrap();
    for (dir, args) in [
        (repo(), vec!["check"]),
        (
            repo(),
            vec![
                "preview",
                "--template",
                "delay-apology",
                "--event",
                "examples/events/01-shoe-delay.jsonl",
            ],
        ),
        (
            empty.path().to_path_buf(),
            vec!["explain", "--customer", "c-1"],
        ),
    ] {
        let (code, stderr) = with_closed_stdout(&dir, &args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_flag_with_a_bad_duration_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(["explain", "--customer", "c-1", "--since", "abc"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--since"), "{stderr}");
    assert!(
        stderr.contains("`abc` is not a duration; write a number and a unit"),
        "{stderr}"
    );
    assert!(!stderr.contains("expected number at 0"), "{stderr}");
}

#[test]
fn a_file_that_cannot_be_read_is_named_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    for (args, flag) in [
        (
            vec!["preview", "--template", "delay-apology", "--event", missing],
            "--event: cannot read",
        ),
        (vec!["risk", "fit", "--input", missing], "--input: "),
        (
            vec!["--config", missing, "check"],
            "(--config or FOREWARN_CONFIG)",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_forewarn"))
            .args(&args)
            .current_dir(repo())
            .env_remove("FOREWARN_CONFIG")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(flag), "{args:?}: {said}");
        assert!(said.contains("missing.json"), "{args:?}: {said}");
    }
}
