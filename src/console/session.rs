//! Console sessions and CSRF tokens, kept in a signed cookie rather than in the process: any
//! forewarn process that knows the same sign-in token reads a session another one issued, so
//! the console scales out with the rest.
//!
//! The cookie is `v1.<expires>.<who>.<nonce>.<mac>`: when it ends (Unix seconds), who signed in
//! (base64url), a random nonce, and an HMAC-SHA256 over the rest under a key derived from the
//! sign-in token — so changing the token signs everyone out. Each form carries a CSRF token, an
//! HMAC of the session's nonce: a page of another site can neither read it nor (SameSite=Strict)
//! send the cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::hmac;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "forewarn_console";
/// The format version at the head of a cookie.
const VERSION: &str = "v1";
/// The longest name kept for the audit log.
pub(super) const MAX_WHO: usize = 80;

/// Someone signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The name they gave at sign-in, for the audit log.
    pub who: String,
    /// When the session ends.
    pub expires: DateTime<Utc>,
    nonce: String,
}

/// Issues and reads sessions for one sign-in token.
pub struct SessionKeys {
    token_digest: [u8; 32],
    key: hmac::Key,
    ttl: chrono::Duration,
    /// Whether cookies are marked `Secure` (the console is reached over HTTPS).
    secure: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys for `token`; sessions last `ttl`.
    pub fn new(token: &str, ttl: std::time::Duration, secure: bool) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()),
            b"forewarn console session v1",
        );
        SessionKeys {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12)),
            secure,
        }
    }

    /// Whether `given` is the sign-in token. Digests are compared, so the time taken says
    /// nothing about the token.
    pub fn token_matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given == self.token_digest
    }

    /// A new session for `who`, and the `Set-Cookie` value that carries it.
    pub fn issue(&self, who: &str, now: DateTime<Utc>) -> (Session, String) {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random numbers");
        let session = Session {
            who: who.chars().take(MAX_WHO).collect(),
            // Whole seconds, as the cookie carries it.
            expires: DateTime::from_timestamp((now + self.ttl).timestamp(), 0).unwrap_or(now),
            nonce: hex::encode(nonce),
        };
        let signed = format!(
            "{VERSION}.{}.{}.{}",
            session.expires.timestamp(),
            URL_SAFE_NO_PAD.encode(session.who.as_bytes()),
            session.nonce
        );
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signed.as_bytes()));
        let cookie = self.cookie(&format!("{signed}.{mac}"), self.ttl.num_seconds());
        (session, cookie)
    }

    /// The session a cookie value carries, if it is ours, unaltered and not expired.
    pub fn read(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (signed, mac) = value.rsplit_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        hmac::verify(&self.key, signed.as_bytes(), &mac).ok()?;
        let mut fields = signed.split('.');
        let (Some(VERSION), Some(expires), Some(who), Some(nonce), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return None;
        };
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        if expires <= now {
            return None;
        }
        Some(Session {
            who: String::from_utf8(URL_SAFE_NO_PAD.decode(who).ok()?).ok()?,
            expires,
            nonce: nonce.to_owned(),
        })
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn cleared(&self) -> String {
        self.cookie("", 0)
    }

    /// The CSRF token of `session`'s forms.
    pub fn csrf(&self, session: &Session) -> String {
        let mac = hmac::sign(&self.key, format!("csrf.{}", session.nonce).as_bytes());
        URL_SAFE_NO_PAD.encode(mac)
    }

    /// Whether `given` is `session`'s CSRF token.
    pub fn csrf_matches(&self, session: &Session, given: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        hmac::verify(
            &self.key,
            format!("csrf.{}", session.nonce).as_bytes(),
            &given,
        )
        .is_ok()
    }

    fn cookie(&self, value: &str, max_age: i64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; \
             SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(super) fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(
            "a-sign-in-token",
            std::time::Duration::from_secs(3600),
            false,
        )
    }

    fn value(cookie: &str) -> &str {
        let first = cookie.split(';').next().unwrap();
        first.split_once('=').unwrap().1
    }

    #[test]
    fn a_session_reads_back_until_it_expires() {
        let keys = keys();
        let now = Utc::now();
        let (session, cookie) = keys.issue("Min-ji (on call)", now);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"), "{cookie}");
        let read = keys.read(value(&cookie), now).unwrap();
        assert_eq!(read, session);
        assert_eq!(read.who, "Min-ji (on call)");
        assert_eq!(
            keys.read(value(&cookie), now + chrono::Duration::hours(2)),
            None
        );
    }

    #[test]
    fn an_altered_cookie_or_another_tokens_cookie_is_not_a_session() {
        let keys = keys();
        let now = Utc::now();
        let (_, cookie) = keys.issue("ops", now);
        let original = value(&cookie).to_owned();
        for at in 0..original.len() {
            let mut bytes = original.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != original {
                assert_eq!(keys.read(&altered, now), None, "altered at {at}: {altered}");
            }
        }
        let other = SessionKeys::new("another-token", std::time::Duration::from_secs(3600), true);
        assert_eq!(other.read(&original, now), None);
        assert!(other.issue("ops", now).1.contains("; Secure"));
    }

    #[test]
    fn a_csrf_token_belongs_to_its_session() {
        let keys = keys();
        let now = Utc::now();
        let (mine, _) = keys.issue("ops", now);
        let (theirs, _) = keys.issue("ops", now);
        let token = keys.csrf(&mine);
        assert!(keys.csrf_matches(&mine, &token));
        assert!(!keys.csrf_matches(&theirs, &token));
        assert!(!keys.csrf_matches(&mine, ""));
        assert!(keys.token_matches("a-sign-in-token"));
        assert!(!keys.token_matches("a-sign-in-toke"));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; forewarn_console=v1.x; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("v1.x"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
