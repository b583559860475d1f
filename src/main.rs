//! The `forewarn` binary: parse the command line, hand over to the library.

use clap::Parser;

/// jemalloc, not the system allocator: under a steady stream glibc's malloc spent a fifth of the
/// process's time allocating, freeing and trimming the heap (latency benchmark, README).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    // jemalloc hands freed memory back to the system only as later allocations come by, so a
    // process idle after a burst kept what the burst took (hundreds of megabytes). Its own
    // background thread returns it on the decay schedule (seconds) whether or not anything is
    // allocated meanwhile.
    #[cfg(not(target_env = "msvc"))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: jemalloc's background thread could not be started: {e}");
    }
    let cli = forewarn::cli::Cli::parse();
    std::process::exit(forewarn::cli::execute(cli).await);
}
