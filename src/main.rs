//! The `forewarn` binary: parse the command line, hand over to the library.

use clap::Parser;

/// jemalloc, not the system allocator: under a steady stream glibc's malloc spent a fifth of the
/// process's time allocating, freeing and trimming the heap (latency benchmark, README).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let cli = forewarn::cli::Cli::parse();
    std::process::exit(forewarn::cli::execute(cli).await);
}
