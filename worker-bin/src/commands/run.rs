//! `sfn-worker run`: serve until SIGTERM/SIGINT, then drain.

use std::process::ExitCode;

use sfn_worker_core::Registry;

use crate::cli::EXIT_CONFIG;
use crate::config_file::ConfigSource;
use crate::{Daemon, Error};

pub(crate) fn run(source: &ConfigSource, registry: Registry) -> ExitCode {
    // Loaded before the runtime exists: `worker.threads` sizes it.
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => return failed(&e),
    };
    let runtime = match super::runtime(config.worker.threads) {
        Ok(rt) => rt,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        Daemon::builder()
            .registry(registry)
            .named_config(config, source.name())
            .build()
            .await?
            .run()
            .await
    });
    // A handler abandoned inside spawn_blocking must not keep the process up.
    super::finish(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

fn failed(e: &Error) -> ExitCode {
    match e {
        Error::Config(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_CONFIG)
        }
        e => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
