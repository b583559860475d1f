//! One-click unsubscribe (RFC 8058) at `{http.public_url}/u/{token}`, for the links marketing
//! mail carries in `List-Unsubscribe` and templates in `links.unsubscribe`:
//!
//! - `POST` with the body `List-Unsubscribe=One-Click` (form-urlencoded or multipart), as a
//!   mailbox provider sends it → the opt-out is recorded, 200. No cookie, no sign-in, no
//!   redirect: the provider posts once and reads the status.
//! - `GET`, a person who clicked the link → a short page in their language whose button posts
//!   the same body. Nothing changes on a `GET`: link scanners open every link in a message.
//!
//! A token that does not verify (edited, or signed with another secret) is 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::HttpState;
use crate::domain::{Channel, Customer, OptOutScope};
use crate::feedback::Unsubscription;

pub(super) async fn page(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let Some(asked) = read(&state, &token) else {
        return not_valid();
    };
    let (language, words) = words_for(&state, &asked).await;
    let what = words.what(asked.channel, asked.scope);
    page_response(
        StatusCode::OK,
        language,
        &words.question.replace("{what}", what),
        &format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
             value=\"One-Click\"><button type=\"submit\">{}</button></form>",
            words.button
        ),
    )
}

pub(super) async fn one_click(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(asked) = read(&state, &token) else {
        return not_valid();
    };
    if !asks_one_click(&headers, &body) {
        return (
            StatusCode::BAD_REQUEST,
            "the body must be List-Unsubscribe=One-Click (RFC 8058)\n",
        )
            .into_response();
    }
    if let Err(e) = state.feedback.unsubscribe(&asked).await {
        tracing::warn!(error = %e, "Could not record a one-click unsubscribe; the sender retries.");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the unsubscribe could not be recorded; try again\n",
        )
            .into_response();
    }
    let (language, words) = words_for(&state, &asked).await;
    let what = words.what(asked.channel, asked.scope);
    page_response(
        StatusCode::OK,
        language,
        &words.done.replace("{what}", what),
        "",
    )
}

fn read(state: &HttpState, token: &str) -> Option<Unsubscription> {
    state.unsubscribe.as_ref()?.read(token)
}

/// Whether the body is RFC 8058's `List-Unsubscribe=One-Click`, as a form or as multipart.
fn asks_one_click(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        // The one field's part: its name, a blank line, then its value.
        let text = String::from_utf8_lossy(body);
        return text
            .split("name=\"List-Unsubscribe\"")
            .nth(1)
            .and_then(|part| part.split_once("\r\n\r\n"))
            .is_some_and(|(_, value)| value.starts_with("One-Click"));
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).is_ok_and(|pairs| {
        pairs
            .iter()
            .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
    })
}

/// The page's language and words for the customer a link names.
async fn words_for(state: &HttpState, asked: &Unsubscription) -> (&'static str, Words) {
    let language = language_of(state, asked).await;
    (language, Words::of(language))
}

/// The customer's language, for the page: Korean for a Korean record, else English.
async fn language_of(state: &HttpState, asked: &Unsubscription) -> &'static str {
    let doc = state
        .feedback
        .customer(&asked.customer_id)
        .await
        .ok()
        .flatten();
    let korean = doc
        .and_then(|doc| Customer::from_doc(&doc).ok())
        .and_then(|c| c.locale)
        .is_some_and(|l| l.language() == "ko");
    if korean {
        "ko"
    } else {
        "en"
    }
}

/// The page's words in one language.
struct Words {
    question: &'static str,
    button: &'static str,
    done: &'static str,
    /// Indexed by `what`.
    kinds: [&'static str; 6],
}

impl Words {
    fn of(language: &str) -> Words {
        if language == "ko" {
            Words {
                question: "{what} 더 이상 받지 않으시겠어요?",
                button: "수신 거부",
                done: "수신 거부되었어요. 이제 {what} 보내 드리지 않아요.",
                // Each with its object particle: 를 after a vowel, 을 after a consonant.
                kinds: [
                    "마케팅 문자를",
                    "문자 안내를",
                    "마케팅 이메일을",
                    "이메일 안내를",
                    "마케팅 알림을",
                    "앱 알림을",
                ],
            }
        } else {
            Words {
                question: "Stop receiving {what} from us?",
                button: "Unsubscribe",
                done: "You are unsubscribed: we will send you no more {what}.",
                kinds: [
                    "marketing text messages",
                    "text messages",
                    "marketing e-mail",
                    "e-mail",
                    "marketing notifications",
                    "notifications",
                ],
            }
        }
    }

    fn what(&self, channel: Channel, scope: OptOutScope) -> &'static str {
        let row = match channel {
            Channel::Sms => 0,
            Channel::Email => 2,
            Channel::Push => 4,
        };
        self.kinds[row + usize::from(scope == OptOutScope::All)]
    }
}

fn page_response(status: StatusCode, language: &str, heading: &str, form: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"{language}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{heading}</title></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; \
         padding: 0 1rem; line-height: 1.5\"><main><h1 style=\"font-size: 1.4rem\">{heading}</h1>\
         {form}</main></body></html>\n"
    );
    // Never cached or framed: the page acts for one customer.
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(body),
    )
        .into_response()
}

fn not_valid() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        "en",
        "This unsubscribe link is not valid. Use the link in the message as it arrived.",
        "",
    )
}
