//! Incidents: on-call announces (CLI or HTTP), every affected customer hears once, an update
//! only if it escalates, the resolution only those who were told — with a credit each — and
//! no marketing reaches a customer under an open incident.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use forewarn::domain::{EntityId, FanoutKind};
use forewarn::store::IncidentProgress;

use crate::helpers::*;

/// Affected customers (Seoul), unaffected ones (New York), and affected ones who cannot be
/// reached at all (opted out of SMS, their only channel): they are never told, so they must
/// not hear that it is over either.
const AFFECTED: usize = 2000;
const UNAFFECTED: usize = 500;
const UNREACHABLE: usize = 40;

/// The bearer token the HTTP tests configure.
const TOKEN: &str = "s3cret-token-for-tests";

fn customer_id(i: usize) -> String {
    format!("c-{i:05}")
}

/// `customer.upserted` for customer `i`: Seoul for the first `AFFECTED`, New York after.
fn customer(i: usize) -> Value {
    let region = if i < AFFECTED { "kr-seoul" } else { "us-ny" };
    json!({"specversion": "1.0", "id": format!("cust-{i}"), "source": "test/crm",
           "type": "customer.upserted", "time": "2026-11-23T08:00:00Z",
           "data": {"id": customer_id(i), "name": "김지수", "locale": "ko-KR",
                    "timezone": "Asia/Seoul", "phone": format!("+8210{:08}", i),
                    "channels": ["sms"], "consent": {"sms": true, "marketing": true},
                    "region": region, "segment": if i.is_multiple_of(10) { "vip" } else { "regular" },
                    "lifetime_value": {"minor": if i.is_multiple_of(10) { 5_000_000 } else { 10_000 },
                                       "currency": "KRW"}}})
}

/// Publishes the directory: every customer, and the unreachable ones' opt-outs.
async fn populate(app: &App) {
    for i in 0..AFFECTED + UNAFFECTED {
        app.publish(&customer(i)).await;
    }
    for i in 0..UNREACHABLE {
        app.publish(&json!({"specversion": "1.0", "id": format!("optout-{i}"),
            "source": "test/crm", "type": "customer.opted_out",
            "data": {"customer_id": customer_id(i), "channel": "sms", "scope": "all"}}))
            .await;
    }
    app.wait_intake_idle().await;
}

/// The customers the sandbox sent a message of `rule` to, each with how many.
fn recipients(app: &App, rule: &str) -> (BTreeSet<String>, usize) {
    let lines: Vec<Value> = app
        .sandbox("sms")
        .into_iter()
        .filter(|l| l["rule_id"] == rule)
        .collect();
    let ids = lines
        .iter()
        .map(|l| l["customer_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, lines.len())
}

fn reachable_affected() -> BTreeSet<String> {
    (UNREACHABLE..AFFECTED).map(customer_id).collect()
}

/// The incident's fan-outs and messages, as `announce --follow` reads them.
async fn progress(app: &App, incident: &str) -> IncidentProgress {
    app.store
        .incident_progress(&EntityId::parse(incident).unwrap(), chrono::Utc::now())
        .await
        .unwrap()
}

/// Waits until the fan-out of `event_id` (an announcement of `incident`) is done and nothing
/// of it is left to send.
async fn wait_fanout_done(app: &App, incident: &str, event_id: &str) {
    wait_for(&format!("the fan-out of {event_id} to finish"), || async {
        let progress = progress(app, incident).await;
        progress.fanout(event_id).is_some_and(|f| {
            let left = f.messages.queued + f.messages.deferred + f.messages.sending;
            f.status == "done" && left == 0
        })
    })
    .await;
}

async fn fanout_count(app: &App) -> i64 {
    app.db.count(Table::Fanouts).await
}

/// Customers decided so far by the incident's furthest fan-out.
async fn most_decided(app: &App, incident: &str) -> u64 {
    let progress = progress(app, incident).await;
    progress
        .fanouts
        .iter()
        .map(|f| f.customers)
        .max()
        .unwrap_or(0)
}

/// `POST` to the incidents API with `token`.
async fn post(app: &App, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", app.http_port))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn with_token() -> Options {
    Options {
        env: vec![
            (
                "FOREWARN_HTTP__API_TOKEN_ENV".into(),
                "INCIDENT_TOKEN".into(),
            ),
            ("INCIDENT_TOKEN".into(), TOKEN.into()),
        ],
        ..Options::default()
    }
}

#[tokio::test]
async fn every_affected_customer_hears_once_updates_only_on_escalation_and_the_told_get_a_credit() {
    let app = spawn_app_with(with_token()).await;
    populate(&app).await;

    // On-call announces from the command line.
    let (code, out) = announce(&app, &start_args("inc-checkout", &["--eta", "2h"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Announced incident inc-checkout"), "{out}");
    wait_fanout_done(&app, "inc-checkout", "inc-checkout:started").await;
    let (told, sent) = recipients(&app, "outage-started-notice");
    assert_eq!(
        told,
        reachable_affected(),
        "exactly the reachable affected customers"
    );
    assert_eq!(sent, AFFECTED - UNREACHABLE, "one message each");
    // The most valuable customers (every tenth, the VIPs) were queued, and so sent, first: all
    // of them within the first claim (outbox.batch_size 500) of the dispatcher.
    let order: Vec<String> = app
        .sandbox("sms")
        .into_iter()
        .filter(|l| l["rule_id"] == "outage-started-notice")
        .map(|l| l["customer_id"].as_str().unwrap().to_owned())
        .collect();
    let vips: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, c)| c[2..].parse::<usize>().unwrap() % 10 == 0)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(vips.len(), AFFECTED / 10 - UNREACHABLE / 10);
    assert!(vips.iter().all(|at| *at < 500), "VIPs sent at {vips:?}");
    // Queued in that order too, so the dispatcher reads the outbox in the order it was written.
    let notices: Vec<(i64, bool)> = app
        .db
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.rule_id == "outage-started-notice")
        .map(|m| (m.id, m.customer_id.ends_with('0')))
        .collect();
    let last_vip = notices
        .iter()
        .filter(|(_, vip)| *vip)
        .map(|(id, _)| *id)
        .max();
    let first_other = notices
        .iter()
        .filter(|(_, vip)| !*vip)
        .map(|(id, _)| *id)
        .min();
    let (last_vip, first_other) = (last_vip.expect("VIPs"), first_other.expect("others"));
    assert!(last_vip < first_other, "{last_vip} ≥ {first_other}");

    // An update without escalation, and one lowering it, reach nobody.
    for (i, severity) in [(1, None), (2, Some("minor"))] {
        let mut body = json!({"message": format!("Update {i}: still on it.")});
        if let Some(severity) = severity {
            body["severity"] = json!(severity);
        }
        let (status, answer) = post(
            &app,
            "/v1/incidents/inc-checkout/updates",
            &body,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        app.wait_intake_idle().await;
    }
    assert_eq!(
        fanout_count(&app).await,
        1,
        "no fan-out for updates that do not escalate"
    );
    // Back to major, then critical: only the rise above major is news.
    for severity in ["major", "critical"] {
        let body =
            json!({"message": "Payments now fail for everyone in Seoul.", "severity": severity});
        let (status, answer) = post(
            &app,
            "/v1/incidents/inc-checkout/updates",
            &body,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        app.wait_intake_idle().await;
    }
    let escalation = progress(&app, "inc-checkout")
        .await
        .fanouts
        .into_iter()
        .find(|f| f.kind == FanoutKind::Escalated)
        .expect("an escalation's fan-out")
        .event
        .id;
    wait_fanout_done(&app, "inc-checkout", &escalation).await;
    let (escalated, sent) = recipients(&app, "outage-escalated-notice");
    assert_eq!(escalated, reachable_affected());
    assert_eq!(
        sent,
        AFFECTED - UNREACHABLE,
        "the escalation went once to each"
    );
    // A second update at the same severity is not an escalation.
    let body = json!({"message": "Still critical.", "severity": "critical"});
    assert_eq!(
        post(
            &app,
            "/v1/incidents/inc-checkout/updates",
            &body,
            Some(TOKEN)
        )
        .await
        .0,
        202
    );
    app.wait_intake_idle().await;
    assert_eq!(fanout_count(&app).await, 2);

    // Resolved: exactly those who were told, each with their own credit code.
    let (status, answer) = post(
        &app,
        "/v1/incidents/inc-checkout/resolve",
        &json!({"message": "Payments work again."}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["incident_id"], "inc-checkout");
    wait_fanout_done(&app, "inc-checkout", "inc-checkout:resolved").await;
    let (resolved, sent) = recipients(&app, "outage-resolved-notice");
    assert_eq!(
        resolved, told,
        "the resolution reaches exactly those who were told"
    );
    assert_eq!(sent, told.len());
    let credits: Vec<(String, i64)> = app
        .db
        .codes()
        .await
        .into_iter()
        .filter(|c| c.rule_id == "outage-resolved-notice")
        .map(|c| (c.customer_id, c.percent))
        .collect();
    let credited: BTreeSet<String> = credits.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(credited, told, "one credit per customer told");
    assert_eq!(credits.len(), told.len());
    assert!(
        credits.iter().all(|(_, p)| *p == 10),
        "a critical incident's credit is 10 %"
    );
    let bodies: Vec<String> = app
        .sandbox("sms")
        .into_iter()
        .filter(|l| l["rule_id"] == "outage-resolved-notice")
        .map(|l| l["body"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        bodies.iter().all(|b| b.contains("10% 할인 코드")),
        "{}",
        bodies[0]
    );
    // Resolving again is the same event: nothing more.
    assert_eq!(
        post(
            &app,
            "/v1/incidents/inc-checkout/resolve",
            &json!({"message": "Fixed."}),
            Some(TOKEN)
        )
        .await
        .1["duplicate"],
        true
    );
    // The progress API tells on-call the same.
    let progress: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v1/incidents/inc-checkout",
            app.http_port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["incident"]["status"], "resolved");
    assert_eq!(progress["fanouts"][0]["customers"], AFFECTED as u64);
    assert_eq!(
        progress["fanouts"][0]["messages"]["sent"],
        (AFFECTED - UNREACHABLE) as u64
    );
    assert_eq!(progress["messages"]["sent"], (3 * told.len()) as u64);
    assert_eq!(progress["settled"], true);
}

/// An app with the directory, an incident `id` started for Seoul, and its fan-out part-way:
/// at least 300 customers decided.
async fn paging_fan_out(options: Options, id: &str) -> App {
    let app = spawn_app_with(options).await;
    populate(&app).await;
    app.publish(&outage(
        "outage.started",
        &format!("{id}:started"),
        json!({"incident_id": id, "title": "Checkout errors", "services": ["checkout"],
               "regions": ["kr"], "severity": "critical", "affected": {"regions": ["kr"]},
               "message": "Card payments fail."}),
    ))
    .await;
    wait_for("a few fan-out pages", || async {
        most_decided(&app, id).await >= 300
    })
    .await;
    app
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_fan_out_continues_without_duplicates() {
    let slow = Options {
        // Small pages and windows (ranking and sending alternate ten times), and a short
        // lease, so the kill lands mid-way and the new process takes the fan-out over quickly.
        extra_config: "\n[incidents]\npage_size = 50\nrank_window = 200\nlease = \"2s\"\n".into(),
        ..Options::default()
    };
    let mut app = paging_fan_out(slow.clone(), "inc-2").await;
    app.kill();
    let mid_way = most_decided(&app, "inc-2").await;
    assert!(
        mid_way < AFFECTED as u64,
        "killed after the fan-out ended ({mid_way})"
    );
    app.restart_with(slow).await;
    wait_fanout_done(&app, "inc-2", "inc-2:started").await;
    let lines: Vec<Value> = app.sandbox("sms");
    assert_each_key_once(&lines, AFFECTED - UNREACHABLE);
    let (told, _) = recipients(&app, "outage-started-notice");
    assert_eq!(told, reachable_affected());
}

#[tokio::test]
async fn a_graceful_stop_hands_the_fan_out_back_so_the_next_process_goes_on_at_once() {
    // A lease far longer than the test's patience: only the hand-back lets the restarted
    // process (a new owner) continue.
    let held = Options {
        extra_config: "\n[incidents]\npage_size = 50\nlease = \"1h\"\n".into(),
        ..Options::default()
    };
    let mut app = paging_fan_out(held.clone(), "inc-4").await;
    assert!(app.terminate().await.success());
    assert!(most_decided(&app, "inc-4").await < AFFECTED as u64);
    let leases = app.db.leases().await;
    assert!(
        leases.iter().all(|name| !name.starts_with("fanout:")),
        "the stopped process still holds the fan-out: {leases:?}"
    );
    app.restart_with(held).await;
    wait_fanout_done(&app, "inc-4", "inc-4:started").await;
    assert_each_key_once(&app.sandbox("sms"), AFFECTED - UNREACHABLE);
}

#[tokio::test]
async fn a_resolution_withdraws_the_notices_still_waiting_at_once() {
    // No dispatcher: every start notice waits, as it would for the customers' quiet hours.
    let app = spawn_app_queueing_only().await;
    populate(&app).await;
    let (code, out) = announce(&app, &start_args("inc-wait", &[]));
    assert_eq!(code, 0, "{out}");
    wait_for("the start's fan-out to queue everyone", || async {
        progress(&app, "inc-wait")
            .await
            .fanout("inc-wait:started")
            .is_some_and(|f| f.status == "done")
    })
    .await;
    let queued = progress(&app, "inc-wait")
        .await
        .fanout("inc-wait:started")
        .unwrap()
        .messages
        .queued;
    assert_eq!(queued as usize, AFFECTED - UNREACHABLE);

    let (code, out) = announce(
        &app,
        &[
            "resolve",
            "--incident",
            "inc-wait",
            "--message",
            "Payments work again.",
        ],
    );
    assert_eq!(code, 0, "{out}");
    app.wait_intake_idle().await;
    // In the resolution's own transaction: nothing waits for the notices' hour to come.
    let started = progress(&app, "inc-wait")
        .await
        .fanout("inc-wait:started")
        .cloned()
        .unwrap();
    assert_eq!(
        (started.messages.queued, started.messages.cancelled),
        (0, queued),
        "{started:?}"
    );
    let (code, status) = announce(&app, &["status", "--incident", "inc-wait"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains(&format!("withdrawn {queued}")), "{status}");
    // Nobody was told it started, so nobody is told it is over.
    wait_for("the resolution's fan-out", || async {
        progress(&app, "inc-wait")
            .await
            .fanout("inc-wait:resolved")
            .is_some_and(|f| f.settled())
    })
    .await;
    let resolved = progress(&app, "inc-wait")
        .await
        .fanout("inc-wait:resolved")
        .cloned()
        .unwrap();
    assert_eq!(resolved.customers, 0, "{resolved:?}");
}

/// `forewarn announce <args>` with stdout and stderr apart: (exit code, stdout, stderr).
fn announce_apart(app: &App, args: &[&str]) -> (i32, String, String) {
    let config = app.config_path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forewarn"))
        .args(["--config", config.to_str().unwrap(), "announce"])
        .args(args)
        .current_dir(app.dir.path())
        .env_remove("FOREWARN_CONFIG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_script_captures_only_the_id_and_people_read_who_will_be_messaged() {
    let app = spawn_app().await;
    populate(&app).await;
    let (code, stdout, stderr) = announce_apart(
        &app,
        &start_args(
            "inc-follow",
            &["--title-in", "ko", "카드 결제 장애", "--follow"],
        ),
    );
    assert_eq!(code, 0, "{stderr}");
    // Each customer reads their own language: these are Korean, and so is their title.
    let notices: Vec<Value> = app
        .sandbox("sms")
        .into_iter()
        .filter(|m| m["rule_id"] == "outage-started-notice")
        .collect();
    assert!(!notices.is_empty());
    for notice in &notices {
        let body = notice["body"].as_str().unwrap();
        assert!(body.contains("장애 안내: 카드 결제 장애."), "{body}");
        assert!(!body.contains("Checkout errors"), "{body}");
    }
    // `ID=$(forewarn announce start … --follow)` holds the id and nothing else.
    assert_eq!(stdout, "inc-follow\n", "stderr:\n{stderr}");
    assert!(
        stderr.contains("Every affected customer will be messaged."),
        "{stderr}"
    );
    // The last word agrees with what the store says was queued and sent.
    let done = stderr
        .lines()
        .find(|l| l.starts_with("Done: "))
        .unwrap_or_else(|| panic!("no final line:\n{stderr}"));
    let queued = AFFECTED - UNREACHABLE;
    assert!(
        done.contains(&format!("queued {queued:>8}")),
        "{done} (expected {queued} queued)"
    );
    // No library chatter (async-nats' `connected successfully`), no log lines at all.
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains("connected"), "{stderr}");

    // An update that does not escalate says so before anyone wonders.
    let (code, stdout, stderr) = announce_apart(
        &app,
        &[
            "update",
            "--incident",
            "inc-follow",
            "--message",
            "Still on it.",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "inc-follow\n");
    assert!(
        stderr.contains(
            "No customer will be messaged: an update reaches customers only when its severity \
             escalates."
        ),
        "{stderr}"
    );
    // A mistake names the flag to fix, not the HTTP body's field.
    let (code, _, stderr) = announce_apart(
        &app,
        &[
            "start",
            "--title",
            "Checkout errors",
            "--service",
            "checkout",
            "--severity",
            "major",
            "--message",
            "Card payments fail.",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--region, --segment or --customers-file: say who is affected"),
        "{stderr}"
    );
    assert!(!stderr.contains("affected:"), "{stderr}");
    assert!(!stderr.contains("\"everyone\""), "{stderr}");
}

#[tokio::test]
async fn a_dry_run_counts_the_affected_customers_and_shows_one_message_without_publishing() {
    let app = spawn_app().await;
    populate(&app).await;
    let (code, out) = announce(
        &app,
        &[
            "start",
            "--dry-run",
            "--title",
            "Checkout errors",
            "--service",
            "checkout",
            "--region",
            "kr-seoul",
            "--severity",
            "major",
            "--message",
            "Card payments fail; we are fixing it.",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("would reach {AFFECTED} customer(s)")),
        "{out}"
    );
    // The first affected customer in id order: opted out, so the dry run says why not.
    assert!(
        out.contains("c-00000 would get nothing: no_usable_channel"),
        "{out}"
    );
    // By segment: every tenth customer is a VIP.
    let (code, out) = announce(
        &app,
        &[
            "start",
            "--dry-run",
            "--title",
            "Checkout errors",
            "--service",
            "checkout",
            "--segment",
            "vip",
            "--severity",
            "critical",
            "--message",
            "Card payments fail; we are fixing it.",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "would reach {} customer(s)",
            (AFFECTED + UNAFFECTED) / 10
        )),
        "{out}"
    );
    // An update of an incident nobody announced is refused.
    let (code, out) = announce(
        &app,
        &[
            "update",
            "--dry-run",
            "--incident",
            "inc-nope",
            "--message",
            "Hm.",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("incident `inc-nope` is not known"), "{out}");
    app.wait_intake_idle().await;
    assert_eq!(fanout_count(&app).await, 0, "a dry run publishes nothing");
    let events = app.db.events().await;
    assert!(events.iter().all(|e| !e.kind.starts_with("outage.")));

    // Once customers were told, a dry-run resolution counts exactly them and shows the credit.
    app.publish(&outage(
        "outage.started",
        "inc-3:started",
        json!({"incident_id": "inc-3", "title": "Checkout errors", "services": ["checkout"],
               "regions": ["kr"], "severity": "critical", "affected": {"customer_ids": ["c-00100", "c-00101", "c-02100"]},
               "message": "Card payments fail."}),
    ))
    .await;
    wait_fanout_done(&app, "inc-3", "inc-3:started").await;
    let (code, out) = announce(
        &app,
        &[
            "resolve",
            "--dry-run",
            "--incident",
            "inc-3",
            "--message",
            "Payments work again.",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would reach 3 customer(s) — those who were told it started"),
        "{out}"
    );
    assert!(out.contains("c-00100 would get:"), "{out}");
    assert!(out.contains("10% credit"), "{out}");
    assert!(out.contains("복구 완료: Payments work again."), "{out}");
}

#[tokio::test]
async fn the_incidents_api_wants_its_token_and_names_every_invalid_field() {
    let app = spawn_app_with(with_token()).await;
    let start = json!({"title": "Checkout errors", "services": ["checkout"], "regions": ["kr"],
                       "severity": "major", "message": "Card payments fail."});
    assert_eq!(post(&app, "/v1/incidents", &start, None).await.0, 401);
    assert_eq!(
        post(&app, "/v1/incidents", &start, Some("wrong")).await.0,
        401
    );

    let bad = json!({"title": "", "services": [], "severity": "apocalyptic", "message": "x",
                     "eta": "last week"});
    let (status, answer) = post(&app, "/v1/incidents", &bad, Some(TOKEN)).await;
    assert_eq!(status, 422, "{answer}");
    let fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["title", "services", "severity", "eta", "affected"],
        "{answer}"
    );
    let (status, answer) = post(
        &app,
        "/v1/incidents",
        &json!({"title": "x", "colour": "red"}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{answer}"
    );
    let raw = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/incidents", app.http_port))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (status, _) = post(
        &app,
        "/v1/incidents/inc-unknown/updates",
        &json!({"message": "?"}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404);

    let (status, answer) = post(&app, "/v1/incidents", &start, Some(TOKEN)).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["incident_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inc-"), "{answer}");
    assert_eq!(answer["type"], "outage.started");
    app.wait_intake_idle().await;
    let stored = app.db.status(StatusTable::Incidents, &id).await;
    assert_eq!(stored.as_deref(), Some("open"));
    let resolve = json!({"message": "Fixed."});
    assert_eq!(
        post(
            &app,
            &format!("/v1/incidents/{id}/resolve"),
            &resolve,
            Some(TOKEN)
        )
        .await
        .0,
        202
    );
    app.wait_intake_idle().await;
    let (status, answer) = post(
        &app,
        &format!("/v1/incidents/{id}/updates"),
        &json!({"message": "?"}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 409, "{answer}");

    let openapi: Value = reqwest::get(format!("http://127.0.0.1:{}/openapi.json", app.http_port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/v1/incidents",
        "/v1/incidents/{id}/updates",
        "/v1/incidents/{id}/resolve",
    ] {
        assert!(
            openapi["paths"][path]["post"].is_object(),
            "{path} is not described"
        );
    }
}

#[tokio::test]
async fn without_a_configured_token_the_incidents_api_refuses_everyone() {
    let app = spawn_app().await;
    let (status, answer) = post(
        &app,
        "/v1/incidents",
        &json!({"title": "x", "services": ["checkout"], "everyone": true, "severity": "major",
                "message": "x"}),
        Some("anything"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("http.api_token_env"),
        "{answer}"
    );
}

fn outage(kind: &str, id: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test/status", "type": kind,
           "time": "2026-11-23T09:00:00Z", "data": data})
}

/// A delay for customer `c-{i}` in `region`, consenting to marketing (so it carries a code).
fn delay_in(i: usize, region: &str) -> serde_json::Value {
    let mut event = delayed_event(i);
    event["data"]["customer"]["region"] = json!(region);
    event
}

#[tokio::test]
async fn no_marketing_reaches_a_customer_under_an_open_incident_until_it_is_resolved() {
    let app = spawn_app().await;
    app.publish(&outage(
        "outage.started",
        "inc-1-started",
        json!({"incident_id": "inc-1", "title": "Payments down", "services": ["payments"],
               "regions": ["kr-seoul"], "severity": "major", "affected": {"regions": ["kr"]},
               "message": "Card payments fail."}),
    ))
    .await;
    app.wait_intake_idle().await;
    // Seoul is under it; New York is not.
    app.publish(&delay_in(1, "kr-seoul")).await;
    app.publish(&delay_in(2, "us-ny")).await;
    app.wait_intake_idle().await;
    app.wait_sent(2).await;
    let codes: Vec<String> = app
        .db
        .codes()
        .await
        .into_iter()
        .map(|c| c.customer_id)
        .collect();
    assert_eq!(codes, ["c-2"]);
    let mut withheld = app.db.notes().await;
    withheld.retain(|n| n.customer_id.as_deref() == Some("c-1") && n.outcome == "offer_withheld");
    assert_eq!(withheld.len(), 1, "{withheld:?}");
    let (reason, detail) = (withheld[0].reason.clone(), withheld[0].detail.clone());
    assert_eq!(reason, "open_incident");
    assert!(detail.contains("incident inc-1"), "{detail}");

    // Resolved: the next apology carries its code again.
    app.publish(&outage(
        "outage.resolved",
        "inc-1-resolved",
        json!({"incident_id": "inc-1", "message": "Payments work again."}),
    ))
    .await;
    app.wait_intake_idle().await;
    let mut again = delay_in(1, "kr-seoul");
    again["id"] = json!("evt-delay-1-again");
    again["data"]["shipment_id"] = json!("shp-1b");
    app.publish(&again).await;
    app.wait_intake_idle().await;
    app.wait_sent(3).await;
    let codes = app.db.codes().await;
    assert_eq!(codes.iter().filter(|c| c.customer_id == "c-1").count(), 1);
}
