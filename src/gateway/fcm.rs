//! Push through Firebase Cloud Messaging's HTTP v1 API.
//!
//! Auth is OAuth2's JWT-bearer grant: a JWT signed (RS256) with the service account's private
//! key is exchanged at the key file's `token_uri` for an access token, cached until a minute
//! before it expires. Each device token gets one
//! `POST {base_url}/v1/projects/{project}/messages:send` with
//! `{"message": {"token", "notification": {"title", "body"}, "data": {"outreach_key"}}}`.
//! `UNREGISTERED` (404) means the app was removed: the token is dropped from the customer.
//!
//! The JWT is signed with *ring*, which the process already carries for TLS, rather than a JWT
//! crate that would bring a second RSA implementation; it is three base64url parts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::http::{client, exchange, passing, retry_after};
use super::{AddressEffect, Gateway, OutboundMessage, Receipt, SendOutcome};
use crate::domain::MessageContent;

/// `[gateways.push] kind = "fcm"`. Credentials come from a service-account key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// API root.
    #[serde(default = "FcmConfig::default_base_url")]
    pub base_url: String,
    /// The Firebase project.
    pub project_id: String,
    /// The service-account JSON key file (its `token_uri` is where tokens are fetched).
    pub credentials_file: PathBuf,
    /// A request not answered in this time is retried.
    #[serde(
        default = "crate::gateway::settings::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
}

impl FcmConfig {
    fn default_base_url() -> String {
        "https://fcm.googleapis.com".into()
    }
}

/// The OAuth scope FCM sends need.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Renew a cached access token this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The fields of a service-account key file forewarn uses.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: String,
}

/// The FCM gateway.
pub struct FcmGateway {
    http: reqwest::Client,
    send_url: String,
    account: ServiceAccount,
    key: RsaKeyPair,
    token: Mutex<Option<(String, Instant)>>,
}

impl FcmGateway {
    /// Reads and checks the key file.
    pub fn new(config: &FcmConfig) -> Result<Self, String> {
        let file = config.credentials_file.display();
        let text = std::fs::read_to_string(&config.credentials_file)
            .map_err(|e| format!("cannot read the FCM credentials file {file}: {e}"))?;
        let account: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| format!("{file} is not a service-account key file: {e}"))?;
        let key = RsaKeyPair::from_pkcs8(&pem_body(&account.private_key)?)
            .map_err(|e| format!("{file}: the private key is not a PKCS#8 RSA key: {e}"))?;
        Ok(FcmGateway {
            http: client(config.timeout)?,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                config.base_url.trim_end_matches('/'),
                config.project_id
            ),
            account,
            key,
            token: Mutex::new(None),
        })
    }

    /// The signed assertion for the token exchange.
    fn assertion(&self) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.account.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "cannot sign the FCM token request".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// A valid access token, from the cache or a fresh exchange.
    async fn access_token(&self) -> Result<String, SendOutcome> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let assertion = self.assertion().map_err(SendOutcome::reject)?;
        let reply = exchange(self.http.post(&self.account.token_uri).form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ]))
        .await
        // The message itself has not gone out: nothing can arrive twice.
        .map_err(|outcome| match outcome {
            SendOutcome::Unanswered { reason } => SendOutcome::Retry {
                after: None,
                reason,
            },
            other => other,
        })?;
        let (status, headers) = (reply.status, &reply.headers);
        let body: Value = serde_json::from_str(reply.text()).unwrap_or_default();
        if !status.is_success() {
            let reason = format!(
                "fcm token exchange HTTP {}: {}",
                status.as_u16(),
                body.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no detail")
            );
            // A refused grant (bad key, wrong clock) does not heal by itself, but the
            // message is not at fault: let it wait for an operator within its retry budget.
            return Err(SendOutcome::Retry {
                after: retry_after(headers),
                reason,
            });
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SendOutcome::Retry {
                after: None,
                reason: "fcm token exchange gave no access_token".into(),
            })?
            .to_owned();
        let lifetime = Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(3600),
        );
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
        ));
        Ok(token)
    }
}

/// The DER inside a PEM block.
fn pem_body(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("the private key is not PEM: {e}"))
}

/// FCM's answer for one device token.
#[derive(Debug, PartialEq)]
enum DeviceOutcome {
    Sent(String),
    Gone,
    Failed(SendOutcome),
}

/// 200 is sent (`name` is the message id); `UNREGISTERED` means the token is gone;
/// `INVALID_ARGUMENT` and `SENDER_ID_MISMATCH` are final; 429, 5xx and `UNAVAILABLE` /
/// `INTERNAL` pass; 401 means the cached token died and is retried with a new one.
fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> DeviceOutcome {
    let json: Value = serde_json::from_str(body).unwrap_or_default();
    if status.is_success() {
        let name = json.get("name").and_then(Value::as_str).unwrap_or_default();
        return DeviceOutcome::Sent(name.to_owned());
    }
    let code = json
        .pointer("/error/details")
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find_map(|x| x.get("errorCode").and_then(Value::as_str))
        })
        .or_else(|| json.pointer("/error/status").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned();
    let reason = format!("fcm HTTP {} {code}", status.as_u16());
    match code.as_str() {
        "UNREGISTERED" => DeviceOutcome::Gone,
        "INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" => {
            DeviceOutcome::Failed(SendOutcome::reject(reason))
        }
        "UNAVAILABLE" | "INTERNAL" | "QUOTA_EXCEEDED" => {
            DeviceOutcome::Failed(SendOutcome::Retry {
                after: retry_after(headers),
                reason,
            })
        }
        _ if passing(status) || status == StatusCode::UNAUTHORIZED => {
            DeviceOutcome::Failed(SendOutcome::Retry {
                after: retry_after(headers),
                reason,
            })
        }
        _ => DeviceOutcome::Failed(SendOutcome::reject(reason)),
    }
}

#[async_trait]
impl Gateway for FcmGateway {
    fn name(&self) -> &str {
        "fcm"
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> SendOutcome {
        let MessageContent::Push { to, title, body } = message.content else {
            return SendOutcome::reject(format!(
                "fcm sends push, not {}",
                message.content.channel()
            ));
        };
        let access = match self.access_token().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let mut sent = Vec::new();
        let mut gone = Vec::new();
        let mut failure = None;
        for token in to {
            let request = json!({"message": {
                "token": token,
                "notification": {"title": title, "body": body},
                "data": {"outreach_key": message.key.as_str(), "rule": message.rule_id},
            }});
            let request = self
                .http
                .post(&self.send_url)
                .bearer_auth(&access)
                .json(&request);
            let outcome = match exchange(request).await {
                Ok(reply) => {
                    if reply.status == StatusCode::UNAUTHORIZED {
                        // The cached token was revoked early: fetch a new one next time.
                        *self.token.lock().await = None;
                    }
                    classify(reply.status, &reply.headers, reply.text())
                }
                Err(outcome) => DeviceOutcome::Failed(outcome),
            };
            match outcome {
                DeviceOutcome::Sent(name) => sent.push(name),
                DeviceOutcome::Gone => gone.push(token.clone()),
                DeviceOutcome::Failed(outcome) => failure = Some(outcome),
            }
        }
        // One device reached is the message delivered: resending would repeat it there.
        match (sent.is_empty(), failure) {
            (false, _) => SendOutcome::Sent(Receipt {
                provider_id: sent.join(" "),
            }),
            (true, Some(SendOutcome::Retry { after, reason })) => {
                SendOutcome::Retry { after, reason }
            }
            (true, Some(SendOutcome::Unanswered { reason })) => SendOutcome::Unanswered { reason },
            (true, Some(SendOutcome::Reject { reason, .. })) => SendOutcome::Reject {
                reason,
                effect: (!gone.is_empty()).then_some(AddressEffect::Gone(gone)),
            },
            (true, _) => SendOutcome::Reject {
                reason: "fcm: every device token is unregistered".into(),
                effect: (!gone.is_empty()).then_some(AddressEffect::Gone(gone)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn outcome(status: u16, body: &str) -> DeviceOutcome {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        )
    }

    #[test]
    fn fcm_errors_are_read_from_their_details() {
        assert_eq!(
            outcome(200, r#"{"name":"projects/p/messages/1"}"#),
            DeviceOutcome::Sent("projects/p/messages/1".into())
        );
        let unregistered = r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(outcome(404, unregistered), DeviceOutcome::Gone);
        assert!(matches!(
            outcome(400, r#"{"error":{"status":"INVALID_ARGUMENT"}}"#),
            DeviceOutcome::Failed(SendOutcome::Reject { .. })
        ));
        assert!(matches!(
            outcome(
                403,
                r#"{"error":{"details":[{"errorCode":"SENDER_ID_MISMATCH"}]}}"#
            ),
            DeviceOutcome::Failed(SendOutcome::Reject { .. })
        ));
        assert!(matches!(
            outcome(503, r#"{"error":{"status":"UNAVAILABLE"}}"#),
            DeviceOutcome::Failed(SendOutcome::Retry { .. })
        ));
        assert!(matches!(
            outcome(401, ""),
            DeviceOutcome::Failed(SendOutcome::Retry { .. })
        ));
    }
}
