//! `forewarn simulate`: a draft rule set replayed over the history forewarn stored.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// Customers in the history, each with an order and a delayed parcel.
const CUSTOMERS: usize = 6;

fn total(i: usize) -> i64 {
    100_000 + 1_357 * i as i64
}

/// Each customer, their order and its delay, published and sent; then forewarn is stopped, so
/// nothing but the simulation could touch the database.
async fn history() -> App {
    let mut app = history_running().await;
    app.terminate().await;
    app
}

/// Each customer, their order and its delay, published and sent, forewarn still running.
async fn history_running() -> App {
    let app = spawn_app_with(Options {
        own_authoring: true,
        ..Options::default()
    })
    .await;
    for i in 0..CUSTOMERS {
        app.publish(
            &json!({"specversion": "1.0", "id": format!("cust-{i}"), "source": "test/crm",
            "type": "customer.upserted", "time": "2026-11-20T01:00:00Z",
            "data": {"id": format!("c-{i}"), "name": "김지수", "locale": "ko-KR",
                     "timezone": "Asia/Seoul", "phone": format!("+8210{:08}", i),
                     "email": format!("c{i}@example.com"), "channels": ["sms", "email"],
                     "consent": {"sms": true, "email": true, "marketing": true},
                     "region": "kr-seoul"}}),
        )
        .await;
        app.publish(&json!({"specversion": "1.0", "id": format!("order-{i}"),
            "source": "test/checkout", "type": "order.placed", "time": "2026-11-22T03:10:00Z",
            "data": {"order_id": format!("ord-{i}"), "customer_id": format!("c-{i}"),
                     "items": [{"sku": "SHOE-270", "name": "러닝화 270", "quantity": 1,
                                "unit_price": {"minor": total(i), "currency": "KRW"}}],
                     "total": {"minor": total(i), "currency": "KRW"},
                     "promised_by": "2026-11-25T09:00:00Z"}}))
            .await;
        app.publish(&delayed_event(i)).await;
    }
    app.wait_intake_idle().await;
    app.wait_sent(CUSTOMERS as u64).await;
    app
}

/// A copy of the app's rules in `name/`, with `edit` applied to `shipments.toml`.
fn draft(app: &App, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    draft_of(app, name, "shipments.toml", edit)
}

/// A copy of the app's rules in `name/`, with `edit` applied to `file`.
fn draft_of(app: &App, name: &str, file: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = app.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(app.dir.path().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let edited = dir.join(file);
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, edit(text)).unwrap();
    dir
}

/// `forewarn simulate --json` with the rules in `rules`: over the last hour, unless `extra`
/// names a file of events.
fn simulate(app: &App, rules: &Path, extra: &[&str]) -> (i32, Value, String) {
    let config = app.config_path();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "simulate",
        "--rules",
        rules.to_str().unwrap(),
        "--json",
    ];
    if !extra.contains(&"--events") {
        args.extend(["--since", "1h"]);
    }
    args.extend_from_slice(extra);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(&args)
        .current_dir(repo())
        .env_remove("FOREWARN_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report, stderr)
}

/// Every file's digest in `dir` whose name starts with `prefix` — but SQLite's `-shm`, the
/// shared-memory index any reader rewrites, which holds no data.
fn digests(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .filter(|p| !p.to_string_lossy().ends_with("-shm"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.display().to_string(), Sha256::digest(bytes).to_vec())
        })
        .collect();
    files.sort();
    files
}

/// The database, byte for byte: SQLite's files, or PostgreSQL's `pg_dump` of it.
fn database_contents(app: &App) -> Vec<(String, Vec<u8>)> {
    match crate::BACKEND {
        Backend::Sqlite => digests(app.dir.path(), "forewarn.db"),
        Backend::Postgres => {
            let dump = std::process::Command::new("pg_dump")
                .args(["--data-only", "--no-owner", &app.database_url])
                .output()
                .expect("pg_dump (PostgreSQL's client tools)");
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            // Every row, without the random key pg_dump guards its output with.
            let rows: String = String::from_utf8_lossy(&dump.stdout)
                .lines()
                .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert!(rows.contains("COPY public.outbox"), "{rows}");
            vec![("pg_dump".into(), Sha256::digest(rows.as_bytes()).to_vec())]
        }
    }
}

#[tokio::test]
async fn the_live_rules_simulated_differ_in_nothing_and_the_database_and_gateways_are_untouched() {
    let app = history().await;
    let database = database_contents(&app);
    let sandbox = digests(&app.outbox_dir(), "");
    assert!(!database.is_empty() && !sandbox.is_empty());

    let (code, report, stderr) = simulate(&app, &app.dir.path().join("rules"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["events"], 3 * CUSTOMERS, "{report:#}");
    let c = &report["comparison"];
    assert_eq!(c["live_messages"], CUSTOMERS, "{report:#}");
    for kind in ["new", "dropped", "changed_channel", "changed_offer"] {
        assert_eq!(c[kind]["count"], 0, "{kind}: {report:#}");
    }
    let sms = &report["rules"]["shipment-delay-apology"]["sms"];
    assert_eq!(sms["messages"], CUSTOMERS);
    assert_eq!(sms["customers"], CUSTOMERS);
    assert_eq!(sms["codes"], CUSTOMERS);
    assert_eq!(c["live_face_value"], c["draft_face_value"]);

    assert_eq!(database_contents(&app), database);
    assert_eq!(digests(&app.outbox_dir(), ""), sandbox);
}

#[tokio::test]
async fn a_draft_that_adds_a_rule_shows_only_its_new_messages() {
    let app = history().await;
    // A thank-you for every order placed: no live rule reacts to `order.placed`.
    let rules = draft(&app, "draft-rules", |text| {
        format!(
            "{text}\n[[rule]]\nid = \"order-thanks\"\non = [\"order.placed\"]\n\
             template = \"order-thanks\"\nchannels = [\"email\"]\n\
             category = \"transactional\"\npriority = 10\nonce_per = \"data.order_id\"\n"
        )
    });
    let templates = app.dir.path().join("draft-templates");
    copy_dir(&app.dir.path().join("templates"), &templates);
    std::fs::create_dir_all(templates.join("order-thanks")).unwrap();
    std::fs::write(
        templates.join("order-thanks/email.subject.hbs"),
        "Thank you for order {{data.order_id}}",
    )
    .unwrap();
    std::fs::write(
        templates.join("order-thanks/email.text.hbs"),
        "{{customer.name}}, your order {{data.order_id}} is on its way to being packed.",
    )
    .unwrap();
    let (code, report, stderr) =
        simulate(&app, &rules, &["--templates", templates.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let c = &report["comparison"];
    assert_eq!(c["new"]["count"], CUSTOMERS, "{report:#}");
    for kind in ["dropped", "changed_channel", "changed_offer"] {
        assert_eq!(c[kind]["count"], 0, "{kind}: {report:#}");
    }
    let samples = c["new"]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    for sample in samples {
        let message = &sample["message"];
        assert_eq!(message["rule_id"], "order-thanks");
        assert_eq!(message["channel"], "email");
        let order = message["event"]
            .as_str()
            .unwrap()
            .replace("test/checkout#order-", "ord-");
        assert!(
            message["text"].as_str().unwrap().contains(&order),
            "{message}"
        );
    }
    let email = &report["rules"]["order-thanks"]["email"];
    assert_eq!(email["messages"], CUSTOMERS);
    assert_eq!(email["customers"], CUSTOMERS);
}

#[tokio::test]
async fn a_draft_that_raises_the_discount_shows_the_face_value_difference_exactly() {
    let app = history().await;
    let rules = draft(&app, "draft-rules", |text| {
        let start = text.find("discount_percent = \"\"\"").unwrap();
        let end = start + text[start..].find("\"\"\"\n").unwrap() + 4;
        let end = end + text[end..].find("\"\"\"").unwrap() + 4;
        format!(
            "{}discount_percent = \"25\"\n{}",
            &text[..start],
            &text[end..]
        )
    });
    let (code, report, stderr) = simulate(&app, &rules, &[]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    let c = &report["comparison"];
    assert_eq!(c["changed_offer"]["count"], CUSTOMERS, "{report:#}");
    assert_eq!(c["new"]["count"], 0);
    // What the live codes were worth and what 25 % is worth, from the codes forewarn issued.
    let codes = app.db.codes().await;
    assert_eq!(codes.len(), CUSTOMERS);
    let index = |customer: &str| customer.trim_start_matches("c-").parse::<usize>().unwrap();
    let live: i64 = codes
        .iter()
        .map(|code| total(index(&code.customer_id)) * code.percent / 100)
        .sum();
    let raised: i64 = (0..CUSTOMERS).map(|i| total(i) * 25 / 100).sum();
    assert_eq!(c["live_face_value"]["KRW"], live, "{report:#}");
    assert_eq!(c["draft_face_value"]["KRW"], raised, "{report:#}");
    assert!(raised > live);

    // The same for people: the counts, the face values in won, a sample with the live offer.
    let (code, text) = forewarn_cli(
        &repo(),
        &[
            "--config",
            app.config_path().to_str().unwrap(),
            "simulate",
            "--rules",
            rules.to_str().unwrap(),
            "--since",
            "1h",
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    let won = |minor: i64| {
        let digits = minor.to_string();
        let mut grouped = String::new();
        for (i, d) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(d);
        }
        format!("₩{grouped}")
    };
    for expected in [
        format!("shipment-delay-apology · sms: {CUSTOMERS} message(s) to {CUSTOMERS} customer(s)"),
        format!("new 0 · dropped 0 · changed channel 0 · changed offer {CUSTOMERS}"),
        format!(
            "discount face value: {} live → {} draft",
            won(live),
            won(raised)
        ),
        "25 % off; live: ".to_owned(),
    ] {
        assert!(text.contains(&expected), "no `{expected}` in:\n{text}");
    }
}

#[tokio::test]
async fn a_template_that_misses_a_variable_fails_naming_the_event() {
    let app = history().await;
    let templates = app.dir.path().join("draft-templates");
    copy_dir(&app.dir.path().join("templates"), &templates);
    let sms = templates.join("delay-apology/sms.ko.hbs");
    let text = std::fs::read_to_string(&sms).unwrap();
    // Every example delay with alternatives gives a reason (so `check` passes); these do not.
    std::fs::write(
        &sms,
        format!(
            "{}{{{{#if data.alternatives}}}} {{{{data.reason}}}}{{{{/if}}}}",
            text.trim_end()
        ),
    )
    .unwrap();
    let (code, report, stderr) = simulate(
        &app,
        &app.dir.path().join("rules"),
        &["--templates", templates.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{stderr}\n{report:#}");
    let failures = report["failures"]
        .as_array()
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert_eq!(failures.len(), CUSTOMERS, "{report:#}");
    assert!(failures[0]["event"]
        .as_str()
        .unwrap()
        .starts_with("test/carrier#evt-delay-"));
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("sms.ko.hbs:1:"));
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("data.reason"));
    assert!(stderr.contains("failed to render"), "{stderr}");
}

#[tokio::test]
async fn a_file_of_events_is_replayed_on_an_empty_state_and_compared_with_nothing() {
    let app = history().await;
    let file = app.dir.path().join("events.jsonl");
    let lines = [
        json!({"specversion": "1.0", "id": "file-cust", "source": "test/crm",
               "type": "customer.upserted", "time": "2026-11-20T01:00:00Z",
               "data": {"id": "c-file", "name": "Jamie", "locale": "en-US",
                        "timezone": "America/New_York", "phone": "+12125550142",
                        "channels": ["sms"], "consent": {"sms": true}}}),
        delayed_event(99),
    ];
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    text.push_str("not an event\n");
    std::fs::write(&file, text).unwrap();
    let (code, report, stderr) = simulate(
        &app,
        &app.dir.path().join("rules"),
        &["--events", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["events"], 2, "{report:#}");
    assert_eq!(
        report["rules"]["shipment-delay-apology"]["sms"]["messages"],
        1
    );
    assert!(report["comparison"].is_null());
    let unreadable = report["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert!(
        unreadable[0].as_str().unwrap().contains("events.jsonl:3:"),
        "{report:#}"
    );
}

/// Messages of `rule` in a report, over every channel.
fn messages_of(report: &Value, rule: &str) -> u64 {
    report["rules"][rule].as_object().map_or(0, |channels| {
        channels
            .values()
            .map(|t| t["messages"].as_u64().unwrap())
            .sum()
    })
}

#[tokio::test]
async fn an_incident_is_replayed_to_every_customer_it_reached() {
    // Every customer of the history is in Seoul: an outage in Korea reaches all of them, and
    // its resolution all who were told.
    let mut app = history_running().await;
    let (code, out) = announce(&app, &start_args("inc-sim", &[]));
    assert_eq!(code, 0, "{out}");
    app.wait_sent(2 * CUSTOMERS as u64).await;
    let resolve = [
        "resolve",
        "--incident",
        "inc-sim",
        "--message",
        "It works again.",
    ];
    let (code, out) = announce(&app, &resolve);
    assert_eq!(code, 0, "{out}");
    app.wait_sent(3 * CUSTOMERS as u64).await;
    app.terminate().await;

    let (code, report, stderr) = simulate(&app, &app.dir.path().join("rules"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["fanouts"], 2, "{report:#}");
    assert_eq!(
        messages_of(&report, "outage-started-notice"),
        CUSTOMERS as u64
    );
    assert_eq!(
        messages_of(&report, "outage-resolved-notice"),
        CUSTOMERS as u64
    );
    let c = &report["comparison"];
    assert_eq!(c["live_messages"], 3 * CUSTOMERS, "{report:#}");
    for kind in ["new", "dropped", "changed_channel", "changed_offer"] {
        assert_eq!(c[kind]["count"], 0, "{kind}: {report:#}");
    }

    // A draft that announces outages by e-mail only: every customer told, on another channel.
    let rules = draft_of(&app, "email-only", "incidents.toml", |text| {
        let start = text.find("id = \"outage-started-notice\"").unwrap();
        let channels = start + text[start..].find("channels = ").unwrap();
        let end = channels + text[channels..].find('\n').unwrap();
        format!(
            "{}channels = [\"email\"]{}",
            &text[..channels],
            &text[end..]
        )
    });
    let (code, report, stderr) = simulate(&app, &rules, &[]);
    assert_eq!(code, 0, "{stderr}");
    let c = &report["comparison"];
    assert_eq!(c["changed_channel"]["count"], CUSTOMERS, "{report:#}");
    assert_eq!(
        report["rules"]["outage-started-notice"]["email"]["messages"], CUSTOMERS,
        "{report:#}"
    );
    for kind in ["new", "dropped", "changed_offer"] {
        assert_eq!(c[kind]["count"], 0, "{kind}: {report:#}");
    }
    let sample = &c["changed_channel"]["samples"][0]["message"];
    assert_eq!(sample["rule_id"], "outage-started-notice");
    assert!(
        sample["text"]
            .as_str()
            .unwrap()
            .contains("Card payments fail"),
        "{sample}"
    );
}
