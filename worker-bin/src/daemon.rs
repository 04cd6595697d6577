//! The daemon as a library: the worker, the loader of its configuration, its
//! AWS clients, its `/metrics`, `/healthz` and `/readyz` endpoints and its
//! signals, inside the caller's tokio runtime.
//!
//! `sfn-worker run` is this module run from the command line: what an
//! embedded worker does is what the daemon does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use sfn_worker_core::config::NOTHING_TO_SERVE;
use sfn_worker_core::{
    Config, ConnectError, Health, Registry, ShutdownHandle, Worker, WorkerError,
};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::config_file::{ConfigSource, plan};
use crate::{http, telemetry};

/// Why the daemon could not be built or did not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be read or is invalid. The text names the
    /// file (or variable), every offending field, and what was expected.
    /// `sfn-worker` exits 2 for it.
    #[error("{0}")]
    Config(String),
    /// Something the worker needs at start is missing: an AWS region, the
    /// metrics address, an AWS client, the metrics recorder.
    #[error("{0}")]
    Start(String),
    /// The worker stopped with an error (a configured activity or queue does
    /// not exist, AWS cannot be reached to check it).
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// The worker as a daemon: build it with [`Daemon::builder`], then
/// [`Daemon::run`] (SIGTERM and SIGINT drain it) or [`Daemon::run_until`]
/// (your own shutdown signal), from your own `#[tokio::main]`.
///
/// ```no_run
/// # async fn demo() -> Result<(), sfn_worker::Error> {
/// use sfn_worker::{Daemon, TaskContext, TaskError};
///
/// let daemon = Daemon::builder()
///     .config_file("worker.toml")
///     .register(|registry| {
///         registry.handler("greet", |name: String, _ctx: TaskContext| async move {
///             Ok::<_, TaskError>(format!("hello, {name}"))
///         });
///     })
///     .build()
///     .await?;
/// daemon.run().await
/// # }
/// ```
pub struct Daemon {
    worker: Worker,
    config_name: String,
    /// Bound at build, so a port in use is an error before the worker starts.
    listener: Option<(TcpListener, SocketAddr)>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.config_name)
            .field("worker_name", &self.worker.worker_name())
            .field("endpoints", &self.listener.as_ref().map(|(_, a)| a))
            .finish_non_exhaustive()
    }
}

/// Builds a [`Daemon`]: where its configuration comes from, its handlers,
/// and which endpoints it serves itself.
#[must_use]
pub struct DaemonBuilder {
    config: Option<(Config, String)>,
    source: Option<ConfigSource>,
    registry: Registry,
    serve_endpoints: bool,
    prometheus: bool,
}

impl std::fmt::Debug for DaemonBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonBuilder")
            .field("source", &self.source)
            .field("serve_endpoints", &self.serve_endpoints)
            .field("prometheus", &self.prometheus)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// A builder with the built-in handler kinds (`exec`, `echo`, `http`),
    /// the configuration from the environment as the binary reads it
    /// (`SFN_WORKER_CONFIG`, else `SFN_WORKER_CONFIG_TOML`) unless given,
    /// its own `/metrics`, `/healthz` and `/readyz` on `worker.metrics_addr`,
    /// and a Prometheus recorder.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            config: None,
            source: None,
            registry: sfn_worker_handlers::builtins(),
            serve_endpoints: true,
            prometheus: true,
        }
    }

    /// `/metrics`, `/healthz` and `/readyz` as an axum router, to merge into
    /// your own server (with [`DaemonBuilder::serve_endpoints`]`(false)`).
    /// `/metrics` answers 404 when the daemon has no Prometheus recorder
    /// ([`DaemonBuilder::prometheus`]`(false)`).
    pub fn router(&self) -> axum::Router {
        http::router(self.metrics.clone(), self.worker.health())
    }

    /// The worker's health, as `/readyz` reports it.
    pub fn health(&self) -> Health {
        self.worker.health()
    }

    /// Starts the shutdown: the first call drains, the second skips the
    /// waiting (as a second SIGTERM does).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.worker.shutdown_handle()
    }

    /// The `workerName` the worker polls with.
    pub fn worker_name(&self) -> &str {
        self.worker.worker_name()
    }

    /// Where the daemon serves its endpoints, if it does.
    pub fn endpoints_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Serve until SIGTERM or SIGINT, then drain (a second signal skips the
    /// waiting), as `sfn-worker run` does. Returns when every task has ended.
    pub async fn run(self) -> Result<(), Error> {
        let signals = tokio::spawn(forward_signals(self.worker.shutdown_handle()));
        let result = self.serve(std::future::pending()).await;
        signals.abort();
        result
    }

    /// Serve until `shutdown` completes, then drain; returns when every task
    /// has ended. No signal handler is installed: the application owns its
    /// signals, and one shutdown future can stop its own server and the
    /// worker together. Call [`ShutdownHandle::shutdown`] twice (or
    /// [`ShutdownHandle::force`]) to skip the waiting.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        self.serve(shutdown).await
    }

    async fn serve(self, until: impl Future<Output = ()>) -> Result<(), Error> {
        let Daemon {
            worker,
            config_name,
            listener,
            metrics,
        } = self;
        let mut background: Vec<JoinHandle<()>> = Vec::new();
        if let Some(handle) = &metrics {
            let upkeep = handle.clone();
            background.push(tokio::spawn(async move {
                // Histograms are drained into their buckets on upkeep.
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            }));
        }
        if let Some((listener, addr)) = listener {
            background.push(tokio::spawn(http::serve(
                listener,
                http::router(metrics, worker.health()),
            )));
            tracing::info!(config = %config_name, %addr, worker_name = worker.worker_name(), "sfn-worker starting");
        } else {
            tracing::info!(config = %config_name, worker_name = worker.worker_name(), "sfn-worker starting");
        }
        let shutdown = worker.shutdown_handle();
        let run = worker.run();
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            () = until => {
                shutdown.shutdown();
                run.await
            }
        };
        for task in background {
            task.abort();
        }
        result.map_err(Error::from)
    }
}

impl DaemonBuilder {
    /// Read the configuration from this TOML file (with the `SFN_WORKER_*`
    /// overrides).
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.source = Some(ConfigSource::file(path));
        self.config = None;
        self
    }

    /// Read the configuration from this TOML text (with the `SFN_WORKER_*`
    /// overrides).
    pub fn config_toml(mut self, toml: impl Into<String>) -> Self {
        self.source = Some(ConfigSource::text(toml));
        self.config = None;
        self
    }

    /// Read the configuration from `source`.
    pub fn config_source(mut self, source: ConfigSource) -> Self {
        self.source = Some(source);
        self.config = None;
        self
    }

    /// Use this configuration, built in code or loaded already; errors name
    /// it "the configuration".
    pub fn config(self, config: Config) -> Self {
        self.named_config(config, "the configuration".to_owned())
    }

    pub(crate) fn named_config(mut self, config: Config, name: String) -> Self {
        self.config = Some((config, name));
        self.source = None;
        self
    }

    /// Register handlers (next to the built-in kinds; a kind registered
    /// under a built-in's name replaces it). Build any state they share
    /// first, with `.await` if it needs it, and register it with
    /// [`Registry::handler_with_state`].
    pub fn register(mut self, register: impl FnOnce(&mut Registry)) -> Self {
        register(&mut self.registry);
        self
    }

    /// Use this registry instead of the built-in kinds.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Whether the daemon serves `/metrics`, `/healthz` and `/readyz` on
    /// `worker.metrics_addr` itself (the default), or leaves them to your
    /// server through [`Daemon::router`].
    pub fn serve_endpoints(mut self, serve: bool) -> Self {
        self.serve_endpoints = serve;
        self
    }

    /// Whether the daemon installs a Prometheus recorder for `/metrics`
    /// (the default; one per process, shared by every daemon in it). Turn it
    /// off when the application installs its own `metrics` recorder: the
    /// worker's metrics then go to that one.
    pub fn prometheus(mut self, install: bool) -> Self {
        self.prometheus = install;
        self
    }

    /// Load and check the configuration, resolve AWS (region, credentials
    /// chain, clients), bind the endpoints' address. Nothing is polled yet.
    pub async fn build(self) -> Result<Daemon, Error> {
        let (config, name) = match (self.config, self.source) {
            (Some((config, name)), _) => (config, name),
            (None, Some(source)) => (source.load()?, source.name()),
            (None, None) => {
                let source = ConfigSource::from_env()?;
                (source.load()?, source.name())
            }
        };
        let plan = plan(config, &name, &self.registry).map_err(Error::Config)?;
        if !plan.has_bindings() {
            // A file with only [workflows] is valid for the workflow commands.
            return Err(Error::Config(format!(
                "{name}: invalid configuration\n  {name}: activity: {NOTHING_TO_SERVE} \
                 (a file with only [workflows] is for the workflow commands)"
            )));
        }
        let metrics = if self.prometheus {
            Some(prometheus()?)
        } else {
            None
        };

        let addr = plan.config().worker.metrics_addr;
        let worker = Worker::connect(plan).await.map_err(|e| match e {
            ConnectError::NoRegion => Error::Start(format!(
                "no AWS region: set [aws] region in {name} or AWS_REGION"
            )),
            e => Error::Start(format!("{name}: {e}")),
        })?;
        let listener = if self.serve_endpoints {
            let cannot = |e: std::io::Error| {
                Error::Start(format!(
                    "{name}: worker.metrics_addr: cannot listen on {addr}: {e}"
                ))
            };
            let listener = TcpListener::bind(addr).await.map_err(cannot)?;
            let bound = listener.local_addr().map_err(cannot)?;
            Some((listener, bound))
        } else {
            None
        };
        Ok(Daemon {
            worker,
            config_name: name,
            listener,
            metrics,
        })
    }
}

/// The process's Prometheus recorder: installed by the first daemon that
/// asks, shared by the next ones (a test, or an application, may build more
/// than one).
fn prometheus() -> Result<PrometheusHandle, Error> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut handle = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*handle {
        return Ok(handle.clone());
    }
    let installed = telemetry::install_metrics().map_err(|e| {
        Error::Start(format!(
            "{e} (another metrics recorder is installed? Build the daemon with \
             .prometheus(false) and its metrics go to that recorder)"
        ))
    })?;
    *handle = Some(installed.clone());
    Ok(installed)
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one forces it.
async fn forward_signals(shutdown: ShutdownHandle) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; shutdown needs SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if shutdown.is_draining() {
            tracing::warn!(signal = name, "second signal: shutting down now");
        } else {
            tracing::info!(signal = name, "shutdown requested");
        }
        shutdown.shutdown();
    }
}
