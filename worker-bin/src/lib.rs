//! # sfn-worker
//!
//! Workers for AWS Step Functions activities, SQS callbacks
//! (`.waitForTaskToken`) and Lambda durable callbacks: your handlers in
//! Rust; polling, bounded concurrency, heartbeats, message leases,
//! reporting, metrics, health endpoints and a graceful shutdown from here.
//!
//! Three ways to use it.
//!
//! **One call: the whole daemon.** [`main`] is your binary's `main`: the
//! `sfn-worker` command line (`run`, `check`, `invoke`, ...) with your
//! handlers next to the built-in kinds. It owns the process: arguments,
//! logging, the runtime, signals.
//!
//! ```no_run
//! use sfn_worker::{TaskContext, TaskError};
//!
//! async fn greet(name: String, _ctx: TaskContext) -> Result<String, TaskError> {
//!     Ok(format!("hello, {name}"))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     sfn_worker::main(|registry| {
//!         registry.handler("greet", greet);
//!     })
//! }
//! ```
//!
//! **Embedded: your application, your runtime.** [`Daemon::builder`] from
//! your own `#[tokio::main]`: the same configuration loader
//! ([`ConfigSource`]: the file, `SFN_WORKER_CONFIG_TOML`, the
//! `SFN_WORKER_*` overrides), state built with `.await` and shared with your
//! handlers, the worker's `/metrics`, `/healthz` and `/readyz` merged into
//! your axum server, one shutdown for both.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sfn_worker::{ConfigSource, Daemon, TaskContext, TaskError};
//!
//! struct Pool; // your database pool, SDK client, ...
//! impl Pool {
//!     async fn connect() -> Pool { Pool }
//!     async fn price(&self, sku: &str) -> u64 { sku.len() as u64 }
//! }
//!
//! async fn price(sku: String, _ctx: TaskContext, pool: Arc<Pool>) -> Result<u64, TaskError> {
//!     Ok(pool.price(&sku).await)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let pool = Arc::new(Pool::connect().await);
//!     let daemon = Daemon::builder()
//!         .config_source(ConfigSource::from_env()?)
//!         .serve_endpoints(false) // your server serves them
//!         .register(|registry| {
//!             registry.handler_with_state("price", pool.clone(), price);
//!         })
//!         .build()
//!         .await?;
//!     let app = axum::Router::new()
//!         .route("/", axum::routing::get(|| async { "my app" }))
//!         .merge(daemon.router());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     let server = tokio::spawn(async move { axum::serve(listener, app).await });
//!     // SIGTERM or SIGINT drains the worker; then the server stops.
//!     daemon.run().await?;
//!     server.abort();
//!     Ok(())
//! }
//! ```
//!
//! **tower: services and layers.** Any `tower::Service<Task<I>>` is a
//! handler ([`Registry::service`]); layers go around every handler
//! ([`Registry::layer`]) or one kind ([`Registry::layer_for`]). The worker's
//! task span, heartbeats and timeout stay outside them.
//!
//! ```
//! use std::time::Duration;
//! use sfn_worker::{Registry, Task, TaskError};
//! use tower::ServiceBuilder;
//!
//! let mut registry = Registry::new();
//! registry.service(
//!     "double",
//!     ServiceBuilder::new()
//!         .timeout(Duration::from_secs(10)) // `Worker.HandlerTimeout` when it fires
//!         .service_fn(|task: Task<u64>| async move { Ok::<_, TaskError>(task.input * 2) }),
//! );
//! // At most 16 tasks inside any handler at once.
//! registry.layer(tower::limit::GlobalConcurrencyLimitLayer::new(16));
//! ```
//!
//! **Testing handlers** (feature `test-util`): `testing::TestTask` runs a
//! handler on an input, counts the heartbeats it asked for and cancels it
//! as the worker would; `testing::TestWorker` runs a whole worker with your
//! registry against an in-process fake of Step Functions
//! (`examples/custom-handler` tests itself with them).
//!
//! ```
//! # #[cfg(feature = "test-util")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use sfn_worker::testing::TestTask;
//! use sfn_worker::{Registry, TaskContext, TaskError};
//!
//! let mut registry = Registry::new();
//! registry.handler("double", |n: u64, ctx: TaskContext| async move {
//!     ctx.heartbeat();
//!     Ok::<_, TaskError>(n * 2)
//! });
//! let task = TestTask::new("orders");
//! assert_eq!(task.run(&registry, "double", 21).await, Ok(serde_json::json!(42)));
//! assert_eq!(task.heartbeats(), 1);
//! # }
//! # #[cfg(not(feature = "test-util"))]
//! # fn main() {}
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cli;
mod commands;
mod config_file;
mod daemon;
mod http;
mod init;
pub mod telemetry;

use std::process::ExitCode;

pub use config_file::ConfigSource;
pub use daemon::{Daemon, DaemonBuilder, Error};
pub use sfn_worker_core as core;
/// Test your handlers: run one on an input, see its heartbeats, cancel it as
/// the worker would, or run a whole worker against in-process fakes
/// (feature `test-util`).
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use sfn_worker_core::testing;
pub use sfn_worker_core::{
    BuildError, CancelReason, CancellationToken, Handler, HandlerFactory, HandlerService, Health,
    HealthState, Registry, ResultExt, ServiceHandler, ShutdownHandle, Task, TaskContext, TaskError,
    handler_fn,
};
pub use sfn_worker_handlers as handlers;

/// Load and validate a configuration text as `run` loads
/// `SFN_WORKER_CONFIG_TOML`, with the built-in handler kinds; for the fuzz
/// target in `fuzz/` (built with `--cfg fuzzing`); not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_config(text: &str) -> Result<sfn_worker_core::Plan, String> {
    config_file::load_plan(
        &config_file::ConfigSource::Text(text.to_owned()),
        &sfn_worker_handlers::builtins(),
    )
}

/// Run the `sfn-worker` command line with the built-in handler kinds plus
/// whatever `register` adds (a kind registered under a built-in's name
/// replaces it). It is the whole `main`: it parses `std::env::args`, installs
/// the logger and the metrics recorder, starts its own tokio runtime
/// (`worker.threads`), handles SIGTERM and SIGINT, and, as process 1 of a
/// container, becomes the init that reaps orphans (`register` then runs in
/// the worker process only, not in the init).
///
/// Called inside a tokio runtime (from `#[tokio::main]`), it runs on a
/// thread of its own rather than panic; to share a runtime with the rest of
/// an application, or to build handler state with `.await`, use
/// [`Daemon::builder`] instead.
pub fn main(register: impl FnOnce(&mut Registry)) -> ExitCode {
    if init::wanted() {
        return outside_any_runtime(init::run);
    }
    let mut registry = sfn_worker_handlers::builtins();
    register(&mut registry);
    outside_any_runtime(move || cli::main(registry))
}

/// Run `f`, which starts a runtime of its own, where that cannot panic: on a
/// thread of its own when this thread is inside a runtime already.
fn outside_any_runtime(f: impl FnOnce() -> ExitCode + Send) -> ExitCode {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| scope.spawn(f).join().unwrap_or(ExitCode::FAILURE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main` does: start a runtime of its own and block on it.
    fn own_runtime() -> ExitCode {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { ExitCode::from(7) })
    }

    #[tokio::test]
    async fn main_called_inside_a_runtime_runs_instead_of_panicking() {
        assert_eq!(outside_any_runtime(own_runtime), ExitCode::from(7));
    }

    /// Control: the same work straight on this thread panics, as `main`
    /// did inside `#[tokio::main]`.
    #[tokio::test]
    async fn control_a_runtime_inside_a_runtime_panics() {
        let straight = std::panic::catch_unwind(own_runtime);
        assert!(straight.is_err());
    }
}
