//! `forewarn demo` as a newcomer runs it, from the repository: the story reads in words, on
//! the examples' own clock whatever today's date and hour, and every number it prints is the
//! number of things it lists under it.

use std::path::Path;

use crate::helpers::forewarn_cli;

/// The number `text` has just before `words` (`"9 messages sent"` → 9 for `"messages sent"`).
fn number_before(text: &str, words: &str) -> usize {
    let at = text
        .find(words)
        .unwrap_or_else(|| panic!("no {words:?} in {text:?}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches(['(', ':']).parse().ok())
        .unwrap_or_else(|| panic!("no number before {words:?} in {text:?}"))
}

/// The line containing `heading`, and the lines under it: those indented deeper, up to the
/// next line that is not (blank lines between messages included).
fn paragraph<'a>(lines: &[&'a str], heading: &str) -> (&'a str, Vec<&'a str>) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = lines
        .iter()
        .position(|l| l.contains(heading))
        .unwrap_or_else(|| panic!("no {heading:?} in the demo"));
    let depth = indent(lines[start]);
    let body = lines[start + 1..]
        .iter()
        .take_while(|l| l.is_empty() || indent(l) > depth)
        .copied()
        .collect();
    (lines[start], body)
}

/// Message headers (`  ── SMS to …`) among `lines`.
fn messages<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.starts_with("  ── "))
        .copied()
        .collect()
}

#[test]
fn the_demo_tells_its_story_on_its_own_clock_and_counts_what_it_lists() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, text) = forewarn_cli(repo, &["demo"], &[("TZ", "America/Los_Angeles")]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();

    // The examples' hour, not today's: 11:00 in Seoul, 21:00 in New York.
    assert!(
        text.contains(
            "clock        2026-11-26 02:00 UTC: 11:00 in Asia/Seoul, 21:00 in America/New_York"
        ),
        "{text}"
    );

    // What forewarn did: each count, then exactly that many lines.
    let (stored, duplicates) = paragraph(&lines, "events stored;");
    assert_eq!(
        number_before(stored, "duplicate(s) ignored"),
        duplicates.len()
    );
    assert!(
        !duplicates.is_empty(),
        "the examples publish one event twice"
    );
    assert!(duplicates[0].ends_with("published 2 times, stored once"));
    let (refused, letters) = paragraph(&lines, "events refused");
    assert_eq!(number_before(refused, "events refused"), letters.len());
    let (cancelled, gone) = paragraph(&lines, "cancelled before sending");
    assert_eq!(
        number_before(cancelled, "cancelled before sending"),
        gone.len()
    );
    assert!(
        gone.iter()
            .any(|l| l.ends_with("cancelled: the parcel was delivered")),
        "{gone:?}"
    );

    let summary = lines
        .iter()
        .find(|l| l.contains("messages sent and"))
        .unwrap();
    let (_, first) = paragraph(&lines, "Messages (sandbox gateway)");
    let first = messages(&first);
    let held: Vec<&&str> = first
        .iter()
        .filter(|l| l.contains("held for quiet hours until"))
        .collect();
    assert_eq!(
        number_before(summary, "messages sent"),
        first.len() - held.len()
    );
    assert_eq!(number_before(summary, "held for"), held.len());
    // The Korean apology goes at 11:00 in Seoul; the New Yorker's offer waits for the morning,
    // and the demo says when it goes, in their time.
    let apology = first
        .iter()
        .find(|l| l.contains("customer c-1001 · rule shipment-delay-apology"))
        .expect("the Korean apology");
    assert!(!apology.contains("held"), "{apology}");
    assert_eq!(held.len(), 1, "{held:?}");
    // Back in stock: the socks 박민준 has on backorder and 이서연 asked about are back, and
    // both hear once; the jacket of a cancelled order reaches nobody.
    let back: Vec<&&str> = first
        .iter()
        .filter(|l| l.contains("rule back-in-stock"))
        .collect();
    assert_eq!(back.len(), 2, "{back:?}");
    assert!(
        text.contains("기다리시던 러닝 양말 3켤레가 다시 들어왔어요"),
        "{text}"
    );
    assert!(!text.contains("Wind jacket is back"), "{text}");
    assert!(
        held[0].contains("(08:00 in America/New_York)"),
        "{}",
        held[0]
    );

    // Days later, the held message goes, and the overdue schedule finds the silent parcels.
    let (moved, released) = paragraph(&lines, "The clock moves on to");
    assert_eq!(
        number_before(moved, "message(s) held for quiet hours went"),
        messages(&released).len()
    );
    assert_eq!(messages(&released).len(), 1, "{moved}");
    let (overdue, found) = paragraph(&lines, "the overdue schedule");
    assert!(overdue.contains("found 2 parcel(s)"), "{overdue}");
    assert_eq!(
        number_before(overdue, "message(s) sent") + number_before(overdue, "held for quiet hours:"),
        messages(&found).len()
    );

    // On-call: each step says how many customers it told, and lists them.
    for step in ["On-call: card payments fail", "It gets worse", "Fixed ("] {
        let (heading, told) = paragraph(&lines, step);
        assert_eq!(
            number_before(heading, "customer(s) told") + number_before(heading, "held for quiet"),
            messages(&told).len(),
            "{heading}"
        );
    }
    // The resolution reaches those who were told, with the credit where consent allows.
    let (_, resolved) = paragraph(&lines, "Fixed (");
    assert!(
        resolved.iter().any(|l| l.contains("10% 할인 코드")),
        "{resolved:?}"
    );
    assert!(
        resolved
            .iter()
            .any(|l| l.contains("no credit for customer c-1002: no_marketing_consent")),
        "{resolved:?}"
    );

    // What came back: the carrier's receipt, the STOP reply, and the next notice by e-mail.
    let (_, back) = paragraph(&lines, "What came back");
    let line = |start: &str| {
        back.iter()
            .find(|l| l.trim_start().starts_with(start))
            .copied()
            .unwrap_or_else(|| panic!("no {start:?} in {back:?}"))
    };
    assert!(
        line("receipt").ends_with("delivered (recorded)"),
        "{back:?}"
    );
    assert!(
        line("reply").contains("texts back 수신거부 (STOP): opted out of all SMS at"),
        "{back:?}"
    );
    // The messages listed after it, up to the outreach events line.
    let late_at = lines
        .iter()
        .position(|l| l.contains("Another parcel of hers runs late"))
        .expect("the late parcel");
    let late = lines[late_at];
    let after = messages(
        &lines[late_at + 1..]
            .iter()
            .take_while(|l| !l.contains("outreach events published"))
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(number_before(late, "message(s), by e-mail"), after.len());
    assert!(
        after.iter().all(|m| m.starts_with("  ── EMAIL to")),
        "{after:?}"
    );
    // The outreach events: the total is the sum of what it lists, with the receipt and the
    // STOP among them.
    let told = lines
        .iter()
        .find(|l| l.contains("outreach events published to forewarn.outreach"))
        .expect("the outreach events line");
    let listed: Vec<(&str, usize)> = told
        .rsplit(": ")
        .next()
        .unwrap()
        .split(", ")
        .map(|kv| {
            let (status, n) = kv.rsplit_once(' ').unwrap();
            (status, n.parse().unwrap())
        })
        .collect();
    assert_eq!(
        number_before(told, "outreach events published"),
        listed.iter().map(|(_, n)| n).sum::<usize>(),
        "{told}"
    );
    for status in ["queued", "sent", "delivered", "opted_out"] {
        assert!(listed.iter().any(|(s, _)| *s == status), "{told}");
    }

    // Words, never a Rust debug value; and no warning about the demo's own server going away.
    for debug in [
        "AlreadyDone",
        "Busy {",
        "Some(",
        "None",
        "Ran(",
        "Int(",
        "Gateways {",
    ] {
        assert!(!text.contains(debug), "`{debug}` in:\n{text}");
    }
    assert!(!text.contains("WARN"), "{text}");
}

#[test]
fn the_demos_history_simulated_with_its_own_rules_differs_in_nothing() {
    // The demo's story — incidents announced, escalated and resolved, a STOP reply, caps,
    // quiet hours — replayed by `forewarn simulate` with the rules that told it: every message
    // the same, to the same customer, on the same channel, with the same offer.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    let (code, text) = forewarn_cli(repo, &["demo", "--dir", folder], &[]);
    assert_eq!(code, 0, "{text}");
    let database = format!("sqlite://{folder}/forewarn.db");
    // The story keeps its own dates, whatever today's is.
    let args = [
        "simulate",
        "--rules",
        "rules",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
        "--json",
    ];
    let (code, out) = forewarn_cli(repo, &args, &[("FOREWARN_DATABASE__URL", &database)]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no report in:\n{out}"));
    let c = &report["comparison"];
    assert!(c["live_messages"].as_u64().unwrap() >= 20, "{report:#}");
    for kind in ["new", "dropped", "changed_channel", "changed_offer"] {
        assert_eq!(c[kind]["count"], 0, "{kind}: {report:#}");
    }
    assert_eq!(c["live_face_value"], c["draft_face_value"]);
    // The incident reached its customers in the replay too, and after her STOP the customer's
    // next delay notice went by e-mail there as well.
    assert!(report["fanouts"].as_u64().unwrap() >= 3, "{report:#}");
    let rules = &report["rules"];
    assert_eq!(rules["outage-started-notice"]["sms"]["messages"], 3);
    assert_eq!(rules["shipment-delay-apology"]["email"]["messages"], 1);
}
