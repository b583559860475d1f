//! Rebuilds forewarn when a migration changes: `sqlx::migrate!` embeds `migrations/` at compile
//! time, and stable Rust does not tell cargo which files a macro read.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
