//! # sfn-worker-core
//!
//! The runtime of an AWS Step Functions task-token worker: it polls activities,
//! runs each task on its registered handler with bounded concurrency, keeps the
//! task alive with heartbeats, reports the result, and shuts down without
//! losing a task.
//!
//! The pieces, one module each:
//! - [`handler`]: what a handler is ([`Handler`], [`handler_fn`]), its
//!   [`TaskContext`] and [`TaskError`], and the [`Registry`] of handler kinds.
//! - [`config`]: the typed, validated configuration and the resolved [`Plan`].
//! - `aws`: the narrow seam to AWS, one folder per service (`sfn`, `sqs`,
//!   `lambda`), each with its clients and an in-process fake; one error
//!   classification ([`ApiError`]), one retry policy, one `Operation` enum.
//!   Public only with the `test-util` feature (the fakes, and the seams they
//!   plug into); [`Worker::connect`] makes the real clients.
//! - `source`: where tasks come from, one folder per source (`activity`,
//!   `sqs`), each with its configuration, pollers and what only it needs.
//! - `slots`, `runner` (with `heartbeat` and the source's lease),
//!   `completion`, `shutdown`: the machinery every task meets, whatever its
//!   source.
//! - [`limits`] and [`error_names`]: the service's limits and the worker's
//!   error names, each written once. [`metrics`]: every metric name.
//! - [`workflows`]: the client side next to the worker: start, watch and
//!   stop executions of the configured workflows by name.
//!
//! ```no_run
//! use sfn_worker_core::{Registry, TaskContext, TaskError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Order { id: String, amount_cents: u64 }
//! #[derive(Serialize)]
//! struct Receipt { id: String, charged: bool }
//!
//! async fn charge(order: Order, ctx: TaskContext) -> Result<Receipt, TaskError> {
//!     if ctx.is_cancelled() {
//!         return Err(TaskError::new("Payments.Cancelled", "task was cancelled"));
//!     }
//!     Ok(Receipt { id: order.id, charged: order.amount_cents > 0 })
//! }
//!
//! let mut registry = Registry::new();
//! registry.handler("charge", charge);
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The transports (direct and SDK clients) are the worker's business:
// public only with `test-util`, for the in-process fakes and the seams they
// plug into. `Worker::connect` makes the real clients.
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod aws;
#[cfg(not(any(test, feature = "test-util")))]
mod aws;
mod completion;
pub mod config;
pub mod error_names;
mod events;
mod fingerprint;
pub mod handler;
mod heartbeat;
mod ledger;
pub mod limits;
pub mod metrics;
mod runner;
mod send_gate;
pub mod shutdown;
mod slots;
mod source;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod trace;
mod worker;
pub mod workflows;

pub use aws::{ApiError, ApiErrorKind};
pub use config::{Config, ConfigError, Plan};
pub use fingerprint::{fingerprint, redact};
pub use handler::{
    BuildError, CancelReason, Handler, HandlerFactory, HandlerService, LocalCancel, Registry,
    ResultExt, ServiceHandler, Task, TaskContext, TaskError, TaskSource, handler_fn,
};
pub use shutdown::ShutdownHandle;
pub use trace::TraceContext;
pub use worker::{ConnectError, Health, HealthState, Worker, WorkerError};

/// Re-exported so handler authors use the same cancellation type as the worker.
pub use tokio_util::sync::CancellationToken;

/// Internals for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`,
/// as cargo-fuzz does); not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    // The message type the parser reads: `aws` is public only with
    // `test-util`, which the fuzz targets do not turn on.
    pub use crate::aws::Message;
    use crate::config::TokenSource;

    /// The (token, input) a message carries, or the malformed reason.
    pub fn extract(
        m: &Message,
        token: &TokenSource,
        input_pointer: Option<&str>,
    ) -> Result<(String, String), &'static str> {
        crate::source::sqs::message::extract(m, token, input_pointer).map_err(|e| e.reason())
    }

    /// The JSON text at an RFC 6901 pointer, as written in `json`.
    pub fn pointer<'a>(json: &'a str, pointer: &str) -> Option<&'a str> {
        crate::source::sqs::message::pointer(json, pointer).map(|r| r.get())
    }
}
