//! `forewarn check` finds what CX authors get wrong before a customer sees it.

use std::path::Path;

use crate::helpers::{copy_dir, forewarn_cli, repo};

fn check(dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    forewarn_cli(dir, &["check"], env)
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
    // The shipped config keeps the placeholder opt-out number, and says so.
    assert!(
        out.starts_with("warning: render.korean_ad_opt_out is still the placeholder"),
        "{out}"
    );
    assert!(
        out.contains("\nok: config, 12 rules, 12 templates, risk models from rules/risk.toml;"),
        "{out}"
    );
    let (code, out) = check(
        &repo(),
        &[(
            "FOREWARN_RENDER__KOREAN_AD_OPT_OUT",
            "무료거부 080-123-4567",
        )],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn a_variable_an_example_event_does_not_carry_is_reported_with_the_rule_and_example() {
    let dir = workspace("Hi {{customer.name}}, your {{data.parcel_colour}} parcel is late.");
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    // The template file and the place of the variable first: that is what to fix. Then what
    // was being checked.
    assert!(
        out.contains("templates/t/sms.hbs:1:28: `data.parcel_colour` is missing from this event or customer; guard optional fields with {{#if data.parcel_colour}}…{{/if}}"),
        "{out}"
    );
    assert!(
        out.contains("(rule `delay` at rules/r.toml:1:1; sms, default; example examples/events/01-shoe-delay.jsonl:5) and 1 more like it"),
        "{out}"
    );
    // One mistake, one line, however many examples meet it.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("templates/")).count(),
        1,
        "{out}"
    );
    assert!(out.ends_with("1 problem(s) found\n"), "{out}");
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
    let (code, out) = forewarn_cli(
        &repo(),
        &[
            "preview",
            "--template",
            "delay-apology",
            "--locale",
            "ko-KR",
            "--offer",
            "15",
            "--event",
            event.to_str().unwrap(),
            "--html-out",
            html.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    for expected in [
        // Scored from the event alone, with the reasons.
        "risk (from this event alone, no history): delay 0.",
        "── SMS · ko-KR",
        // The customer the event names, from the examples: her name, Seoul time, the store.
        // With an offer it is advertising: labelled as Korean law requires, and measured so.
        "│ (광고)[슈즈샵] 김지수님, 죄송해요. 상품이 약속보다 늦은 11월 27일 (금) 오후 6시에 도착해요. \
         강남점에서 오늘 픽업도 돼요. 15% 할인 코드 SAMP-1E0F-FER0를 드려요.\n   │ 무료거부 080-000-0000",
        "UCS-2 · 124 units · 2 segment(s)",
        "── EMAIL · ko-KR",
        "Subject: [슈즈샵]",
        "── PUSH · ko-KR",
        "FCM payload",
    ] {
        assert!(out.contains(expected), "missing {expected} in:\n{out}");
    }
    let html = std::fs::read_to_string(html).unwrap();
    assert!(
        html.contains("15% 할인 코드 <strong>SAMP-1E0F-FER0</strong>"),
        "{html}"
    );
    assert!(html.contains("강남점"), "{html}");
}

#[test]
fn every_shipped_korean_sms_fits_in_two_segments() {
    // Two UCS-2 segments (134 characters) for every Korean SMS on every example, offer
    // included; English texts may take three when the example carries Korean names.
    let (code, out) = check(&repo(), &[("FOREWARN_RENDER__SMS_MAX_SEGMENTS", "2")]);
    let korean: Vec<&str> = out.lines().filter(|l| l.contains("/sms.ko.hbs")).collect();
    assert!(korean.is_empty(), "{}", korean.join("\n"));
    // The budget did apply: the English renders of Korean examples are over it.
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("/sms.hbs:1:1: the SMS takes 3 segments"),
        "{out}"
    );
}

#[test]
fn a_rule_expression_that_fails_on_an_example_is_reported_at_the_rule() {
    let dir = workspace("Hi {{customer.name}}");
    std::fs::write(
        dir.path().join("rules/r.toml"),
        "[[rule]]\nid = \"delay\"\non = [\"shipment.delayed\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\nwhen = \"data.days_late > 2\"\n[rule.offer]\ndiscount_percent = \"data.reason == 'weather' ? 20 : 120\"\n",
    )
    .unwrap();
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rules/r.toml:6:8: rule `delay`: `when` fails: `days_late` is missing here; guard what may be absent with has(…) (example examples/events/01-shoe-delay.jsonl:5)"),
        "{out}"
    );
    assert!(
        out.contains("rules/r.toml:8:20: rule `delay`: `discount_percent` gave 120; it must be a whole number from 0 to 100 (example examples/events/01-shoe-delay.jsonl:5)"),
        "{out}"
    );
}

/// The shipped rules, templates and examples, copied where a test may break them.
fn shipped_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["rules", "templates", "examples/events"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    dir
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from} not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_broken_copy_of_the_shipped_templates_fails_with_each_problem_where_it_is() {
    let dir = shipped_copy();
    // A typo in a variable on the second line of a Korean e-mail, and an unguarded optional
    // field in the English SMS.
    edit(
        &dir.path().join("templates/delay-apology/email.text.ko.hbs"),
        "{{data.carrier}}",
        "{{data.carier}}",
    );
    edit(
        &dir.path().join("templates/payment-retry/sms.hbs"),
        "{{#if data.retry_url}} Retry here: {{data.retry_url}}{{/if}}",
        " Retry here: {{data.retry_link}}",
    );
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("templates/delay-apology/email.text.ko.hbs:3:68: `data.carier` is missing"),
        "{out}"
    );
    assert!(
        out.contains("templates/payment-retry/sms.hbs:1:163: `data.retry_link` is missing"),
        "{out}"
    );
    // Every problem is reported, not only the first; each once.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("templates/")).count(),
        2,
        "{out}"
    );
    assert!(out.ends_with("2 problem(s) found\n"), "{out}");
}

#[test]
fn a_broken_copy_of_the_shipped_rules_is_refused_with_every_error_at_its_place() {
    let dir = shipped_copy();
    edit(
        &dir.path().join("rules/shipments.toml"),
        "when = \"has(customer.segment) && customer.segment == 'vip'\"",
        "when = \"has(customer.segment) && customer.segment = 'vip'\"",
    );
    edit(
        &dir.path().join("rules/orders.toml"),
        "template = \"payment-retry\"",
        "template = \"payment-retry-v2\"",
    );
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "rules/shipments.toml:8:51: invalid expression: `=` is not a comparison: write `==`"
        ),
        "{out}"
    );
    assert!(
        out.contains("rules/orders.toml:15:12: template `payment-retry-v2` does not exist"),
        "{out}"
    );
}

/// A set with one mistake of every kind: a template handlebars cannot read, a variable an
/// example does not carry, a condition with `=`, an unknown event type, and a schedule whose
/// cron is not one.
fn every_kind_of_mistake() -> tempfile::TempDir {
    let dir = shipped_copy();
    edit(
        &dir.path().join("templates/payment-retry/sms.hbs"),
        "{{#if data.retry_url}} Retry here: {{data.retry_url}}{{/if}}",
        "{{#if data.retry_url}} Retry here: {{data.retry_url}}",
    );
    edit(
        &dir.path().join("templates/delay-apology/email.text.ko.hbs"),
        "{{data.carrier}}",
        "{{data.carier}}",
    );
    edit(
        &dir.path().join("rules/shipments.toml"),
        "when = \"has(customer.segment) && customer.segment == 'vip'\"",
        "when = \"has(customer.segment) && customer.segment = 'vip'\"",
    );
    edit(
        &dir.path().join("rules/orders.toml"),
        "on = [\"order.payment_failed\"]",
        "on = [\"order.payment_failure\"]",
    );
    std::fs::write(
        dir.path().join("forewarn.toml"),
        "[schedules.overdue]\njob = \"shipment.overdue\"\ncron = \"every tuesday\"\n\
         grace = \"2h\"\nlookback = \"7d\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn one_run_of_check_reports_every_kind_of_mistake_once_at_its_place() {
    let dir = every_kind_of_mistake();
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    let expected = [
        "forewarn.toml:3:1: schedules.overdue.cron: `every tuesday` is not a cron expression",
        "templates/payment-retry/sms.hbs:1:",
        "rules/shipments.toml:8:51: invalid expression: `=` is not a comparison: write `==`",
        "rules/orders.toml:14:7: unknown event type `order.payment_failure`",
        "templates/delay-apology/email.text.ko.hbs:3:68: `data.carier` is missing",
    ];
    let problems: Vec<&str> = out.lines().filter(|l| !l.starts_with("error:")).collect();
    for start in expected {
        let found = problems.iter().filter(|l| l.starts_with(start)).count();
        assert_eq!(found, 1, "{start} should be reported once:\n{out}");
    }
    assert_eq!(problems.len(), expected.len(), "{out}");
    assert!(out.ends_with("error: 5 problem(s) found\n"), "{out}");
    // In words, where the block was opened: not the end of the file, not grammar token names.
    let block = problems
        .iter()
        .find(|l| l.starts_with(expected[1]))
        .unwrap();
    assert!(block.contains("`{{#if}}` opened at 1:"), "{block}");
    assert!(block.ends_with("is never closed"), "{block}");
}

#[test]
fn run_refuses_a_set_with_the_same_lines_check_prints() {
    let dir = every_kind_of_mistake();
    let (_, checked) = check(dir.path(), &[]);
    // The config's schedule is a config error for `run`, reported before rules: without it,
    // the rest must be refused line for line as `check` reports them.
    std::fs::remove_file(dir.path().join("forewarn.toml")).unwrap();
    let (code, out) = forewarn_cli(dir.path(), &["run"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("4 problem(s) found in rules or templates:"),
        "{out}"
    );
    for line in checked
        .lines()
        .filter(|l| l.starts_with("templates/") || l.starts_with("rules/"))
    {
        assert!(out.contains(line), "`run` did not say {line}:\n{out}");
    }
}

#[test]
fn a_mistake_in_the_risk_model_is_reported_at_its_line() {
    let dir = workspace("Hi {{customer.name}}, sorry.");
    let model = std::fs::read_to_string(repo().join("rules/risk.toml"))
        .unwrap()
        .replace("exception_scans = 0.9", "exception_count = 0.9");
    std::fs::write(dir.path().join("rules/risk.toml"), &model).unwrap();
    let line = model
        .lines()
        .position(|l| l.starts_with("exception_count"))
        .unwrap()
        + 1;
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "rules/risk.toml:{line}:1: unknown feature `exception_count` in [delay.weights]"
        )),
        "{out}"
    );
}

#[test]
fn check_warns_about_schedules_nobody_hears_and_rules_no_schedule_feeds() {
    // One rule, on shipment.delayed: the shipped schedules emit events no rule reads.
    let dir = workspace("Sorry {{customer.name}}, it is late.");
    let (code, out) = check(dir.path(), &[]);
    assert_eq!(code, 0, "{out}");
    for warning in [
        "warning: schedules.overdue emits shipment.overdue, but no rule reacts to it",
        "warning: schedules.stalled emits order.stalled, but no rule reacts to it",
        "warning: schedules.csat emits csat.due, but no rule reacts to it",
    ] {
        assert!(out.contains(warning), "{warning} in {out}");
    }
    assert!(
        out.contains("; 5 schedules (csat, overdue, release, retention, stalled)"),
        "{out}"
    );

    // A survey rule, with the CSAT schedule turned off: it would wait for a backend.
    let rules = dir.path().join("rules/r.toml");
    let mut text = std::fs::read_to_string(&rules).unwrap();
    text.push_str(
        "\n[[rule]]\nid = \"survey\"\non = [\"csat.due\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\n",
    );
    std::fs::write(&rules, text).unwrap();
    let (code, out) = check(
        dir.path(),
        &[("FOREWARN_SCHEDULES__CSAT__ENABLED", "false")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: rule survey reacts to csat.due, which no enabled schedule emits (a backend may publish it)"
        ),
        "{out}"
    );
    assert!(!out.contains("schedules.csat emits"), "{out}");
    assert!(out.contains("; 4 schedules ("), "{out}");
}
