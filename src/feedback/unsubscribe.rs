//! One-click unsubscribe links (RFC 8058), served by forewarn itself.
//!
//! A link is `{http.public_url}/u/{token}`; the token names a customer, a channel and a scope
//! and is signed with HMAC-SHA256 under a secret from the environment, so it can be neither
//! forged for another customer nor widened from marketing to everything. Nothing else is in
//! it: no address, no cookie, and no lookup table to keep — any forewarn process with the
//! secret reads any link, however old.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use crate::domain::{Channel, OptOutScope};
use crate::http::PublicUrl;
use crate::secrets::secret_from_env;

/// Where the links point, under `http.public_url` (`http` serves `/u/{token}`).
const PATH_PREFIX: &str = "/u/";
/// The environment variable holding the signing secret unless `http.unsubscribe_secret_env`
/// names another.
pub const DEFAULT_SECRET_ENV: &str = "FOREWARN_UNSUBSCRIBE_SECRET";
/// The shortest secret accepted: a guessable key would let anyone unsubscribe anyone.
const MIN_SECRET_LEN: usize = 32;
/// The token's format, first in what is signed: a later format cannot be confused with it.
const VERSION: &str = "1";

/// What a link asks: this customer wants no more of `scope` on `channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscription {
    /// The customer.
    pub customer_id: String,
    /// The channel.
    pub channel: Channel,
    /// `marketing` (the link of a marketing message) or `all`.
    pub scope: OptOutScope,
}

/// Makes and reads the links.
pub struct UnsubscribeLinks {
    key: hmac::Key,
    public_url: PublicUrl,
}

impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeLinks")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl UnsubscribeLinks {
    /// Links under `http.public_url`, signed with the secret in `http.unsubscribe_secret_env`;
    /// `None` without a public URL (nobody outside could follow them). A public URL without
    /// the secret is an error that names the variable.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Option<Self>, String> {
        let Some(public_url) = &settings.http.public_url else {
            return Ok(None);
        };
        let secret = secret_from_env(
            "unsubscribe link secret (http.public_url is set)",
            &settings.http.unsubscribe_secret_env,
        )?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the unsubscribe link secret in {} is shorter than {MIN_SECRET_LEN} characters",
                settings.http.unsubscribe_secret_env
            ));
        }
        Ok(Some(Self::new(secret.as_bytes(), public_url.clone())))
    }

    /// Links under `public_url` signed with `secret`.
    pub fn new(secret: &[u8], public_url: PublicUrl) -> Self {
        UnsubscribeLinks {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            public_url,
        }
    }

    /// The link that unsubscribes `customer_id` from `scope` on `channel`.
    pub fn url(&self, customer_id: &str, channel: Channel, scope: OptOutScope) -> String {
        let token = self.token(customer_id, channel, scope);
        self.public_url.join(&format!("{PATH_PREFIX}{token}"))
    }

    /// The token of [`url`](Self::url): the signed text and its signature, each base64url.
    pub fn token(&self, customer_id: &str, channel: Channel, scope: OptOutScope) -> String {
        let text = format!(
            "{VERSION}\n{}\n{}\n{customer_id}",
            channel.as_str(),
            scope.as_str()
        );
        let tag = hmac::sign(&self.key, text.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(text),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// What `token` asks, if this secret signed it exactly as it stands.
    pub fn read(&self, token: &str) -> Option<Unsubscription> {
        let (text, tag) = token.split_once('.')?;
        let text = URL_SAFE_NO_PAD.decode(text).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, &text, &tag).ok()?;
        let text = String::from_utf8(text).ok()?;
        let mut fields = text.splitn(4, '\n');
        if fields.next()? != VERSION {
            return None;
        }
        let channel = fields.next()?.parse().ok()?;
        let scope = match fields.next()? {
            "marketing" => OptOutScope::Marketing,
            "all" => OptOutScope::All,
            _ => return None,
        };
        let customer_id = fields.next()?.to_owned();
        Some(Unsubscription {
            customer_id,
            channel,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(secret: &[u8]) -> UnsubscribeLinks {
        UnsubscribeLinks::new(
            secret,
            PublicUrl::parse("https://forewarn.example").unwrap(),
        )
    }

    #[test]
    fn a_link_reads_back_as_what_it_was_made_for_and_nothing_else() {
        let links = links(b"a-secret-of-at-least-thirty-two-characters");
        let url = links.url("c-1001", Channel::Email, OptOutScope::Marketing);
        let token = url
            .strip_prefix("https://forewarn.example/u/")
            .expect("under the public URL");
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        assert_eq!(
            links.read(token),
            Some(Unsubscription {
                customer_id: "c-1001".into(),
                channel: Channel::Email,
                scope: OptOutScope::Marketing,
            })
        );

        // Any one character changed is refused.
        for i in 0..token.len() {
            let mut edited: Vec<u8> = token.as_bytes().to_vec();
            edited[i] = if edited[i] == b'A' { b'B' } else { b'A' };
            let edited = String::from_utf8(edited).unwrap();
            if edited != token {
                assert_eq!(links.read(&edited), None, "position {i}");
            }
        }
        // Widened from marketing to all, or moved to another customer, with the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        for text in ["1\nemail\nall\nc-1001", "1\nemail\nmarketing\nc-1002"] {
            let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(text));
            assert_eq!(links.read(&forged), None, "{text:?}");
        }
        // Another secret's link.
        let other = super::tests::links(b"another-secret-of-thirty-two-characters!");
        assert_eq!(other.read(token), None);
    }
}
