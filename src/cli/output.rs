//! What commands print on stdout: only what a script would capture, each line through [`say!`],
//! so that a reader who stops reading (`forewarn explain … | head -1`) ends the command quietly
//! instead of a panic with a stack trace. Everything for people — progress, notes, errors — goes
//! to stderr.

use std::io::{ErrorKind, Write};

/// Stdout could not take a line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputError {
    /// The reader closed the pipe (`| head`): nothing more is wanted, and that is not a failure.
    #[error("the output was closed")]
    Closed,
    /// Anything else, such as a full disk under a redirect.
    #[error("cannot write the output: {0}")]
    Failed(#[source] std::io::Error),
}

/// Writes one line to stdout.
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => OutputError::Closed,
            _ => OutputError::Failed(e),
        })
}

/// `println!` for commands: returns early with [`OutputError`] when stdout is gone.
macro_rules! say {
    () => {
        $crate::cli::output::write_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use say;
