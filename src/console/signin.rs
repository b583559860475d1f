//! Signing in and out, and the language switch.
//!
//! Sign-in exchanges the console token (or the API token) and the name of the person signing
//! in, kept for the audit log, for a session cookie. A wrong token is refused with the same
//! answer whatever was wrong about it, and logged without it.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::pages::Page;
use super::words::{word, Lang, LANG_COOKIE};
use super::{Console, Signed, Visitor};

/// Where a sign-in goes when it was not sent from a page.
const HOME: &str = "/console/today";

#[derive(Debug, Deserialize)]
pub(super) struct Next {
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    who: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Switch {
    #[serde(default)]
    to: String,
    #[serde(default)]
    back: String,
}

pub(super) async fn page(
    State(console): State<Console>,
    visitor: Visitor,
    Query(next): Query<Next>,
) -> Response {
    if visitor.session.is_some() {
        return Redirect::to(inside(&next.next)).into_response();
    }
    form(&console, visitor.lang, StatusCode::OK, &next.next, "", None)
}

pub(super) async fn sign_in(
    State(console): State<Console>,
    visitor: Visitor,
    Form(form_data): Form<SignIn>,
) -> Response {
    let Some(keys) = console.keys() else {
        return form(&console, visitor.lang, StatusCode::NOT_FOUND, "", "", None);
    };
    let who = form_data.who.trim();
    if who.is_empty() {
        let error = word(visitor.lang, "signin_who_missing");
        return form(
            &console,
            visitor.lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_data.next,
            who,
            Some(error),
        );
    }
    if !keys.token_matches(form_data.token.trim()) {
        tracing::warn!(who, "Console sign-in refused: the token does not match.");
        let error = word(visitor.lang, "signin_wrong_token");
        return form(
            &console,
            visitor.lang,
            StatusCode::UNAUTHORIZED,
            &form_data.next,
            who,
            Some(error),
        );
    }
    let (session, cookie) = keys.issue(who, chrono::Utc::now());
    tracing::info!(who = %session.who, "Signed in to the console.");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(inside(&form_data.next)),
    )
        .into_response()
}

pub(super) async fn sign_out(
    State(console): State<Console>,
    signed: Signed,
    Form(form_data): Form<SignOut>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form_data.csrf) {
        return *refused;
    }
    let Some(keys) = console.keys() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tracing::info!(who = %signed.session.who, "Signed out of the console.");
    (
        [(header::SET_COOKIE, keys.cleared())],
        Redirect::to("/console/signin"),
    )
        .into_response()
}

/// Keeps the chosen language in a cookie and goes back to the page it was chosen on.
pub(super) async fn language(Query(switch): Query<Switch>) -> Response {
    let lang = Lang::parse(&switch.to).unwrap_or(Lang::En);
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/console; Max-Age=31536000; SameSite=Lax",
        lang.as_str()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(inside(&switch.back)),
    )
        .into_response()
}

/// The sign-in form (or, without a token configured, the page that says so).
fn form(
    console: &Console,
    lang: Lang,
    status: StatusCode,
    next: &str,
    who: &str,
    error: Option<&str>,
) -> Response {
    let page = Page {
        template: "signin",
        nav: "signin",
        title: word(lang, "sign_in").to_owned(),
        data: json!({
            "configured": console.keys().is_some(),
            "next": inside(next),
            "who": who,
            "error": error,
        }),
        back: "/console/signin",
    };
    console.inner.pages.page(lang, None, status, page)
}

/// `path` if it is a page of the console, else the console's home: a sign-in link cannot send
/// anyone elsewhere.
fn inside(path: &str) -> &str {
    let ours = path.starts_with("/console/") && !path.contains("//") && !path.contains('\\');
    if ours {
        path
    } else {
        HOME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_gone_back_to() {
        assert_eq!(inside("/console/incidents?x=1"), "/console/incidents?x=1");
        for elsewhere in [
            "https://evil.example/",
            "//evil.example",
            "/console//evil",
            "",
            "/metrics",
            "/console/\\evil",
        ] {
            assert_eq!(inside(elsewhere), HOME, "{elsewhere}");
        }
    }
}
