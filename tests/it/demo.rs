//! `forewarn demo` as a newcomer runs it, from the repository: the story reads in words,
//! whatever today's date is.

use std::path::Path;

use crate::helpers::forewarn_cli;

#[test]
fn the_demo_tells_its_whole_story_in_words_whatever_the_date() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, text) = forewarn_cli(repo, &["demo"], &[]);
    assert_eq!(code, 0, "{text}");
    // The examples are dated; the demo runs the overdue schedule as of a day after their last
    // promise, so it finds the silent parcels even after that date has long passed.
    let overdue = text
        .lines()
        .find(|l| l.contains("the overdue schedule"))
        .unwrap_or_else(|| panic!("no overdue step:\n{text}"));
    assert!(overdue.contains(") found "), "{overdue}");
    // No Rust debug value reaches a reader.
    for debug in ["AlreadyDone", "Busy {", "Some(", "Ran("] {
        assert!(!text.contains(debug), "`{debug}` in:\n{text}");
    }
    // The on-call part tells the customers it counts.
    assert!(text.contains("2 message(s) queued"), "{text}");
}
