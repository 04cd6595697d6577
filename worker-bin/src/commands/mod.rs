//! One module per subcommand.

pub(crate) mod check;
pub(crate) mod handlers;
pub(crate) mod healthcheck;
pub(crate) mod invoke;
pub(crate) mod run;

/// A tokio runtime for a command, or a message saying why there is none.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
