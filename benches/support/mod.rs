//! What the benchmarks share.

/// A size from the environment (`BENCH_EVENTS=…`), else `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The settings every bench starts from: the repository's rules and templates.
#[allow(dead_code)] // Not every bench uses every helper.
pub(crate) fn repo_settings() -> forewarn::config::Settings {
    forewarn::config::Settings {
        paths: forewarn::config::PathSettings {
            rules: concat!(env!("CARGO_MANIFEST_DIR"), "/rules").into(),
            templates: concat!(env!("CARGO_MANIFEST_DIR"), "/templates").into(),
            ..Default::default()
        },
        ..forewarn::config::Settings::default()
    }
}

/// The process's peak resident memory (`VmHWM`), in MiB.
#[allow(dead_code)]
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// A Twilio-shaped server on a free local port that takes every message at once (201 with a
/// `sid`), calling `seen` for each; returns its base URL. Its auth token is `bench-token` in
/// `BENCH_TWILIO_TOKEN`, for [`twilio_gateway`].
#[allow(dead_code)]
pub(crate) async fn twilio_stand_in(seen: impl Fn() + Clone + Send + Sync + 'static) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let router = axum::Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        axum::routing::post(move || {
            seen();
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                (
                    axum::http::StatusCode::CREATED,
                    format!(r#"{{"sid":"SM{n:032}","status":"queued"}}"#),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    // Set before any gateway reads the environment; the benches run nothing else yet.
    std::env::set_var("BENCH_TWILIO_TOKEN", "bench-token");
    url
}

/// The SMS gateway settings for a [`twilio_stand_in`] at `url`.
#[allow(dead_code)]
pub(crate) fn twilio_gateway(url: &str) -> forewarn::gateway::GatewayConfig {
    forewarn::gateway::GatewayConfig::Twilio(forewarn::gateway::TwilioConfig {
        base_url: url.to_owned(),
        account_sid: "AC00000000000000000000000000000001".into(),
        auth_token_env: "BENCH_TWILIO_TOKEN".into(),
        from: "+15005550006".into(),
        status_callback: None,
        timeout: std::time::Duration::from_secs(10),
    })
}
