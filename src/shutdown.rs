//! One shutdown signal every loop selects on.
//!
//! SIGINT or SIGTERM flips it; loops stop taking new work, finish what is in flight, and
//! return. `main` then exits 0.

use tokio::sync::watch;

/// Flips the signal. Dropping it also counts as a shutdown, so a task whose owner is gone ends.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Observes the signal; cheap to clone, one per loop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, untriggered signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every loop to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped, which also means: stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    wait_for_signal().await;
    tracing::info!("Shutdown requested; finishing the work in flight.");
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("Could not install signal handlers; stop forewarn with SIGKILL.");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
