//! The demo's last act: what comes back. The carrier's receipt for the first apology, the
//! customer's STOP reply, her next notice going by e-mail because of it, and the outreach
//! events the shop's CRM read on NATS all along.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::listing::{print, Listing};
use super::{settle, EventConsumer};
use crate::cli::output::say;
use crate::cli::run::Running;
use crate::domain::{time_shown, Channel};
use crate::feedback::{DeliveryReport, DeliveryStatus, InboundReply, MessageRef};
use crate::gateway::sandbox_file;
use crate::schedule::{Clock, ManualClock};

/// The customer whose story the demo began with.
const CUSTOMER: &str = "c-1001";
/// What she texts back: STOP, in Korean.
const REPLY: &str = "수신거부";

/// Plays the receipt, the reply and what follows; `outbox` is the sandbox's folder.
#[allow(clippy::too_many_arguments)]
pub(super) async fn close_the_loop(
    running: &Running,
    js: &async_nats::jetstream::Context,
    clock: &ManualClock,
    listing: &mut Listing,
    consumer: &mut EventConsumer,
    outbox: &std::path::Path,
    relay_stream: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let store = running.store();
    let feedback = running.feedback();
    say!("What came back (`forewarn explain --customer {CUSTOMER}` shows each)");

    // The carrier's word on her first SMS: the sandbox took it; now it is on her phone.
    let first = first_sms(outbox, CUSTOMER)?;
    let provider_id = first["provider_id"].as_str().unwrap_or_default().to_owned();
    let phone = first["to"].as_str().unwrap_or_default().to_owned();
    let delivered = DeliveryReport {
        gateway: "sandbox",
        channel: Channel::Sms,
        message: MessageRef::ProviderId(provider_id.clone()),
        receipt_id: format!("{provider_id}/delivered"),
        status: DeliveryStatus::Delivered,
        error: None,
        effect: None,
        at: clock.now(),
    };
    let applied = feedback.delivery(&delivered).await?;
    say!(
        "  receipt   the carrier reports the SMS of rule {} to {} delivered ({})",
        first["rule_id"].as_str().unwrap_or("?"),
        crate::telemetry::mask_phone(&phone),
        applied.as_str()
    );

    // Her answer to it, a moment later.
    clock.advance(super::STEP);
    let reply = InboundReply {
        provider: "sandbox",
        message_id: "demo-reply-1".into(),
        channel: Channel::Sms,
        from: phone.clone(),
        body: REPLY.into(),
        at: clock.now(),
    };
    feedback.reply(&reply).await?;
    let opted_out = store
        .timeline(CUSTOMER, chrono::DateTime::UNIX_EPOCH)
        .await?
        .opt_outs
        .into_iter()
        .filter(|(channel, _, _)| *channel == Channel::Sms)
        .map(|(_, scope, at)| format!("opted out of {} SMS at {}", scope.as_str(), time_shown(at)))
        .collect::<Vec<_>>();
    say!(
        "  reply     customer {CUSTOMER} texts back {REPLY} (STOP): {}",
        opted_out.join(", ")
    );

    // Her next delay notice, after the STOP.
    clock.advance(super::STEP);
    let now = clock.now();
    let delay = json!({
        "specversion": "1.0", "id": "evt-demo-after-stop", "source": "carrier/cj",
        "type": "shipment.delayed", "time": now, "subject": "shp-772",
        "data": {"shipment_id": "shp-772", "order_id": "ord-1002", "customer_id": CUSTOMER,
                 "carrier": "CJ대한통운", "promised_by": now + chrono::Duration::days(1),
                 "new_eta": now + chrono::Duration::days(3)}
    });
    js.publish("events.shipment.delayed", delay.to_string().into())
        .await
        .context("Failed to publish")?
        .await
        .context("JetStream did not acknowledge a published event")?;
    settle(store.as_ref(), consumer, now, deadline).await?;
    let after = listing.new_sent()?;
    say!(
        "  Another parcel of hers runs late: {} message(s), by e-mail — SMS stays off until she \
         replies START:\n",
        after.len()
    );
    for shown in &after {
        print(shown, store.as_ref()).await?;
    }

    // What the shop's CRM read all along.
    let told = outreach_events(js, relay_stream, store.as_ref(), deadline).await?;
    let total: usize = told.values().sum();
    let by_status: Vec<String> = told.iter().map(|(s, n)| format!("{s} {n}")).collect();
    say!(
        "  {total} outreach events published to forewarn.outreach.<status> for the shop's CRM, \
         each once, in order, without a phone number or a word of the messages: {}\n",
        by_status.join(", ")
    );
    Ok(())
}

/// The first SMS the sandbox sent to `customer`.
fn first_sms(outbox: &std::path::Path, customer: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(sandbox_file(outbox, Channel::Sms))?;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)?;
        if record["customer_id"] == customer {
            return Ok(record);
        }
    }
    bail!("the demo sent no SMS to {customer}")
}

/// The outreach events in the stream by status, once the relay caught up: every message sent
/// is told `sent`, and the receipt and the opt-out are there.
async fn outreach_events(
    js: &async_nats::jetstream::Context,
    name: &str,
    store: &dyn crate::store::Store,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut stream = js.get_stream(name).await?;
    let mut seen = 0;
    let mut told: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let last = stream.info().await?.state.last_sequence;
        for seq in seen + 1..=last {
            let message = stream
                .get_raw_message(seq)
                .await
                .map_err(|e| anyhow::anyhow!("Failed to read outreach event {seq}: {e}"))?;
            let event: Value = serde_json::from_slice(&message.payload)?;
            let status = event["data"]["status"].as_str().unwrap_or("?").to_owned();
            *told.entry(status).or_default() += 1;
        }
        seen = last;
        let sent = store.outbox_counts().await?.sent;
        let caught_up = told.get("sent").copied().unwrap_or(0) as u64 >= sent
            && told.contains_key("delivered")
            && told.contains_key("opted_out");
        if caught_up {
            return Ok(told);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for the outreach events");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
