//! `[http]`: where health, metrics and the `/v1/` API listen, and the token the API wants.

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
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            api_token_env: None,
        }
    }
}
