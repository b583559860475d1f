//! The `forewarn` binary: parse the command line, hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = forewarn::cli::Cli::parse();
    std::process::exit(forewarn::cli::execute(cli).await);
}
