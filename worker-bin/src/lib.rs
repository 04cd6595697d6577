//! # sfn-worker
//!
//! The `sfn-worker` daemon and CLI, as a library: a binary with its own
//! handlers gets the whole daemon (CLI, configuration, metrics and health
//! endpoints, signals and graceful shutdown) from one call to [`main`].
//!
//! ```no_run
//! use sfn_worker::{Registry, TaskContext, TaskError};
//!
//! async fn greet(name: String, _ctx: TaskContext) -> Result<String, TaskError> {
//!     Ok(format!("hello, {name}"))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // The built-in kinds (exec, echo) plus "greet".
//!     sfn_worker::main(|registry| {
//!         registry.handler("greet", greet);
//!     })
//! }
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cli;
mod commands;
mod config_file;
mod http;
mod init;
mod telemetry;

use std::process::ExitCode;

pub use sfn_worker_core as core;
pub use sfn_worker_core::{
    BuildError, CancelReason, CancellationToken, Handler, HandlerFactory, Registry, ResultExt,
    TaskContext, TaskError, handler_fn,
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
/// replaces it). Parses `std::env::args`, so it is the whole `main`.
pub fn main(register: impl FnOnce(&mut Registry)) -> ExitCode {
    let mut registry = sfn_worker_handlers::builtins();
    register(&mut registry);
    cli::main(registry)
}
