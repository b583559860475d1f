//! `[http]`: where health, metrics and the `/v1/` API listen, the token the API wants, and the
//! URL the outside world reaches them at.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address for `/healthz`, `/readyz` and `/metrics`.
    pub listen: SocketAddr,
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Name of the environment variable holding the bearer token the `/v1/` API (discount
    /// codes) requires. Unset: the API is open to whoever reaches `listen`.
    pub api_token_env: Option<String>,
    /// The base URL providers and customers reach forewarn at from outside
    /// (`https://forewarn.shop.example`), behind whatever proxy serves `listen`. Twilio's
    /// delivery receipts are asked for at `{public_url}/v1/receipts/twilio`, and Twilio signs
    /// the URL it calls, so the signature is checked against this one. Unset: no receipts are
    /// asked for, and the provider endpoints refuse every request.
    pub public_url: Option<PublicUrl>,
    /// Name of the environment variable holding the secret (32 characters or more) one-click
    /// unsubscribe links are signed with; needed when `public_url` is set.
    pub unsubscribe_secret_env: String,
}

/// [`HttpSettings::public_url`]: an absolute `http(s)` URL, kept without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Accepts `https://host[:port][/prefix]`; `http://` too, for local set-ups and tests.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or("must start with https:// (or http://)")?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err("must be a base URL such as https://forewarn.shop.example".into());
        }
        Ok(PublicUrl(trimmed.to_owned()))
    }

    /// The URL of `path` (which starts with `/`) under this base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PublicUrl::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            api_token_env: None,
            public_url: None,
            unsubscribe_secret_env: crate::feedback::UNSUBSCRIBE_SECRET_ENV.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_is_a_base_kept_without_its_trailing_slash() {
        let url = PublicUrl::parse("https://forewarn.shop.example/").unwrap();
        assert_eq!(
            url.join("/v1/receipts/twilio"),
            "https://forewarn.shop.example/v1/receipts/twilio"
        );
        assert_eq!(
            PublicUrl::parse("http://127.0.0.1:8080/forewarn")
                .unwrap()
                .join("/u/x"),
            "http://127.0.0.1:8080/forewarn/u/x"
        );
        for bad in [
            "forewarn.shop.example",
            "https://",
            "https://a.example/?x=1",
            "ftp://a",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
