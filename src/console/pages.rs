//! The console's pages: handlebars templates embedded from `pages/`, rendered with HTML
//! escaping and strict mode (a misspelt field fails the page in tests instead of showing an
//! empty space), inside one layout, with the headers every page carries.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde_json::{json, Value};

use super::session::{Session, SessionKeys};
use super::words::{self, Lang};

/// Each template: its name (pages and partials alike) and its text.
const TEMPLATES: [(&str, &str); 14] = [
    ("layout", include_str!("pages/layout.hbs")),
    ("signin", include_str!("pages/signin.hbs")),
    ("problem", include_str!("pages/problem.hbs")),
    ("today", include_str!("pages/today.hbs")),
    ("rules", include_str!("pages/rules.hbs")),
    ("template", include_str!("pages/template.hbs")),
    ("preview", include_str!("pages/preview.hbs")),
    ("customer", include_str!("pages/customer.hbs")),
    ("incidents", include_str!("pages/incidents.hbs")),
    ("incident_errors", include_str!("pages/incident_errors.hbs")),
    ("start_fields", include_str!("pages/start_fields.hbs")),
    (
        "incident_confirm",
        include_str!("pages/incident_confirm.hbs"),
    ),
    ("incident", include_str!("pages/incident.hbs")),
    ("simulation", include_str!("pages/simulation.hbs")),
];

/// What every page's response carries: nothing from another origin runs or frames it; inline
/// styles are allowed for the e-mail HTML previewed in a sandboxed frame. Framing is refused by
/// `X-Frame-Options` rather than `frame-ancestors`: a `srcdoc` frame inherits the page's policy,
/// and `frame-ancestors 'none'` would blank the e-mail preview too.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: https:; frame-src 'self'; form-action 'self'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// The compiled pages.
pub(super) struct Pages {
    registry: Handlebars<'static>,
}

/// The page a handler answers with, before the layout's parts are added.
pub(super) struct Page<'a> {
    /// The template.
    pub(super) template: &'static str,
    /// Which navigation entry is current.
    pub nav: &'static str,
    /// The `<title>` and `<h1>`.
    pub title: String,
    /// The template's own data, as `page`.
    pub data: Value,
    /// Where the language switch comes back to.
    pub back: &'a str,
}

impl Pages {
    /// Compiles every template; they are part of the binary, so a mistake is a bug caught by
    /// the unit test below.
    pub(super) fn new() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        for (name, text) in TEMPLATES {
            registry
                .register_template_string(name, text)
                .unwrap_or_else(|e| panic!("console page {name}: {e}"));
        }
        Pages { registry }
    }

    /// A whole page.
    pub(super) fn page(
        &self,
        lang: Lang,
        signed: Option<(&Session, &SessionKeys)>,
        status: StatusCode,
        page: Page<'_>,
    ) -> Response {
        let context = json!({
            "t": words::words(lang),
            "lang": lang.as_str(),
            "other_lang": lang.other().as_str(),
            "back": super::url_encoded(page.back),
            "who": signed.map(|(s, _)| s.who.clone()),
            "csrf": signed.map(|(s, keys)| keys.csrf(s)).unwrap_or_default(),
            "nav": page.nav,
            "title": page.title,
            "page": page.data,
        });
        self.respond(status, page.template, &context)
    }

    /// A page that says what went wrong and links back.
    pub(super) fn problem(
        &self,
        lang: Lang,
        signed: Option<(&Session, &SessionKeys)>,
        status: StatusCode,
        message: &str,
        back: &str,
    ) -> Response {
        let page = Page {
            template: "problem",
            nav: "",
            title: words::word(lang, "problem_title").to_owned(),
            data: json!({"message": message, "back": back}),
            back,
        };
        self.page(lang, signed, status, page)
    }

    /// One template on its own with `data` and the words (the preview the script swaps in).
    pub(super) fn fragment(&self, lang: Lang, template: &str, mut data: Value) -> Response {
        data["t"] = words::words(lang).clone();
        self.respond(StatusCode::OK, template, &data)
    }

    fn respond(&self, status: StatusCode, template: &str, context: &Value) -> Response {
        match self.registry.render(template, context) {
            Ok(html) => {
                let mut response = (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html,
                )
                    .into_response();
                for (name, value) in SECURITY_HEADERS {
                    response
                        .headers_mut()
                        .insert(name, HeaderValue::from_static(value));
                }
                response
            }
            Err(e) => {
                tracing::error!(template, error = %e, "A console page failed to render.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the page {template} failed to render: {e}\n"),
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_compiles_and_the_problem_page_renders_in_both_languages() {
        let pages = Pages::new();
        for lang in [Lang::En, Lang::Ko] {
            let response = pages.problem(lang, None, StatusCode::NOT_FOUND, "gone", "/console/");
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            assert_eq!(response.headers()["x-frame-options"], "DENY");
            assert!(response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"));
        }
    }
}
