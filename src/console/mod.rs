//! The console: CX teams and on-call in a browser, at `/console/` on `http.listen`.
//!
//! ```text
//!  browser ──▶ session (signed cookie, CSRF per form) ──▶ page handlers ──▶ pages (handlebars,
//!              signin.rs                                  today · rules · customers · incidents
//!                                                              │
//!              store reads, the live rules and templates, the announcer, the dead-letter stream
//! ```
//!
//! Pages are rendered here, in English or Korean (`words`), from templates and assets embedded
//! in the binary: no Node toolchain builds or serves them. The little script there is
//! (`assets/console.js`) only refreshes what the server renders — a template's preview as the
//! author types, an incident's progress as it fans out, a simulation's as it replays — and
//! every page works without it.

mod assets;
mod customers;
mod drafts;
mod incidents;
mod pages;
mod rules;
mod session;
mod settings;
mod signin;
mod simulate;
mod today;
mod words;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

pub use session::{Session, SessionKeys};
pub use settings::ConsoleSettings;
pub use words::Lang;

use crate::authoring::AuthoringHandle;
use crate::config::Settings;
use crate::incident::Announcer;
use crate::policy::Policy;
use crate::store::Store;
use pages::Pages;

/// What the console's handlers read; cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: no sign-in token is configured, and the console serves only the page saying so.
    keys: Option<SessionKeys>,
    settings: Settings,
    policy: Policy,
    store: Arc<dyn Store>,
    authoring: AuthoringHandle,
    announcer: Announcer,
    js: async_nats::jetstream::Context,
    pages: Pages,
    simulations: simulate::Simulations,
}

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The sign-in token's variable is named but not set.
    #[error("{0}")]
    Token(String),
    /// The settings do not give a policy.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What the console is built from.
pub struct ConsoleParts {
    /// All settings (paths, render limits, policy).
    pub settings: Settings,
    /// The database.
    pub store: Arc<dyn Store>,
    /// The rules and templates in use.
    pub authoring: AuthoringHandle,
    /// Publishes announcements.
    pub announcer: Announcer,
    /// For the dead-letter stream.
    pub js: async_nats::jetstream::Context,
}

impl Console {
    /// The keys of the console's sessions, from the token of `[console] token_env`, else of
    /// `http.api_token_env`; `None` when neither is configured. A named variable that is not
    /// set is an error: `run` reads this before it connects to anything, and stops.
    pub fn sign_in_keys(settings: &Settings) -> Result<Option<SessionKeys>, ConsoleError> {
        let variable = settings
            .console
            .token_env
            .as_deref()
            .map(|v| ("console token ([console] token_env)", v))
            .or_else(|| {
                settings
                    .http
                    .api_token_env
                    .as_deref()
                    .map(|v| ("API token (http.api_token_env)", v))
            });
        let Some((what, name)) = variable else {
            return Ok(None);
        };
        let token = crate::secrets::secret_from_env(what, name).map_err(ConsoleError::Token)?;
        let secure = settings
            .http
            .public_url
            .as_ref()
            .is_some_and(|u| u.join("/").starts_with("https://"));
        Ok(Some(SessionKeys::new(
            &token,
            settings.console.session_ttl,
            secure,
        )))
    }

    /// The console of `parts`, signing sessions with `keys` (see [`Console::sign_in_keys`]).
    pub fn new(parts: ConsoleParts, keys: Option<SessionKeys>) -> Result<Self, ConsoleError> {
        let settings = parts.settings;
        Ok(Console {
            inner: Arc::new(Inner {
                keys,
                policy: settings.policy()?,
                settings,
                store: parts.store,
                authoring: parts.authoring,
                announcer: parts.announcer,
                js: parts.js,
                pages: Pages::new(),
                simulations: simulate::Simulations::default(),
            }),
        })
    }

    /// The console's routes, to be nested at `/console`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/console/today") }))
            .route("/signin", get(signin::page).post(signin::sign_in))
            .route("/signout", post(signin::sign_out))
            .route("/language", get(signin::language))
            .route("/assets/{file}", get(assets::serve))
            .route("/today", get(today::page))
            .route("/rules", get(rules::page))
            .route(
                "/templates/{name}",
                get(rules::template).post(rules::template_posted),
            )
            .route("/templates/{name}/save", post(rules::save))
            .route("/api/preview", post(rules::preview_fragment))
            .route("/simulate", post(simulate::run))
            .route("/simulations/{id}", get(simulate::show))
            .route("/api/simulations/{id}", get(simulate::progress))
            .route("/customers", get(customers::page))
            .route("/customers/reveal", post(customers::reveal))
            .route("/incidents", get(incidents::list))
            .route("/incidents/dry-run", post(incidents::dry_run))
            .route("/incidents/announce", post(incidents::announce))
            .route("/incidents/{id}", get(incidents::show))
            .route("/incidents/{id}/update", post(incidents::update))
            .route("/incidents/{id}/resolve", post(incidents::resolve))
            .route("/api/incidents/{id}", get(incidents::progress))
            .with_state(self)
    }

    fn keys(&self) -> Option<&SessionKeys> {
        self.inner.keys.as_ref()
    }

    /// A page for someone signed in.
    fn page(&self, signed: &Signed, status: StatusCode, page: pages::Page<'_>) -> Response {
        let session = self.keys().map(|keys| (&signed.session, keys));
        self.inner.pages.page(signed.lang, session, status, page)
    }

    /// A page saying what went wrong, for someone signed in.
    fn problem(&self, signed: &Signed, status: StatusCode, message: &str, back: &str) -> Response {
        let session = self.keys().map(|keys| (&signed.session, keys));
        self.inner
            .pages
            .problem(signed.lang, session, status, message, back)
    }
}

/// Who is asking, in which language: every page handler takes one.
pub struct Visitor {
    /// The page's language.
    pub lang: Lang,
    /// The session, if signed in.
    pub session: Option<Session>,
    /// The path and query asked for, to come back to after signing in.
    pub path: String,
}

impl<S> FromRequestParts<S> for Visitor
where
    Console: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let console = Console::from_ref(state);
        let session = console.keys().and_then(|keys| {
            session::cookie(&parts.headers, session::SESSION_COOKIE)
                .and_then(|value| keys.read(value, chrono::Utc::now()))
        });
        Ok(Visitor {
            lang: words::choose(&parts.headers),
            session,
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/console/".to_owned(), |p| format!("/console{p}")),
        })
    }
}

/// Someone signed in; handlers that take one serve nobody else. A page asked for without a
/// session goes to the sign-in page and comes back; anything else is refused with 401.
pub struct Signed {
    /// The page's language.
    pub lang: Lang,
    /// The session.
    pub session: Session,
}

impl<S> FromRequestParts<S> for Signed
where
    Console: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(visitor) = Visitor::from_request_parts(parts, state).await;
        match visitor.session {
            Some(session) => Ok(Signed {
                lang: visitor.lang,
                session,
            }),
            None if parts.method == Method::GET && !parts.uri.path().starts_with("/api/") => {
                let next = url_encoded(&visitor.path);
                Err(Redirect::to(&format!("/console/signin?next={next}")).into_response())
            }
            None => Err((
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "sign in to the console first\n",
            )
                .into_response()),
        }
    }
}

impl Signed {
    /// Refuses a form whose CSRF token is not this session's, with 403 and a page saying so.
    fn check_csrf(&self, console: &Console, given: &str) -> Result<(), Box<Response>> {
        let keys = console
            .keys()
            .ok_or_else(|| Box::new(StatusCode::FORBIDDEN.into_response()))?;
        if keys.csrf_matches(&self.session, given) {
            return Ok(());
        }
        tracing::warn!(who = %self.session.who, "Console form refused: its CSRF token is missing or wrong.");
        Err(Box::new(console.problem(
            self,
            StatusCode::FORBIDDEN,
            words::word(self.lang, "csrf_refused"),
            "/console/today",
        )))
    }
}

/// `text` percent-encoded for a query string.
fn url_encoded(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A comma-separated form field as a list, blanks dropped.
fn listed(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
