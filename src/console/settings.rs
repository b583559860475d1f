//! `[console]`: who may sign in to the console, for how long, and whether templates may be
//! saved from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[console]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Serve the console at `/console/` on `http.listen`.
    pub enabled: bool,
    /// Name of the environment variable holding the token people sign in with. Unset: the API
    /// token (`http.api_token_env`). With neither, the console says so and serves nothing else.
    pub token_env: Option<String>,
    /// Let signed-in people save template files from the console. Off by default: the files
    /// (and the repository they live in) stay the source of truth. A saved file goes live only
    /// if the whole set passes `check`; otherwise it is not written and the errors are shown.
    pub allow_edit: bool,
    /// How long a sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            token_env: None,
            allow_edit: false,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}
