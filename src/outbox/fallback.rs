//! Channel fallback: when a channel fails for good, the outreach moves to the rule's next
//! usable channel, rendered there from the stored event and the customer as they stand now.
//!
//! Rendering happens here, at fallback time, rather than for every channel at decision time:
//! fallbacks are rare, and rendering each message two or three times would halve intake for
//! nothing. The offer travels with the outreach, so the customer sees the same code.

use std::sync::Arc;

use chrono::Utc;

use crate::authoring::AuthoringHandle;
use crate::domain::Customer;
use crate::pipeline::channel_refusal;
use crate::render::{event_tracking_link, render_on, RenderInput};
use crate::store::{ChannelSwitch, ClaimedMessage, Store};

/// Finds and renders an outreach's next channel.
#[derive(Clone)]
pub struct Fallback {
    store: Arc<dyn Store>,
    authoring: AuthoringHandle,
}

impl Fallback {
    /// Uses the rules and templates in force (a reload applies to fallbacks at once).
    pub fn new(store: Arc<dyn Store>, authoring: AuthoringHandle) -> Self {
        Fallback { store, authoring }
    }

    /// The next channel of `message` that can carry it now, rendered; `Ok(None)` when none
    /// is left, `Err` with the reason when it cannot be worked out.
    pub async fn next(&self, message: &ClaimedMessage) -> Result<Option<ChannelSwitch>, String> {
        if message.fallback.is_empty() {
            return Ok(None);
        }
        let inputs = self
            .store
            .fallback_inputs(&message.event, &message.customer_id)
            .await
            .map_err(|e| format!("fallback: {e}"))?;
        let record = inputs
            .event
            .ok_or("fallback: the event is no longer stored")?;
        let doc = inputs
            .customer
            .ok_or("fallback: the customer is no longer stored")?;
        let authoring = Arc::clone(&self.authoring.borrow());
        let rule = authoring
            .rules
            .by_id(&message.rule_id)
            .ok_or_else(|| format!("fallback: rule `{}` is no longer loaded", message.rule_id))?;
        let accepted = record.accepted().map_err(|e| format!("fallback: {e}"))?;
        let customer = Customer::from_doc(&doc).map_err(|e| format!("fallback: {e}"))?;
        let input = RenderInput {
            rule_id: &rule.id,
            template: &rule.template,
            accepted: &accepted,
            doc: &doc,
            tracking: event_tracking_link(&accepted),
            offer: message.offer.as_ref(),
            risk: message.risk,
            category: message.category,
        };
        for (i, &channel) in message.fallback.iter().enumerate() {
            if let Some(reason) = channel_refusal(
                rule,
                &customer,
                &inputs.opt_outs,
                &authoring.templates,
                channel,
                message.offer.is_some(),
            ) {
                tracing::info!(key = %message.key, %channel, reason, "Fallback channel skipped.");
                continue;
            }
            let (content, locale) = render_on(&input, &customer, channel, &authoring.templates)
                .map_err(|e| format!("fallback to {channel}: {e}"))?;
            tracing::info!(key = %message.key, from = %message.channel, to = %channel, at = %Utc::now(), "Falling back to the next channel.");
            return Ok(Some(ChannelSwitch {
                channel,
                content,
                locale,
                fallback: message.fallback[i + 1..].to_vec(),
            }));
        }
        Ok(None)
    }
}
