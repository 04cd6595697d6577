//! Command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sfn_worker_core::Registry;

use crate::config_file::ConfigSource;
use crate::telemetry::{self, LogFormat};
use crate::{commands, init};

/// Exit code for a configuration that cannot be used.
pub(crate) const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sfn-worker",
    version,
    about = "A worker daemon for AWS Step Functions activities"
)]
struct Cli {
    /// Log format on stderr. Log levels come from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, env = "SFN_WORKER_LOG_FORMAT")]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the configured bindings until SIGTERM or SIGINT.
    Run {
        /// The TOML configuration file. Without it, the configuration's
        /// text is read from SFN_WORKER_CONFIG_TOML.
        #[arg(long, short, env = "SFN_WORKER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print the resolved plan; no AWS calls.
    Check {
        /// The TOML configuration file (or SFN_WORKER_CONFIG_TOML).
        #[arg(long, short, env = "SFN_WORKER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Exit 0 if a running worker's /healthz answers 200 (for container
    /// health checks in images without a shell or curl).
    Healthcheck {
        /// The URL to check.
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// List the handler kinds this binary knows, with their params.
    Handlers,
    /// Run a handler once, locally, with no AWS; print its output.
    Invoke {
        /// The handler kind.
        kind: String,
        /// The handler's params as JSON (what `[activity.params]` would hold).
        #[arg(long)]
        params: Option<String>,
        /// The task input: a JSON file, or `-` for stdin.
        #[arg(long)]
        input: PathBuf,
    },
}

pub(crate) fn main(registry: Registry) -> ExitCode {
    if init::wanted() {
        return init::run();
    }
    let cli = Cli::parse();
    let _telemetry = telemetry::init_logging(match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    });
    match cli.command {
        Command::Run { config } => match ConfigSource::resolve(config) {
            Ok(source) => commands::run::run(&source, registry),
            Err(msg) => usage(&msg),
        },
        Command::Check { config } => match ConfigSource::resolve(config) {
            Ok(source) => commands::check::check(&source, &registry),
            Err(msg) => usage(&msg),
        },
        Command::Healthcheck { url } => commands::healthcheck::check(&url),
        Command::Handlers => commands::handlers::list(&registry),
        Command::Invoke {
            kind,
            params,
            input,
        } => commands::invoke::invoke(&registry, &kind, params.as_deref(), &input),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_CONFIG)
}
