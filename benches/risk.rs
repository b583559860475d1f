//! Risk scores per second with a realistic history in the database: `cargo bench --bench risk`.
//!
//! Builds a SQLite file with `BENCH_CUSTOMERS` (default 100000) customers, each with orders,
//! bad experiences, a message sent, a third with an external score, and a year of delivery
//! counts for 10 carriers and 20 regions; then scores `BENCH_EVENTS` (default 20000) delay
//! notices for random customers the way intake does: per batch of 500, load the batch's state
//! and history in one transaction, then compute both scores for every event. Prints scores/s
//! for the whole (load + score) and for scoring alone on loaded history.

mod support;
use support::env_usize;

use std::time::Instant;

use chrono::{Duration, Utc};
use forewarn::domain::Accepted;
use forewarn::domain::{CloudEvent, Payload};
use forewarn::pipeline::{assess_event, refs_of};
use forewarn::risk::RiskModel;
use forewarn::rules::RuleSet;
use forewarn::store::DatabaseSettings;
use forewarn::store::{IntakeStore, SqliteStore};
use serde_json::json;

const BATCH: usize = 500;

#[tokio::main]
async fn main() {
    let customers = env_usize("BENCH_CUSTOMERS", 100_000);
    let n = env_usize("BENCH_EVENTS", 20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::connect(&DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Default::default()
    })
    .await
    .expect("database");
    store.migrate().await.expect("migrations");

    let started = Instant::now();
    let now_ms = Utc::now().timestamp_millis();
    let day_ms: i64 = 86_400_000;
    let today = now_ms.div_euclid(day_ms);
    let seq = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {})",
        customers - 1
    );
    let statements = [
        format!("{seq} INSERT INTO customers (id, doc, region, segment, updated_at) \
                 SELECT 'c-' || i, json_object('id', 'c-' || i, 'name', 'Customer', 'locale', 'ko-KR', \
                 'phone', printf('+8210%08d', i), 'channels', json_array('sms')), 'r' || (i % 20), \
                 NULL, {now_ms} FROM seq"),
        // Three orders each, over the last year; one in ten cancelled.
        format!("{seq}, k(j) AS (VALUES (0), (1), (2)) INSERT INTO orders \
                 (id, customer_id, status, total_minor, currency, promised_by, placed_at, updated_at) \
                 SELECT 'o-' || i || '-' || j, 'c-' || i, \
                 CASE WHEN (i + j) % 10 = 0 THEN 'cancelled' ELSE 'placed' END, \
                 10000 + (i * 7919 + j) % 200000, 'KRW', \
                 {now_ms} - ((i + j * 97) % 360) * {day_ms} + 3 * {day_ms}, \
                 {now_ms} - ((i + j * 97) % 360) * {day_ms}, {now_ms} FROM seq, k"),
        // One or two bad experiences each within the last 180 days.
        format!("{seq} INSERT INTO customer_experiences (customer_id, kind, entity, at) \
                 SELECT 'c-' || i, CASE i % 3 WHEN 0 THEN 'delay' WHEN 1 THEN 'exception' ELSE 'overdue' END, \
                 'old-s-' || i, {now_ms} - (i % 180) * {day_ms} FROM seq"),
        format!("{seq} INSERT INTO customer_experiences (customer_id, kind, entity, at) \
                 SELECT 'c-' || i, 'delay', 'old2-s-' || i, {now_ms} - (i % 60) * {day_ms} \
                 FROM seq WHERE i % 2 = 0"),
        // One message each, some failed, some with a redeemed code.
        format!("{seq} INSERT INTO outbox (idempotency_key, rule_id, customer_id, entity, channel, \
                 category, priority, fallback, event_source, event_id, locale, content, status, \
                 attempts, next_attempt_at, created_at, updated_at, offer) \
                 SELECT printf('%032x', i), 'r', 'c-' || i, 'e-' || i, 'sms', 'transactional', 50, '[]', \
                 'bench', 'old-' || i, 'ko', '{{}}', CASE WHEN i % 9 = 0 THEN 'failed' ELSE 'sent' END, \
                 1, 0, {now_ms} - (i % 30) * {day_ms}, {now_ms} - (i % 30) * {day_ms}, \
                 CASE WHEN i % 4 = 0 THEN json_object('code', printf('C%011d', i)) END FROM seq"),
        format!("{seq} INSERT INTO discount_codes (code, idempotency_key, rule_id, customer_id, percent, \
                 issued_at, expires_at, redeemed_at) SELECT printf('C%011d', i), printf('%032x', i), 'r', \
                 'c-' || i, 10, 0, {now_ms} + {day_ms}, CASE WHEN i % 8 = 0 THEN {now_ms} - {day_ms} END \
                 FROM seq WHERE i % 4 = 0"),
        format!("{seq} INSERT INTO risk_scores (event_source, event_id, customer_id, churn, model, scored_at) \
                 SELECT 'bench', 'score-' || i, 'c-' || i, (i % 100) / 100.0, 'ext', {now_ms} - {day_ms} \
                 FROM seq WHERE i % 3 = 0"),
        // The open shipments the delay notices are about: one per customer.
        format!("{seq} INSERT INTO shipments (id, order_id, customer_id, carrier, tracking_number, \
                 promised_by, status, region, last_scan_at, updated_at) \
                 SELECT 's-' || i, 'o-' || i || '-0', 'c-' || i, 'carrier-' || (i % 10), 'T', \
                 {now_ms} + {day_ms}, 'in_transit', 'r' || (i % 20), {now_ms} - 3600000, {now_ms} FROM seq"),
        // A year of daily delivery counts per carrier and region.
        format!("WITH RECURSIVE d(day) AS (SELECT {today} - 365 UNION ALL SELECT day + 1 FROM d WHERE day < {today}), \
                 lane(dimension, key) AS (SELECT 'carrier', 'carrier-' || value FROM generate_series(0, 9) \
                 UNION ALL SELECT 'region', 'r' || value FROM generate_series(0, 19)) \
                 INSERT INTO shipment_outcome_days SELECT dimension, key, day, 300, 20 + (day % 7) FROM lane, d"),
    ];
    for sql in &statements {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(store.writer())
            .await
        {
            // generate_series is an extension some SQLite builds lack; fall back to VALUES.
            if sql.contains("generate_series") {
                let lanes: Vec<String> = (0..10)
                    .map(|i| format!("('carrier', 'carrier-{i}')"))
                    .chain((0..20).map(|i| format!("('region', 'r{i}')")))
                    .collect();
                let sql = format!(
                    "WITH RECURSIVE d(day) AS (SELECT {today} - 365 UNION ALL SELECT day + 1 FROM d WHERE day < {today}), \
                     lane(dimension, key) AS (VALUES {}) \
                     INSERT INTO shipment_outcome_days SELECT dimension, key, day, 300, 20 + (day % 7) FROM lane, d",
                    lanes.join(", ")
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(store.writer())
                    .await
                    .expect("lanes");
            } else {
                panic!("history set-up failed: {e}\n{sql}");
            }
        }
    }
    sqlx::query("ANALYZE")
        .execute(store.writer())
        .await
        .expect("analyze");
    let mut sizes = Vec::new();
    for table in [
        "customers",
        "orders",
        "customer_experiences",
        "outbox",
        "discount_codes",
        "risk_scores",
        "shipments",
        "shipment_outcome_days",
    ] {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(store.writer())
                .await
                .expect("count");
        sizes.push(format!("{table} {rows}"));
    }
    println!(
        "risk: history for {customers} customers built in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        sizes.join(", ")
    );

    let model = RiskModel::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rules"
    )))
    .expect("risk model");
    // One rule on shipment.delayed, so the batch loads the history of every event's customer.
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules dir");
    std::fs::write(
        rules_dir.join("r.toml"),
        "[[rule]]\nid = \"d\"\non = [\"shipment.delayed\"]\ntemplate = \"t\"\nchannels = [\"sms\"]\n",
    )
    .expect("rule");
    struct AnyTemplate;
    impl forewarn::rules::TemplateIndex for AnyTemplate {
        fn channels_of(
            &self,
            _: &str,
        ) -> Option<std::collections::BTreeSet<forewarn::domain::Channel>> {
            Some([forewarn::domain::Channel::Sms].into())
        }
    }
    let rules = RuleSet::load(&rules_dir, &AnyTemplate).expect("rules");

    let mut rng = fastrand::Rng::with_seed(5);
    let time = Utc::now().to_rfc3339();
    let eta = (Utc::now() + Duration::days(3)).to_rfc3339();
    let promised = (Utc::now() + Duration::days(1)).to_rfc3339();
    let events: Vec<Accepted> = (0..n)
        .map(|i| {
            let c = rng.usize(0..customers);
            let body = json!({"specversion": "1.0", "id": format!("evt-{i}"), "source": "bench",
                "type": "shipment.delayed", "time": time,
                "data": {"shipment_id": format!("s-{c}"), "order_id": format!("o-{c}-0"),
                         "customer_id": format!("c-{c}"), "carrier": format!("carrier-{}", c % 10),
                         "promised_by": promised, "new_eta": eta}})
            .to_string();
            let event = CloudEvent::parse(body.as_bytes(), None).expect("event");
            let payload = Payload::parse(event.event_type, &event.data).expect("payload");
            Accepted { event, payload }
        })
        .collect();

    let mut scored = 0;
    let mut churn_sum = 0.0;
    let mut scoring = std::time::Duration::ZERO;
    let started = Instant::now();
    for chunk in events.chunks(BATCH) {
        let mut tx = store.begin_intake().await.expect("transaction");
        let now = Utc::now();
        let snapshot = tx.load(&refs_of(chunk, &rules, now)).await.expect("load");
        drop(tx);
        let scoring_started = Instant::now();
        for accepted in chunk {
            if let Some(a) = assess_event(accepted, &snapshot, &model, now) {
                scored += 1;
                churn_sum += a.churn.probability;
            }
        }
        scoring += scoring_started.elapsed();
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(scored, n, "every event has a customer");
    println!(
        "risk: {n} delay notices scored with history loaded per {BATCH}-event batch: {:.0} scores/s \
         ({:.1} s; mean churn {:.3})",
        n as f64 / elapsed,
        elapsed,
        churn_sum / n as f64
    );
    println!(
        "risk: scoring alone on loaded history: {:.0} scores/s (features + both models)",
        n as f64 / scoring.as_secs_f64()
    );
}
