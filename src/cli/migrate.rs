//! `forewarn migrate`: apply pending migrations and exit.

use std::path::Path;

use anyhow::Context;

/// Connects (creating the database file if needed) and migrates.
pub(super) async fn execute(config: Option<&Path>, log_json: bool) -> anyhow::Result<()> {
    let settings = super::tool_settings(config, log_json)?;
    crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to migrate {}", settings.database.url))?;
    eprintln!("Migrations applied to {}.", settings.database.url);
    Ok(())
}
