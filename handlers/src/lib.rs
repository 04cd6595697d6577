//! Built-in handler kinds for sfn-worker.
//!
//! - `exec`: run a command (argv, never a shell) with the task input on stdin.
//! - `http`: send the task input as JSON to an HTTP endpoint.
//! - `echo`: return the input, optionally merged with `params.add`.
//!
//! [`register`] adds them all to a registry; the `sfn-worker` binary is
//! exactly that plus the daemon.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod echo;
pub mod exec;
pub mod http;

use sfn_worker_core::Registry;

/// Add every built-in kind to `registry`.
pub fn register(registry: &mut Registry) -> &mut Registry {
    registry
        .factory(exec::Exec)
        .factory(http::Http)
        .factory(echo::Echo)
}

/// A registry holding only the built-in kinds.
pub fn builtins() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}
