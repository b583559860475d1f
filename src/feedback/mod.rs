//! ⑧ Feedback: what comes back after a message goes out — the provider's word on whether it
//! arrived, and the customer's answer — and what forewarn does about each.
//!
//! ```text
//!   provider ──receipt──▶ http (signature) ──▶ Feedback::delivery ──▶ attempts.delivery (never backwards)
//!                                                     └─ undelivered / failed ──▶ the rule's next channel, or failed
//!   customer ──reply────▶ http (signature) ──▶ Feedback::reply ──▶ STOP: opt-out · START: opt back in
//!                                                     └─ HELP: the `sms-help` template · anything else: the timeline
//! ```
//! Each provider's wire format and signature live in its own file ([`twilio`], [`sendgrid`]);
//! the rest speaks [`DeliveryReport`], [`OptOutReport`] and [`InboundReply`]. One-click
//! unsubscribe links ([`UnsubscribeLinks`]) are made here and read back by `http`.

mod delivery;
mod replies;
pub mod sendgrid;
pub mod twilio;
mod unsubscribe;

use std::sync::Arc;

use metrics::counter;
use serde_json::json;
use tokio::sync::Notify;

pub use delivery::{DeliveryApplied, DeliveryReport, DeliveryStatus, MessageRef, OptOutReport};
pub use replies::{InboundReply, Keyword};
pub use unsubscribe::{
    UnsubscribeLinks, Unsubscription, DEFAULT_SECRET_ENV as UNSUBSCRIBE_SECRET_ENV,
};

/// Why a provider's request was refused (403), for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `http.public_url`: the URL the provider signed cannot be known.
    #[error("http.public_url is not set, so the URL the provider signed is unknown")]
    NoPublicUrl,
    /// No signature (or timestamp) header.
    #[error("the request is not signed")]
    Unsigned,
    /// The signature does not match what was sent.
    #[error("the signature does not match the request")]
    BadSignature,
    /// Signed too long ago (or in the future): perhaps a replay.
    #[error("the signed timestamp is more than 10 minutes away from now")]
    Stale,
    /// Signed, but for another account.
    #[error("the request is for another account")]
    OtherAccount,
}

use crate::authoring::AuthoringHandle;
use crate::domain::{Channel, Customer, CustomerDoc, OptOutScope};
use crate::metrics as m;
use crate::outbox::Fallback;
use crate::render::Part;
use crate::store::{OptOutRecorded, ReceiptRef, Store, StoreError};

/// The template a HELP reply is answered from: `templates/sms-help/sms[.<locale>].hbs`, given
/// `customer` (the sender's record, when one has the number).
pub const HELP_TEMPLATE: &str = "sms-help";

/// What HELP is answered with when the template is missing or fails: still an answer carriers
/// accept, naming the two keywords that matter.
const HELP_WITHOUT_TEMPLATE: &str =
    "You get delivery and order updates from us by text. Reply STOP to stop them, START to get them again.";

/// Acts on receipts and replies.
#[derive(Clone)]
pub struct Feedback {
    store: Arc<dyn Store>,
    fallback: Fallback,
    authoring: AuthoringHandle,
    /// Woken when a receipt moves an outreach to its next channel, which is due at once.
    dispatcher: Arc<Notify>,
}

impl Feedback {
    /// Uses the rules and templates in force (a reload applies at once).
    pub fn new(
        store: Arc<dyn Store>,
        fallback: Fallback,
        authoring: AuthoringHandle,
        dispatcher: Arc<Notify>,
    ) -> Self {
        Feedback {
            store,
            fallback,
            authoring,
            dispatcher,
        }
    }

    /// Records a receipt. One that says the message will never arrive moves the outreach to
    /// its rule's next usable channel (rendered there now, the same key and discount code), or
    /// fails it when none is left.
    pub async fn delivery(&self, report: &DeliveryReport) -> Result<DeliveryApplied, StoreError> {
        let target = self
            .store
            .delivery_target(report.gateway, &report.message)
            .await?;
        let applied = match target {
            None => DeliveryApplied::Unmatched,
            Some(target) => {
                // Rendered before the transaction, and only when it can matter.
                let switch = if report.status.is_failure()
                    && target.carries
                    && target.moved_by(report.status)
                {
                    match self.fallback.next(&target.message).await {
                        Ok(switch) => switch,
                        Err(reason) => {
                            tracing::error!(key = %target.message.key, %reason, "No fallback channel could be prepared.");
                            None
                        }
                    }
                } else {
                    None
                };
                let applied = self
                    .store
                    .record_delivery(report, &target, switch.as_ref())
                    .await?;
                let message = &target.message;
                if matches!(
                    applied,
                    DeliveryApplied::Recorded
                        | DeliveryApplied::FellBack(_)
                        | DeliveryApplied::Failed
                ) {
                    counter!(m::DELIVERIES, "rule" => message.rule_id.clone(), "channel" => report.channel.as_str(), "status" => report.status.as_str())
                        .increment(1);
                }
                match &applied {
                    DeliveryApplied::FellBack(channel) => {
                        counter!(m::OUTREACH, "rule" => message.rule_id.clone(), "channel" => channel.as_str(), "status" => "fallback")
                            .increment(1);
                        tracing::info!(key = %message.key, from = %report.channel, to = %channel, error = report.error.as_deref().unwrap_or_default(), "Not delivered; moving to the next channel.");
                        self.dispatcher.notify_one();
                    }
                    DeliveryApplied::Failed => {
                        tracing::info!(key = %message.key, channel = %report.channel, error = report.error.as_deref().unwrap_or_default(), "Not delivered, and no channel is left.");
                    }
                    _ => {}
                }
                applied
            }
        };
        counter!(m::RECEIPTS, "gateway" => report.gateway, "result" => applied.as_str())
            .increment(1);
        tracing::debug!(gateway = report.gateway, message = %report.message, status = report.status.as_str(), result = applied.as_str(), "Receipt.");
        Ok(applied)
    }

    /// Records an opt-out a provider reports for the customer of the message it names; `true`
    /// when it changed what the customer receives.
    pub async fn opt_out(&self, report: &OptOutReport) -> Result<bool, StoreError> {
        let target = self
            .store
            .delivery_target(report.gateway, &report.message)
            .await?;
        let recorded = match &target {
            None => None,
            Some(target) => {
                let receipt = ReceiptRef {
                    provider: report.gateway,
                    receipt_id: &report.receipt_id,
                    status: &report.event,
                    target,
                };
                let customer = &target.message.customer_id;
                let recorded = self
                    .store
                    .record_opt_out(
                        customer,
                        report.channel,
                        report.scope,
                        report.at,
                        Some(&receipt),
                    )
                    .await?;
                if recorded == OptOutRecorded::Changed {
                    opted_out(customer, report.channel, report.scope, &report.event);
                }
                Some(recorded)
            }
        };
        let result = match recorded {
            None => "unmatched",
            Some(OptOutRecorded::Changed) => "opted_out",
            Some(OptOutRecorded::Unchanged) => "behind",
            Some(OptOutRecorded::Repeat) => "repeat",
        };
        counter!(m::RECEIPTS, "gateway" => report.gateway, "result" => result).increment(1);
        Ok(recorded == Some(OptOutRecorded::Changed))
    }

    /// Records what a one-click unsubscribe link asked.
    pub async fn unsubscribe(&self, asked: &Unsubscription) -> Result<(), StoreError> {
        let recorded = self
            .store
            .record_opt_out(
                &asked.customer_id,
                asked.channel,
                asked.scope,
                chrono::Utc::now(),
                None,
            )
            .await?;
        if recorded == OptOutRecorded::Changed {
            opted_out(&asked.customer_id, asked.channel, asked.scope, "one_click");
        }
        Ok(())
    }

    /// The customer's record, if known (the language of a page shown to them).
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerDoc>, StoreError> {
        self.store.customer(customer_id).await
    }

    /// Records a reply and does what its keyword asks for every customer with the sender's
    /// number; returns the text to answer with (HELP), if any.
    pub async fn reply(&self, reply: &InboundReply) -> Result<Option<String>, StoreError> {
        let customers = self.store.customers_with_phone(&reply.from).await?;
        let ids: Vec<String> = customers.iter().filter_map(customer_id).collect();
        let keyword = Keyword::of(&reply.body);
        let fresh = self.store.record_reply(reply, keyword, &ids).await?;
        if fresh {
            counter!(m::REPLIES, "channel" => reply.channel.as_str(), "keyword" => keyword.as_str())
                .increment(1);
            if keyword == Keyword::Stop {
                for id in &ids {
                    opted_out(id, reply.channel, OptOutScope::All, "reply");
                }
            }
            tracing::info!(
                from = %crate::telemetry::mask_phone(&reply.from),
                customers = ?ids,
                keyword = keyword.as_str(),
                "Reply received."
            );
        }
        Ok(match keyword {
            Keyword::Help => Some(self.help(customers.first())),
            Keyword::Stop | Keyword::Start | Keyword::Other => None,
        })
    }

    /// The HELP answer in the customer's language.
    fn help(&self, customer: Option<&CustomerDoc>) -> String {
        let authoring = Arc::clone(&self.authoring.borrow());
        let locale = customer
            .and_then(|doc| Customer::from_doc(doc).ok())
            .and_then(|c| c.locale);
        let context = json!({ "customer": customer.map(CustomerDoc::as_value) });
        match authoring
            .templates
            .render(HELP_TEMPLATE, Channel::Sms, locale.as_ref(), context)
        {
            Ok(mut parts) => match parts.take(Part::Sms) {
                Some(text) if !text.trim().is_empty() => text.trim().to_owned(),
                _ => HELP_WITHOUT_TEMPLATE.to_owned(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "HELP answered with the built-in text: the sms-help template could not be rendered.");
                HELP_WITHOUT_TEMPLATE.to_owned()
            }
        }
    }
}

/// Counts and logs an opt-out `source` recorded.
fn opted_out(customer: &str, channel: Channel, scope: OptOutScope, source: &str) {
    counter!(m::OPT_OUTS, "channel" => channel.as_str(), "scope" => scope.as_str(), "source" => source.to_owned())
        .increment(1);
    tracing::info!(customer, %channel, scope = scope.as_str(), source, "Opted out.");
}

fn customer_id(doc: &CustomerDoc) -> Option<String> {
    doc.as_object()
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}
