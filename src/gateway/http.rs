//! What every HTTP provider shares: one client per gateway, and the reading of answers that
//! mean the same everywhere (transport failures, 429, 5xx, `Retry-After`).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::SendOutcome;

/// A client with `timeout` per request. TLS uses rustls on *ring*, the provider the NATS
/// client already brings (two providers in one process make rustls refuse to choose).
pub(super) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    install_tls_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("forewarn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Makes *ring* the process's TLS provider, for every HTTP client built after (forewarn's
/// gateways, and tools or tests using the library). Already installed is fine.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A provider's reply. A body that could not be read is kept as the error: whether that is a
/// transport failure depends on what the status already said.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Result<String, reqwest::Error>,
}

impl Reply {
    /// The body, or nothing if it could not be read.
    pub(super) fn text(&self) -> &str {
        self.body.as_deref().unwrap_or_default()
    }
}

/// Sends `request`. No answer at all (timeout, connection refused) is a retry.
pub(super) async fn exchange(request: reqwest::RequestBuilder) -> Result<Reply, SendOutcome> {
    let response = request.send().await.map_err(|e| transport_failure(&e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A request that got no answer: always worth another try. Unless it never left (no
/// connection), the provider may have received it.
pub(super) fn transport_failure(error: &reqwest::Error) -> SendOutcome {
    let reason = |what: &str| format!("{what}: {}", without_url(error));
    if error.is_connect() {
        SendOutcome::Retry {
            after: None,
            reason: reason("could not connect"),
        }
    } else if error.is_timeout() {
        SendOutcome::Unanswered {
            reason: reason("timed out"),
        }
    } else {
        SendOutcome::Unanswered {
            reason: reason("request failed"),
        }
    }
}

/// reqwest's message names the URL, which for some providers carries an account id; the
/// attempt log does not need it.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// `Retry-After` in seconds (the form providers use); an HTTP date is read as "no hint".
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Statuses that are passing whatever the provider: 429 (slow down) and 5xx.
pub(super) fn passing(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
