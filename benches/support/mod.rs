//! What the benchmarks share.

/// A size from the environment (`BENCH_EVENTS=…`), else `default`.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
