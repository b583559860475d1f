//! SMS through Twilio's Messages API.
//!
//! `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic (account SID,
//! auth token), form fields `To`, `From`, `Body` and `StatusCallback` when configured; 201 with
//! the message `sid` when accepted. Errors carry Twilio's own `code`, which says more than the
//! HTTP status: see [`classify`].

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::http::{client, exchange, passing, retry_after, transport_failure};
use super::{AddressEffect, Gateway, OutboundMessage, Receipt, SendOutcome};
use crate::domain::MessageContent;
use crate::http::PublicUrl;
use crate::secrets::secret_from_env;

/// `[gateways.sms] kind = "twilio"`. The auth token is read from the environment variable
/// named by `auth_token_env`, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API root; tests and staging point it at a local server.
    #[serde(default = "TwilioConfig::default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`): not a secret, it names the account in the URL.
    pub account_sid: String,
    /// Name of the environment variable holding the auth token.
    #[serde(default = "TwilioConfig::default_token_env")]
    pub auth_token_env: String,
    /// Sender: an E.164 number or a messaging service's number.
    pub from: String,
    /// URL Twilio posts delivery status to. Default: `{http.public_url}/v1/receipts/twilio`
    /// when `public_url` is set, where forewarn records them; set this only to send receipts
    /// somewhere else.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// A request not answered in this time is retried.
    #[serde(
        default = "crate::gateway::settings::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl TwilioConfig {
    fn default_base_url() -> String {
        "https://api.twilio.com".into()
    }
    fn default_token_env() -> String {
        "TWILIO_AUTH_TOKEN".into()
    }
}

/// Twilio error codes that pass: 20429 (too many requests), 30003 (handset unreachable).
const PASSING_CODES: [u64; 2] = [20429, 30003];

/// The Twilio gateway.
pub struct TwilioGateway {
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    from: String,
    status_callback: Option<String>,
}

impl TwilioGateway {
    /// Reads the auth token from the environment variable the config names; receipts are asked
    /// for at `config.status_callback`, else at forewarn's own endpoint under `public_url`.
    pub fn new(config: &TwilioConfig, public_url: Option<&PublicUrl>) -> Result<Self, String> {
        let auth_token = secret_from_env("Twilio auth token", &config.auth_token_env)?;
        Ok(TwilioGateway {
            http: client(config.timeout)?,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                config.base_url.trim_end_matches('/'),
                config.account_sid
            ),
            account_sid: config.account_sid.clone(),
            auth_token,
            from: config.from.clone(),
            status_callback: config
                .status_callback
                .clone()
                .or_else(|| public_url.map(|base| base.join(crate::feedback::twilio::STATUS_PATH))),
        })
    }
}

/// The parts of Twilio's answer forewarn reads.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    sid: Option<String>,
    code: Option<u64>,
}

/// What an answer means. Twilio's `code` decides before the HTTP status: 20429 and 30003
/// pass; 21211 (invalid number), 21610 (the recipient replied STOP), 21612 and 21614 (number
/// cannot receive SMS) and every other 4xx are final; 429 and 5xx pass, honouring
/// `Retry-After`. A 401 (code 20003) is final too: no retry fixes a wrong token, and the
/// reason says so in words an operator acts on.
fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> SendOutcome {
    let answer: Answer = serde_json::from_str(body).unwrap_or_default();
    if status.is_success() {
        return match answer.sid {
            Some(sid) => SendOutcome::Sent(Receipt { provider_id: sid }),
            // Accepted without an id is not something to resend blindly; record it.
            None => SendOutcome::Sent(Receipt {
                provider_id: String::new(),
            }),
        };
    }
    // Twilio's messages can quote the number; the reason is stored, so keep only our words.
    let reason = match answer.code {
        Some(code) => format!(
            "twilio {code} (HTTP {}): {}",
            status.as_u16(),
            describe(code)
        ),
        None => format!("twilio HTTP {}", status.as_u16()),
    };
    match answer.code {
        Some(code) if PASSING_CODES.contains(&code) => SendOutcome::Retry {
            after: retry_after(headers),
            reason,
        },
        _ if passing(status) => SendOutcome::Retry {
            after: retry_after(headers),
            reason,
        },
        // The recipient replied STOP: Twilio will refuse this number from now on.
        Some(21610) => SendOutcome::Reject {
            reason,
            effect: Some(AddressEffect::OptedOut),
        },
        _ => SendOutcome::reject(reason),
    }
}

/// Twilio's codes in words (https://www.twilio.com/docs/api/errors), without personal data.
pub(crate) fn describe(code: u64) -> &'static str {
    match code {
        20003 => "authentication failed: check the account SID and auth token",
        20429 => "too many requests",
        21211 => "the To number is not a valid phone number",
        21408 => "the account may not send to this region",
        21610 => "the recipient has unsubscribed (replied STOP)",
        21612 => "the To number cannot be reached from this From number",
        21614 => "the To number is not a mobile number",
        30003 => "the handset is unreachable",
        30004 => "the message was blocked (the recipient or their carrier refuses it)",
        30005 => "the number is unknown or no longer exists",
        30006 => "the number is a landline or its carrier cannot take SMS",
        30007 => "the carrier filtered the message",
        30008 => "the carrier could not deliver it, for a reason it did not give",
        _ => "see Twilio's error reference",
    }
}

#[async_trait]
impl Gateway for TwilioGateway {
    fn name(&self) -> &str {
        "twilio"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let MessageContent::Sms { to, body } = message.content else {
            return SendOutcome::reject(format!(
                "twilio sends SMS, not {}",
                message.content.channel()
            ));
        };
        let mut form = vec![("To", to.as_str()), ("From", &self.from), ("Body", body)];
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback));
        }
        let request = self
            .http
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form);
        let reply = match exchange(request).await {
            Ok(reply) => reply,
            Err(outcome) => return outcome,
        };
        match &reply.body {
            Ok(text) => classify(reply.status, &reply.headers, text),
            Err(e) if reply.status.is_success() => {
                // Accepted, but the body was lost: it was sent; say so without an id.
                tracing::warn!(error = %e, "Twilio accepted a message but its answer was cut off");
                SendOutcome::Sent(Receipt {
                    provider_id: String::new(),
                })
            }
            Err(e) => transport_failure(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::Duration;

    use super::*;

    fn outcome(status: u16, body: &str) -> SendOutcome {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        )
    }

    #[test]
    fn a_201_with_a_sid_is_sent() {
        assert_eq!(
            outcome(201, r#"{"sid":"SM123","status":"queued"}"#),
            SendOutcome::Sent(Receipt {
                provider_id: "SM123".into()
            })
        );
    }

    #[test]
    fn passing_codes_and_statuses_are_retried_and_final_ones_are_not() {
        for (status, body) in [
            (429, r#"{"code":20429,"message":"Too Many Requests"}"#),
            (400, r#"{"code":30003,"message":"Unreachable"}"#),
            (500, "oops"),
            (503, ""),
        ] {
            assert!(
                matches!(outcome(status, body), SendOutcome::Retry { .. }),
                "{status} {body}"
            );
        }
        for (status, body) in [
            (
                400,
                r#"{"code":21211,"message":"The 'To' number +15005550001 is not valid"}"#,
            ),
            (
                400,
                r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient"}"#,
            ),
            (400, r#"{"code":21612}"#),
            (400, r#"{"code":21614}"#),
            (404, ""),
            (401, r#"{"code":20003}"#),
        ] {
            assert!(
                matches!(outcome(status, body), SendOutcome::Reject { .. }),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn reasons_never_quote_the_number_twilio_put_in_its_message() {
        let SendOutcome::Reject { reason, effect } = outcome(
            400,
            r#"{"code":21211,"message":"The 'To' number +15005550001 is not a valid phone number."}"#,
        ) else {
            panic!("not a reject")
        };
        assert_eq!(
            reason,
            "twilio 21211 (HTTP 400): the To number is not a valid phone number"
        );
        assert_eq!(effect, None);
        let SendOutcome::Reject { effect, .. } = outcome(400, r#"{"code":21610}"#) else {
            panic!("not a reject")
        };
        assert_eq!(effect, Some(AddressEffect::OptedOut));
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let SendOutcome::Retry { after, .. } =
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, "")
        else {
            panic!("not a retry")
        };
        assert_eq!(after, Some(Duration::from_secs(2)));
    }
}
