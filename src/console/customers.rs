//! A customer's timeline — what `forewarn explain` prints — with phone numbers, e-mail
//! addresses and the name masked. Revealing them is a form of its own, posted on purpose and
//! logged with who did it and for which customer.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::Page;
use super::words::{channel_word, word};
use super::{Console, Signed};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Find {
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Reveal {
    csrf: String,
    id: String,
}

pub(super) async fn page(
    State(console): State<Console>,
    signed: Signed,
    Query(find): Query<Find>,
) -> Response {
    timeline(&console, &signed, find.id.trim(), false).await
}

pub(super) async fn reveal(
    State(console): State<Console>,
    signed: Signed,
    Form(form): Form<Reveal>,
) -> Response {
    if let Err(refused) = signed.check_csrf(&console, &form.csrf) {
        return *refused;
    }
    let id = form.id.trim();
    tracing::info!(
        target: "forewarn::audit",
        who = %signed.session.who,
        customer = id,
        "Contact details revealed in the console."
    );
    timeline(&console, &signed, id, true).await
}

async fn timeline(console: &Console, signed: &Signed, id: &str, reveal: bool) -> Response {
    let mut data = json!({
        "id": id,
        "searched": !id.is_empty(),
        "timeline": null,
        "consent": "",
        "revealed": if reveal {
            Some(format!("{} {}", word(signed.lang, "revealed_by"), signed.session.who))
        } else {
            None
        },
    });
    if !id.is_empty() {
        let read = console
            .inner
            .store
            .timeline(id, DateTime::<Utc>::MIN_UTC)
            .await;
        let timeline = match read {
            Ok(timeline) => timeline,
            Err(e) => {
                let back = "/console/customers";
                return console.problem(
                    signed,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &e.to_string(),
                    back,
                );
            }
        };
        let shown = timeline.to_json(id, reveal);
        data["consent"] = json!(consent(&shown["record"]["consent"], signed));
        data["timeline"] = shown;
    }
    let page = Page {
        template: "customer",
        nav: "customers",
        title: word(signed.lang, "nav_customers").to_owned(),
        data,
        back: "/console/customers",
    };
    console.page(signed, StatusCode::OK, page)
}

/// `sms ✓ · email ✗ · push — · marketing ✓`
fn consent(consent: &Value, signed: &Signed) -> String {
    ["sms", "email", "push", "marketing"]
        .iter()
        .map(|k| {
            let said = match consent[*k].as_bool() {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "—",
            };
            format!("{} {said}", channel_word(signed.lang, k))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}
