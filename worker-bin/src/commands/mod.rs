//! One module per subcommand.

pub(crate) mod check;
pub(crate) mod handlers;
pub(crate) mod healthcheck;
pub(crate) mod invoke;
pub(crate) mod run;

/// A tokio runtime for a command, or a message saying why there is none.
/// `threads` is `worker.threads`: 0 means one per CPU core.
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
