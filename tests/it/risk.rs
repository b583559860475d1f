//! Risk scores on live decisions: features from the history forewarn keeps, read as of each
//! decision's time; external scores that override and expire; explanations stored with each
//! outreach; the scores in rules and offers; a burst sent riskiest first.

use serde_json::{json, Value};

use crate::helpers::*;

fn event(id: &str, kind: &str, time: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test/risk", "type": kind, "time": time,
           "data": data})
}

fn customer(id: &str) -> Value {
    json!({"id": id, "name": "Jamie", "locale": "en-US", "timezone": "America/New_York",
           "phone": "+12125550142", "channels": ["sms"], "consent": {"marketing": true}})
}

/// A shipment of `c-1` with carrier CJ to region Seoul, created and delivered.
fn delivered(id: &str, promised_by: &str, delivered_at: &str) -> [Value; 2] {
    [
        event(
            &format!("{id}-created"),
            "shipment.created",
            promised_by,
            json!({
            "shipment_id": id, "order_id": format!("o-{id}"), "customer": customer("c-1"),
            "carrier": "CJ", "tracking_number": "T1", "promised_by": promised_by,
            "destination": {"region": "Seoul", "postal_code": "06236"}}),
        ),
        event(
            &format!("{id}-delivered"),
            "shipment.delivered",
            delivered_at,
            json!({
            "shipment_id": id, "delivered_at": delivered_at}),
        ),
    ]
}

fn delay(id: &str, shipment: &str, order: &str, time: &str, promised: &str, eta: &str) -> Value {
    event(
        id,
        "shipment.delayed",
        time,
        json!({
        "shipment_id": shipment, "order_id": order, "customer": customer("c-1"),
        "carrier": "CJ", "promised_by": promised, "new_eta": eta}),
    )
}

fn order(id: &str, placed: &str, minor: i64, currency: &str) -> Value {
    event(
        &format!("{id}-placed"),
        "order.placed",
        placed,
        json!({
        "order_id": id, "customer": customer("c-1"), "promised_by": placed,
        "items": [{"sku": "S", "name": "Shoe", "quantity": 1,
                   "unit_price": {"minor": minor, "currency": currency}}],
        "total": {"minor": minor, "currency": currency}}),
    )
}

/// The stored explanation of the outreach `event_id` caused.
async fn explanation(app: &App, event_id: &str) -> Value {
    app.explanation(event_id).await
}

/// `[feature, value, contribution]` of one term of a stored explanation.
fn feature(explanation: &Value, target: &str, name: &str) -> Value {
    explanation[target]["builtin"]["terms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == name)
        .unwrap_or_else(|| panic!("no {name} in {explanation}"))
        .clone()
}

fn unknown(explanation: &Value, target: &str) -> Vec<String> {
    serde_json::from_value(explanation[target]["builtin"]["unknown"].clone()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-4
}

async fn publish_all(app: &App, events: &[Value]) {
    for e in events {
        app.publish(e).await;
    }
    app.wait_intake_idle().await;
}

#[tokio::test]
async fn features_come_from_history_within_their_windows_and_never_from_after_the_decision() {
    let app = spawn_app_queueing_only().await;
    // The decision: a delay notice at noon on 20 November.
    let decided_at = "2026-11-20T12:00:00Z";
    let mut history = Vec::new();
    // Deliveries by carrier CJ to Seoul: within the 30 whole days before the 20th, one of two
    // was a day late. One older, one the same day and one after the decision do not count,
    // although all three reach forewarn before the decision does.
    history.extend(delivered(
        "s-a1",
        "2026-11-08T09:00:00Z",
        "2026-11-10T09:00:00Z",
    )); // late
    history.extend(delivered(
        "s-a2",
        "2026-11-15T09:00:00Z",
        "2026-11-15T08:00:00Z",
    )); // on time
    history.extend(delivered(
        "s-a3",
        "2026-10-13T09:00:00Z",
        "2026-10-15T09:00:00Z",
    )); // too old
    history.extend(delivered(
        "s-a4",
        "2026-11-18T09:00:00Z",
        "2026-11-20T10:00:00Z",
    )); // today
    history.extend(delivered(
        "s-a5",
        "2026-11-21T09:00:00Z",
        "2026-11-25T09:00:00Z",
    )); // future
        // Bad experiences of c-1: a delay and an exception on d1 inside 90 days, a delay outside,
        // and one after the decision. The late deliveries above count as delays too: s-a1 (inside),
        // s-a3 (inside: 36 days), s-a4 (inside, before noon), s-a5 (after: no).
    history.push(delay(
        "d1-delay",
        "d1",
        "o-d1",
        "2026-09-01T00:00:00Z",
        "2026-09-02T00:00:00Z",
        "2026-09-04T00:00:00Z",
    ));
    history.push(event(
        "d1-exception",
        "shipment.exception",
        "2026-09-02T00:00:00Z",
        json!({
        "shipment_id": "d1", "order_id": "o-d1", "customer": customer("c-1"), "kind": "damaged"}),
    ));
    history.push(delay(
        "d0-delay",
        "d0",
        "o-d0",
        "2026-08-01T00:00:00Z",
        "2026-08-02T00:00:00Z",
        "2026-08-04T00:00:00Z",
    ));
    history.push(delay(
        "d9-delay",
        "d9",
        "o-d9",
        "2026-11-28T00:00:00Z",
        "2026-11-29T00:00:00Z",
        "2026-12-01T00:00:00Z",
    ));
    // Orders: one long ago, the current one, and one placed after the decision.
    history.push(order("o-old", "2026-06-01T00:00:00Z", 5_000, "USD"));
    history.push(order("o-cur", "2026-11-18T00:00:00Z", 129_000, "KRW"));
    history.push(order("o-new", "2026-11-22T00:00:00Z", 9_900, "USD"));
    // The parcel of the current order, scanned at 06:00 on the 20th.
    history.push(event(
        "s-cur-created",
        "shipment.created",
        "2026-11-18T01:00:00Z",
        json!({
        "shipment_id": "s-cur", "order_id": "o-cur", "customer": customer("c-1"),
        "carrier": "CJ", "tracking_number": "T2", "promised_by": "2026-11-21T09:00:00Z",
        "destination": {"region": "Seoul", "postal_code": "06236"}}),
    ));
    history.push(event(
        "s-cur-scan",
        "shipment.in_transit",
        "2026-11-20T06:00:00Z",
        json!({
        "shipment_id": "s-cur", "at": "2026-11-20T06:00:00Z"}),
    ));
    publish_all(&app, &history).await;
    assert_eq!(
        app.db.count(Table::Events).await,
        history.len() as i64,
        "none dead-lettered"
    );

    app.publish(&delay(
        "decision",
        "s-cur",
        "o-cur",
        decided_at,
        "2026-11-21T09:00:00Z",
        "2026-11-23T09:00:00Z",
    ))
    .await;
    app.wait_intake_idle().await;

    let x = explanation(&app, "decision").await;
    let value = |target, name| feature(&x, target, name)[1].as_f64().unwrap();
    assert!(close(value("delay", "carrier_late_share_30d"), 0.5), "{x}");
    assert!(close(value("delay", "region_late_share_30d"), 0.5), "{x}");
    assert!(close(value("delay", "hours_past_promise"), -21.0), "{x}");
    assert!(close(value("delay", "announced_delay_hours"), 48.0), "{x}");
    assert!(close(value("delay", "exception_scans"), 0.0), "{x}");
    assert!(close(value("delay", "hours_since_last_scan"), 6.0), "{x}");
    // d1 delay, d1 exception, s-a1, s-a3, s-a4 late deliveries, and this delay: 6.
    assert!(close(value("churn", "bad_experiences_90d"), 6.0), "{x}");
    assert!(close(value("churn", "days_late"), 2.0), "{x}");
    assert!(close(value("churn", "lifetime_orders"), 2.0), "{x}");
    assert!(close(value("churn", "first_order"), 0.0), "{x}");
    assert!(
        close(
            value("churn", "log_order_value"),
            (129_000.0f64 * 0.00072).ln_1p()
        ),
        "{x}"
    );
    assert!(
        close(
            value("churn", "log_lifetime_value"),
            (50.0 + 129_000.0f64 * 0.00072).ln_1p()
        ),
        "{x}"
    );
    assert!(unknown(&x, "delay").is_empty(), "{x}");
    assert!(unknown(&x, "churn").is_empty(), "{x}");
}

#[tokio::test]
async fn explanations_sum_to_the_logit_and_the_score_is_its_probability() {
    let app = spawn_app_queueing_only().await;
    publish_all(
        &app,
        &[
            order("o-1", "2026-11-01T00:00:00Z", 12_000, "USD"),
            delay(
                "e1",
                "s1",
                "o-1",
                "2026-11-20T12:00:00Z",
                "2026-11-21T09:00:00Z",
                "2026-11-24T09:00:00Z",
            ),
        ],
    )
    .await;
    let x = explanation(&app, "e1").await;
    for target in ["delay", "churn"] {
        let builtin = &x[target]["builtin"];
        let sum: f64 = builtin["intercept"].as_f64().unwrap()
            + builtin["terms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[2].as_f64().unwrap())
                .sum::<f64>();
        let logit = builtin["logit"].as_f64().unwrap();
        assert!((sum - logit).abs() < 1e-4, "{target}: {sum} vs {logit}");
        let p = 1.0 / (1.0 + (-logit).exp());
        assert!(
            (p - x[target]["score"].as_f64().unwrap()).abs() < 1e-4,
            "{x}"
        );
        assert_eq!(x[target]["model"], format!("builtin-{target}-2026-11"));
    }
}

#[tokio::test]
async fn an_external_score_overrides_the_builtin_one_and_chooses_the_offer_until_it_expires() {
    let app = spawn_app().await;
    publish_all(
        &app,
        &[
            event(
                "ext-1",
                "risk.scored",
                "2026-11-20T00:00:00Z",
                json!({
            "customer_id": "c-1", "scores": {"churn": 0.93}, "model": "retention-v3"}),
            ),
            // An hour later: the external score holds.
            delay(
                "within",
                "s1",
                "o-1",
                "2026-11-20T01:00:00Z",
                "2026-11-21T09:00:00Z",
                "2026-11-22T09:00:00Z",
            ),
            // 73 hours later (valid_for_hours = 72): the built-in model is back.
            delay(
                "after",
                "s2",
                "o-2",
                "2026-11-23T01:00:00Z",
                "2026-11-24T09:00:00Z",
                "2026-11-25T09:00:00Z",
            ),
        ],
    )
    .await;

    let within = explanation(&app, "within").await;
    assert_eq!(within["churn"]["score"], 0.93);
    assert_eq!(within["churn"]["model"], "retention-v3");
    assert_eq!(
        within["churn"]["external"]["scored_at"],
        "2026-11-20T00:00:00+00:00"
    );
    // The built-in score is kept beside it for comparison, and the delay score is built-in.
    assert!(within["churn"]["builtin"]["score"].as_f64().unwrap() < 0.6);
    assert_eq!(within["delay"]["model"], "builtin-delay-2026-11");

    let after = explanation(&app, "after").await;
    assert_eq!(after["churn"]["model"], "builtin-churn-2026-11");
    assert!(after["churn"]["external"].is_null());

    // The shipped rule offers 20 % to customers likely to leave (risk.churn >= 0.6), else
    // 10 % for a one-day slip.
    app.wait_sent(2).await;
    let mut percents = Vec::new();
    for event_id in ["after", "within"] {
        let code = app.db.code_for_event(event_id).await;
        percents.push((event_id.to_owned(), code.percent));
    }
    assert_eq!(app.db.count(Table::DiscountCodes).await, 2);
    assert_eq!(percents, [("after".into(), 10), ("within".into(), 20)]);
    let metrics = app.metrics().await;
    for (labels, count) in [
        ("score=\"churn\",source=\"external\"", 1),
        ("score=\"churn\",source=\"builtin\"", 1),
        ("score=\"delay\",source=\"builtin\"", 2),
    ] {
        assert!(
            metrics.contains(&format!(
                "forewarn_outreach_risk_score_count{{{labels}}} {count}"
            )),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_burst_is_sent_to_the_customers_most_likely_to_leave_first() {
    let mut app = spawn_app_queueing_only().await;
    // Twenty customers with churn scores in a scrambled order, all delayed at once.
    let n = 20;
    let churn = |i: usize| ((i * 7) % n) as f64 / n as f64;
    let mut events = Vec::new();
    for i in 0..n {
        events.push(event(
            &format!("score-{i}"),
            "risk.scored",
            "2026-11-23T09:00:00Z",
            json!({
            "customer_id": format!("c-{i}"), "scores": {"churn": churn(i)}, "model": "m"}),
        ));
    }
    for i in 0..n {
        events.push(delayed_event(i));
    }
    publish_all(&app, &events).await;
    assert_eq!(app.counts().await.pending, n as u64);

    app.terminate().await;
    app.restart_with(Options {
        outbox_batch: 5,
        concurrency: 1,
        ..Options::default()
    })
    .await;
    app.wait_sent(n as u64).await;
    let order: Vec<String> = app
        .sandbox("sms")
        .iter()
        .map(|m| m["customer_id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<usize> = (0..n).collect();
    expected.sort_by(|a, b| churn(*b).total_cmp(&churn(*a)));
    let expected: Vec<String> = expected.iter().map(|i| format!("c-{i}")).collect();
    assert_eq!(order, expected);
}

fn forewarn(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    forewarn_cli(dir, args, &[])
}

/// The held-out AUC `risk fit` printed for the fitted model.
fn fitted_auc(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("fitted"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|auc| auc.parse().ok())
        .unwrap_or_else(|| panic!("no fitted AUC in {out}"))
}

#[test]
fn risk_fit_learns_a_delay_model_from_outcomes_and_eval_measures_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::copy(
        repo().join("rules/risk.toml"),
        dir.path().join("rules/risk.toml"),
    )
    .unwrap();
    // Outcomes drawn from known coefficients (fixed seed); an id column forewarn ignores and a
    // few unknown carrier shares, as an export would have.
    let mut rng = fastrand::Rng::with_seed(11);
    let mut csv = String::from(
        "shipment_id,carrier_late_share_30d,region_late_share_30d,hours_past_promise,\
         announced_delay_hours,exception_scans,hours_since_last_scan,late\n",
    );
    for i in 0..6000 {
        let carrier = rng.f64() * 0.3;
        let region = rng.f64() * 0.2;
        let past = rng.f64() * 96.0 - 72.0;
        let announced = if rng.f64() < 0.3 {
            rng.f64() * 72.0
        } else {
            0.0
        };
        let exceptions = f64::from(rng.u8(0..3));
        let scan = rng.f64() * 48.0;
        let logit = -3.0
            + 8.0 * carrier
            + 2.0 * region
            + 0.02 * past
            + 0.05 * announced
            + 0.6 * exceptions
            + 0.02 * scan;
        let late = rng.f64() < 1.0 / (1.0 + (-logit).exp());
        let carrier = if i % 50 == 0 {
            String::new()
        } else {
            format!("{carrier:.4}")
        };
        csv.push_str(&format!(
            "shp-{i},{carrier},{region:.4},{past:.2},{announced:.2},{exceptions},{scan:.2},{}\n",
            u8::from(late)
        ));
    }
    std::fs::write(dir.path().join("outcomes.csv"), csv).unwrap();

    let (code, out) = forewarn(dir.path(), &["risk", "eval", "--input", "outcomes.csv"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("delay (builtin-delay-2026-11): 6000 rows"),
        "{out}"
    );
    assert!(out.contains("ignored: shipment_id"), "{out}");

    let (code, out) = forewarn(dir.path(), &["risk", "fit", "--input", "outcomes.csv"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fitting on 4800 rows"), "{out}");
    assert!(fitted_auc(&out) > 0.75, "{out}");
    assert!(
        out.contains("wrote rules/risk.toml: delay `delay-fit-"),
        "{out}"
    );
    let written = std::fs::read_to_string(dir.path().join("rules/risk.toml")).unwrap();
    let model =
        forewarn::risk::RiskModel::parse(std::path::Path::new("risk.toml"), &written).unwrap();
    assert!(model.delay.name.starts_with("delay-fit-"));
    // The file had no churn outcomes: that model is kept as it was.
    assert_eq!(model.churn.name, "builtin-churn-2026-11");
    let weight = |name: &str| {
        model
            .delay
            .terms
            .iter()
            .find(|t| t.feature.name() == name)
            .unwrap()
            .weight
    };
    assert!(
        (weight("carrier_late_share_30d") - 8.0).abs() < 2.0,
        "{written}"
    );
    assert!((weight("exception_scans") - 0.6).abs() < 0.2, "{written}");

    // eval now measures the fitted model.
    let (code, out) = forewarn(dir.path(), &["risk", "eval", "--input", "outcomes.csv"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delay (delay-fit-"), "{out}");

    // A file without outcomes is refused with what to add.
    std::fs::write(dir.path().join("bad.csv"), "days_late\n1\n").unwrap();
    let (code, out) = forewarn(dir.path(), &["risk", "fit", "--input", "bad.csv"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no outcome column; add `late`"), "{out}");
}

#[tokio::test]
async fn the_last_message_before_a_decision_is_read_with_how_it_ended() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let at = |minutes: i64| (now + chrono::Duration::minutes(minutes)).to_rfc3339();
    publish_all(
        &app,
        &[delay(
            "first",
            "s1",
            "o-1",
            &at(-5),
            &at(-2 * 24 * 60),
            &at(24 * 60),
        )],
    )
    .await;
    app.wait_sent(1).await;
    let code = app.db.codes().await.remove(0).code;
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/discount-codes/{code}/redeem",
            app.http_port
        ))
        .json(&json!({"customer_id": "c-1", "order_id": "o-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The next decision, after the code was used: its last message ended in a redemption.
    publish_all(
        &app,
        &[delay(
            "second",
            "s2",
            "o-2",
            &at(1),
            &at(-24 * 60),
            &at(24 * 60),
        )],
    )
    .await;
    let x = explanation(&app, "second").await;
    assert_eq!(
        feature(&x, "churn", "last_outreach_redeemed")[1],
        1.0,
        "{x}"
    );
    assert_eq!(feature(&x, "churn", "last_outreach_failed")[1], 0.0, "{x}");
    // Both delays count, this one (stamped a minute ahead) included.
    assert_eq!(feature(&x, "churn", "bad_experiences_90d")[1], 2.0, "{x}");
    // The first decision had no message before it.
    let x = explanation(&app, "first").await;
    assert_eq!(
        feature(&x, "churn", "last_outreach_redeemed")[1],
        0.0,
        "{x}"
    );
}

#[tokio::test]
async fn risk_export_writes_each_scored_decision_with_its_features_and_known_outcomes() {
    let app = spawn_app_queueing_only().await;
    publish_all(
        &app,
        &[
            // Decided on the 10th; delivered two days after its promise; the customer ordered
            // again five days later.
            delay(
                "a",
                "s1",
                "o-1",
                "2026-11-10T12:00:00Z",
                "2026-11-11T09:00:00Z",
                "2026-11-13T09:00:00Z",
            ),
            event(
                "s1-delivered",
                "shipment.delivered",
                "2026-11-13T09:00:00Z",
                json!({
            "shipment_id": "s1", "delivered_at": "2026-11-13T09:00:00Z"}),
            ),
            order("o-2", "2026-11-15T00:00:00Z", 4_000, "USD"),
            // Decided on the 20th; its promise is still ahead.
            delay(
                "b",
                "s2",
                "o-3",
                "2026-11-20T12:00:00Z",
                "2026-12-01T09:00:00Z",
                "2026-12-03T09:00:00Z",
            ),
        ],
    )
    .await;

    let out = app.dir.path().join("outcomes.csv");
    let config = app.config_path();
    let (code, text) = forewarn(
        app.dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "risk",
            "export",
            "--output",
            out.to_str().unwrap(),
            "--churn-window",
            "10d",
            // As of the 25th: the first decision's window has passed, the second's has not,
            // and the second parcel's promise is still ahead — whatever today's date is.
            "--at",
            "2026-11-25T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("2 decisions; `late` known for 1, `churned` for 1"),
        "{text}"
    );

    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<std::collections::HashMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .map(String::from)
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2);
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(a["decided_at"], "2026-11-10T12:00:00+00:00");
    assert_eq!(a["announced_delay_hours"], "48");
    assert_eq!(a["late"], "1");
    assert_eq!(
        a["churned"], "0",
        "the customer ordered again within the window"
    );
    // Unknown at the decision (no carrier history yet): left empty, as `risk fit` reads it.
    assert_eq!(a["carrier_late_share_30d"], "");
    assert_eq!(b["late"], "", "not yet known");
    assert_eq!(b["churned"], "", "the window has not passed");
    // The carrier's first delivery counts for decisions after its day.
    assert_eq!(b["carrier_late_share_30d"], "1");

    // What export writes, `risk eval` reads.
    let (code, text) = forewarn(
        app.dir.path(),
        &["risk", "eval", "--input", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("delay (builtin-delay-2026-11): 1 rows"),
        "{text}"
    );
}
