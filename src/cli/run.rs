//! `forewarn run`: intake, dispatcher, schedules and HTTP as tasks under one shutdown signal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::authoring::Authoring;
use crate::config::Settings;
use crate::gateway::Gateways;
use crate::incident::{Announcer, FanoutWorker};
use crate::intake::{self, DeadLetterPublisher, Intake};
use crate::outbox::{Dispatcher, Fallback};
use crate::schedule::{Clock, Emitter, JobContext, Scheduler, SystemClock};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::Store;

/// Why forewarn could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Rules or templates have errors; each line is `file:line:col: message`.
    #[error("{} problem(s) found in rules or templates:\n{}", .0.len(), .0.join("\n"))]
    Authoring(Vec<String>),
    /// Anything else: NATS, database, gateways.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Loads and cross-checks templates and rules (see [`crate::authoring::load`]).
pub fn load_authoring(settings: &Settings) -> Result<Authoring, Vec<String>> {
    crate::authoring::load(settings)
}

/// A started forewarn: its tasks, and the handle to stop them.
pub struct Running {
    trigger: ShutdownTrigger,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    nats: async_nats::Client,
    store: Arc<dyn Store>,
    http: Option<SocketAddr>,
    feedback: crate::feedback::Feedback,
}

impl Running {
    /// Asks every task to finish its work in flight and stop.
    pub fn stop(&self) {
        self.trigger.trigger();
    }

    /// The store, for tools that report on the run.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// What acts on receipts and replies, for tools that play a provider (the demo).
    pub fn feedback(&self) -> &crate::feedback::Feedback {
        &self.feedback
    }

    /// Where HTTP listens, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Runs until `stop` resolves (a signal, or the demo's end) or a task ends on its own; then
    /// asks every task to finish its work in flight, waits for all of them, flushes pending acks
    /// to NATS, and reports how each ended.
    pub async fn wait(self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Running {
            trigger,
            tasks,
            nats,
            ..
        } = self;
        let mut pending: FuturesUnordered<_> = tasks
            .into_iter()
            .map(|(name, handle)| async move { (name, handle.await) })
            .collect();
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        let mut failure = None;
        loop {
            tokio::select! {
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    trigger.trigger();
                }
                next = pending.next() => {
                    let Some((name, result)) = next else { break };
                    match result {
                        Ok(Ok(())) => tracing::info!(task = name, "Task finished."),
                        Ok(Err(e)) => {
                            tracing::error!(task = name, error = %format!("{e:#}"), "Task failed.");
                            failure.get_or_insert(e.context(format!("{name} failed")));
                        }
                        Err(e) => {
                            tracing::error!(task = name, error = %e, "Task panicked.");
                            failure.get_or_insert(anyhow::anyhow!("{name} panicked: {e}"));
                        }
                    }
                    // Whatever ended first, the rest follow.
                    trigger.trigger();
                }
            }
        }
        // Drained, not just flushed: the connection closes here, before whoever started the
        // server (the demo) stops it, rather than noticing the server gone and reconnecting.
        if let Err(e) = intake::close(&nats, std::time::Duration::from_secs(2)).await {
            tracing::warn!(error = %e, "Could not flush acknowledgements to NATS; they will be redelivered.");
        }
        match failure {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Starts forewarn: validates rules and templates, migrates, connects, and spawns the tasks.
pub async fn start(
    settings: Settings,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<Running, StartError> {
    start_on(settings, metrics, Arc::new(SystemClock)).await
}

/// [`start`] on `clock` instead of the wall clock: intake decides, the fan-out pages and the
/// dispatcher sends (quiet hours included) at its hour. `forewarn demo` tells its story at the
/// examples' hour this way; the scheduler stays on the wall clock (the demo runs its ticks).
pub async fn start_on(
    settings: Settings,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    clock: Arc<dyn Clock>,
) -> Result<Running, StartError> {
    let authoring = load_authoring(&settings).map_err(StartError::Authoring)?;
    let policy = settings.policy().map_err(anyhow::Error::from)?;
    // Secrets are read before anything connects: a missing one stops forewarn at once.
    let providers = ProviderWebhooks::from_settings(&settings)?;
    let unsubscribe = crate::feedback::UnsubscribeLinks::from_settings(&settings)
        .map_err(anyhow::Error::msg)
        .context("Failed to set up one-click unsubscribe links")?
        .map(Arc::new);
    let console_keys = match settings.console.enabled && settings.http.enabled {
        true => crate::console::Console::sign_in_keys(&settings).map_err(anyhow::Error::from)?,
        false => None,
    };
    tracing::info!(
        rules = authoring.rules.len(),
        templates = authoring.templates.names().count(),
        "Rules and templates loaded."
    );
    let store = crate::store::connect(&settings.database)
        .await
        .with_context(|| format!("Failed to open the database {}", settings.database.url))?;
    let gateways = Gateways::from_settings(&settings).context("Failed to set up gateways")?;
    let nats = intake::connect(&settings.nats)
        .await
        .context("Failed to connect to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    let consumer = intake::ensure_consumer(&js, &settings.nats, &settings.intake)
        .await
        .context("Failed to set up JetStream")?;

    let (trigger, shutdown) = shutdown::channel();
    let wake = Arc::new(Notify::new());
    let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

    let (authoring, reloader) = crate::authoring::serve(authoring, &settings);
    let reload_shutdown = shutdown.clone();
    tasks.push((
        "reload",
        tokio::spawn(async move {
            reloader.run(reload_shutdown).await;
            Ok(())
        }),
    ));
    let console_authoring = authoring.clone();
    let fallback = Fallback::new(store.clone(), authoring.clone());
    let feedback = crate::feedback::Feedback::new(
        store.clone(),
        fallback.clone(),
        authoring.clone(),
        wake.clone(),
    );
    let fanout_wake = Arc::new(Notify::new());
    let readiness = crate::readiness::Readiness::default();
    if settings.incidents.fanout {
        let worker = FanoutWorker::new(
            store.clone(),
            authoring.clone(),
            policy.clone(),
            settings.incidents.clone(),
            fanout_wake.clone(),
            wake.clone(),
        )
        .with_clock(clock.clone());
        let fanout_shutdown = shutdown.clone();
        tasks.push((
            "fanout",
            tokio::spawn(async move {
                worker.run(fanout_shutdown).await;
                Ok(())
            }),
        ));
    }
    let intake = Intake::new(
        store.clone(),
        authoring,
        DeadLetterPublisher::new(js.clone(), settings.nats.dlq_subject_prefix.clone()),
        settings.nats.type_prefix.clone(),
        settings.intake.clone(),
        wake.clone(),
    )
    .with_policy(policy.clone())
    .with_clock(clock.clone())
    .with_fanout_wake(fanout_wake)
    .with_readiness(readiness.clone());
    let intake_shutdown = shutdown.clone();
    tasks.push((
        "intake",
        tokio::spawn(async move { Ok(intake.run(consumer, intake_shutdown).await?) }),
    ));

    let wake_for_schedules = wake.clone();
    if settings.outbox.dispatch {
        let dispatcher = Dispatcher::new(
            store.clone(),
            gateways,
            fallback,
            settings.outbox.clone(),
            wake,
        )
        .with_quiet_hours(policy.quiet.clone())
        .with_unsubscribe(unsubscribe.clone())
        .with_clock(clock)
        .with_readiness(readiness.clone());
        let dispatcher_shutdown = shutdown.clone();
        tasks.push((
            "dispatcher",
            tokio::spawn(async move {
                dispatcher.run(dispatcher_shutdown).await;
                Ok(())
            }),
        ));
    }

    if settings.relay.enabled {
        let relay = crate::relay::Relay::new(store.clone(), js.clone(), settings.relay.clone())
            .await
            .context("Failed to set up the outreach events stream")?;
        let relay_shutdown = shutdown.clone();
        tasks.push((
            "relay",
            tokio::spawn(async move {
                relay.run(relay_shutdown).await;
                Ok(())
            }),
        ));
    }

    if settings.scheduler.enabled {
        let scheduler = scheduler(&settings, store.clone(), js.clone(), wake_for_schedules)
            .map_err(anyhow::Error::from)?;
        let scheduler_shutdown = shutdown.clone();
        tasks.push((
            "scheduler",
            tokio::spawn(async move {
                scheduler.run(scheduler_shutdown).await;
                Ok(())
            }),
        ));
    }

    let http = if settings.http.enabled {
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.http.listen))?;
        let addr = listener
            .local_addr()
            .context("Failed to read the HTTP address")?;
        let api_token = match &settings.http.api_token_env {
            None => None,
            Some(name) => Some(Arc::<str>::from(
                crate::secrets::secret_from_env("API token (http.api_token_env)", name)
                    .map_err(anyhow::Error::msg)?,
            )),
        };
        let console = if settings.console.enabled {
            Some(
                crate::console::Console::new(
                    crate::console::ConsoleParts {
                        settings: settings.clone(),
                        store: store.clone(),
                        authoring: console_authoring,
                        announcer: announcer(&settings, js.clone()),
                        js: js.clone(),
                    },
                    console_keys,
                )
                .map_err(anyhow::Error::from)?,
            )
        } else {
            None
        };
        let state = crate::http::HttpState {
            store: store.clone(),
            nats: nats.clone(),
            readiness: readiness.clone(),
            metrics,
            api_token,
            announcer: announcer(&settings, js.clone()),
            feedback: feedback.clone(),
            twilio: providers.twilio,
            sendgrid: providers.sendgrid,
            unsubscribe,
            console,
        };
        let http_shutdown: Shutdown = shutdown.clone();
        tasks.push((
            "http",
            tokio::spawn(async move {
                crate::http::serve(listener, state, http_shutdown)
                    .await
                    .context("HTTP server failed")
            }),
        ));
        tracing::info!(%addr, "Serving /healthz, /readyz, /metrics and /v1/.");
        if settings.console.enabled {
            tracing::info!(url = %format!("http://{addr}/console/"), "Serving the console.");
        }
        Some(addr)
    } else {
        None
    };

    Ok(Running {
        trigger,
        tasks,
        nats,
        store,
        http,
        feedback,
    })
}

/// The scheduler of `[schedules]`, on the wall clock, publishing synthetic events through
/// `js` and waking this process's dispatcher through `wake`.
pub fn scheduler(
    settings: &Settings,
    store: Arc<dyn Store>,
    js: async_nats::jetstream::Context,
    wake: Arc<Notify>,
) -> Result<Scheduler, crate::config::ConfigError> {
    let ctx = JobContext {
        store,
        emitter: Emitter::new(
            js,
            &settings.scheduler.subject_prefix,
            &settings.scheduler.source,
        ),
        wake,
    };
    Ok(Scheduler::new(
        settings.schedules()?,
        ctx,
        Arc::new(SystemClock),
        settings.scheduler.clone(),
    ))
}

/// Publishes on-call's announcements where `[incidents]` says.
pub(super) fn announcer(settings: &Settings, js: async_nats::jetstream::Context) -> Announcer {
    Announcer::new(
        js,
        &settings.incidents.subject_prefix,
        &settings.incidents.source,
    )
}

/// `forewarn run`.
pub(super) async fn execute(config: Option<&Path>, log_json: bool) -> anyhow::Result<()> {
    let settings = super::settings(config, log_json)?;
    let metrics = crate::metrics::install();
    tracing::info!(
        config = %Settings::source_file(config).map_or("embedded defaults".into(), |p| p.display().to_string()),
        nats = %settings.nats.url,
        database = %settings.database.url,
        "Starting forewarn."
    );
    let running = start(settings, metrics).await?;
    running.wait(shutdown::signal()).await?;
    tracing::info!("Forewarn stopped.");
    Ok(())
}

/// What checks the signatures of providers' receipts and replies.
struct ProviderWebhooks {
    twilio: Option<Arc<crate::feedback::twilio::TwilioWebhooks>>,
    sendgrid: Option<Arc<crate::feedback::sendgrid::SendgridWebhook>>,
}

impl ProviderWebhooks {
    fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        Ok(ProviderWebhooks {
            twilio: crate::feedback::twilio::TwilioWebhooks::from_settings(settings)
                .map_err(anyhow::Error::msg)
                .context("Failed to set up Twilio's webhooks")?
                .map(Arc::new),
            sendgrid: crate::feedback::sendgrid::SendgridWebhook::from_settings(settings)
                .map_err(anyhow::Error::msg)
                .context("Failed to set up SendGrid's event webhook")?
                .map(Arc::new),
        })
    }
}
