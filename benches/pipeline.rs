//! Decisions per second of the pure pipeline (rule match, channel choice, render, key), with
//! no database or broker: `cargo bench --bench pipeline`. `BENCH_EVENTS` (default 20000).

/// The allocator the `forewarn` binary runs on (`src/main.rs`), so this is measured as it runs.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::Instant;

use chrono::Utc;
use forewarn::config::Settings;
use forewarn::domain::Accepted;
use forewarn::domain::{CloudEvent, CustomerDoc, CustomerId, Payload};
use forewarn::pipeline::{decide, refs_of, Deciding};
use forewarn::store::Snapshot;
use serde_json::json;

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut settings = Settings::default();
    settings.paths.rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules").into();
    settings.paths.templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into();
    let authoring = forewarn::cli::load_authoring(&settings).expect("rules and templates");
    let events: Vec<Accepted> = (0..n)
        .map(|i| {
            let body = json!({
                "specversion": "1.0", "id": format!("evt-{i}"), "source": "bench",
                "type": "shipment.delayed", "time": "2026-11-23T09:15:00Z",
                "data": {"shipment_id": format!("shp-{i}"), "order_id": format!("ord-{i}"),
                    "customer_id": format!("c-{}", i % 1000), "carrier": "CJ대한통운",
                    "promised_by": "2026-11-25T09:00:00Z", "new_eta": "2026-11-27T09:00:00Z",
                    "alternatives": [{"kind": "pickup", "sku": "SHOE-270", "name": "러닝화 270",
                        "store": {"id": "st-12", "name": "강남점", "address": "서울 강남구 테헤란로 1"}}]}
            })
            .to_string();
            let event = CloudEvent::parse(body.as_bytes(), None).expect("event");
            let payload = Payload::parse(event.event_type, &event.data).expect("payload");
            Accepted { event, payload }
        })
        .collect();
    let mut snapshot = Snapshot::default();
    for i in 0..1000 {
        let doc = json!({"id": format!("c-{i}"), "name": "김지수", "locale": "ko-KR",
            "timezone": "Asia/Seoul", "phone": format!("+8210{i:08}"), "channels": ["sms", "email"],
            "email": format!("c{i}@example.com")});
        snapshot.customers.insert(
            CustomerId::parse(&format!("c-{i}")).expect("id"),
            CustomerDoc::from_object(doc.as_object().expect("object").clone()),
        );
    }
    let refs: Vec<&Accepted> = events.iter().collect();
    let _ = refs_of(refs.iter().copied(), &authoring.rules, Utc::now());
    let started = Instant::now();
    let mut queued = 0;
    for chunk in refs.chunks(1000) {
        let plan = decide(
            chunk,
            snapshot.clone(),
            &Deciding::new(&authoring, &forewarn::policy::Policy::none(), Utc::now()),
        );
        queued += plan.changes.outreach.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("pipeline: {n} shipment.delayed events decided and rendered in {elapsed:.3} s = {:.0} events/s ({queued} outreach)", n as f64 / elapsed);
}
