//! Command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sfn_worker_core::Registry;

use crate::commands;
use crate::commands::workflows::{self, ClientArgs, Request, StatusFilter};
use crate::config_file::ConfigSource;
use crate::telemetry::{self, LogFormat};

/// Exit code for a command that failed (an AWS error, a missing execution).
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code for a configuration that cannot be used, or a usage error
/// (an unknown workflow name, a malformed ARN, input that is not JSON).
pub(crate) const EXIT_CONFIG: u8 = 2;
/// `wait`, `start --wait`: the execution FAILED.
pub(crate) const EXIT_FAILED: u8 = 3;
/// `wait`, `start --wait`: the execution TIMED_OUT (its own TimeoutSeconds).
pub(crate) const EXIT_TIMED_OUT: u8 = 4;
/// `wait`, `start --wait`: the execution was ABORTED (stopped).
pub(crate) const EXIT_ABORTED: u8 = 5;
/// `wait`, `start --wait`: still running when `--timeout-secs` ran out.
pub(crate) const EXIT_STILL_RUNNING: u8 = 6;

const EXIT_CODES: &str = "\
Exit codes: 0 success (wait, start --wait: the execution SUCCEEDED); 1 error \
(AWS, an execution that does not exist); 2 configuration or usage error; for \
wait and start --wait: 3 FAILED, 4 TIMED_OUT, 5 ABORTED, 6 still running when \
--timeout-secs ran out.";

#[derive(Parser, Debug)]
#[command(
    name = "sfn-worker",
    version,
    about = "A worker daemon for AWS Step Functions activities, and the client that starts and watches the executions it serves",
    after_help = EXIT_CODES
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
    /// Start an execution of a workflow named in [workflows.state_machines];
    /// print its ARN, or with --wait how it ended.
    #[command(after_help = EXIT_CODES)]
    Start {
        /// The workflow's name.
        workflow: String,
        /// The execution's input: a JSON file, or `-` for stdin. Default `{}`.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The execution's name. Default: `<execution_name_prefix>-<uuid>`.
        /// Starting the same name with the same input again answers the
        /// same execution.
        #[arg(long)]
        name: Option<String>,
        /// Wait for the execution to end, print it, and exit with its outcome.
        #[arg(long)]
        wait: bool,
        /// With --wait: how long to wait.
        #[arg(long, default_value_t = 600, requires = "wait")]
        timeout_secs: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print an execution: status, times, output, or where and why it failed.
    Status {
        /// The execution's ARN.
        arn: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait for an execution to end (looking at doubling intervals, 200 ms
    /// up to 5 s), print it, and exit with its outcome.
    #[command(after_help = EXIT_CODES)]
    Wait {
        /// The execution's ARN.
        arn: String,
        /// How long to wait.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a running execution (StopExecution) and print it.
    Stop {
        /// The execution's ARN.
        arn: String,
        /// The error name its history records.
        #[arg(long)]
        error: Option<String>,
        /// The cause its history records.
        #[arg(long)]
        cause: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a workflow's executions, newest first.
    Executions {
        /// The workflow's name.
        workflow: String,
        /// Only executions with this status.
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<StatusFilter>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn main(registry: Registry) -> ExitCode {
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
        Command::Start {
            workflow,
            input,
            name,
            wait,
            timeout_secs,
            client,
        } => workflows::run(
            client,
            Request::Start {
                workflow,
                input,
                name,
                wait: wait.then(|| Duration::from_secs(timeout_secs)),
            },
        ),
        Command::Status { arn, client } => workflows::run(client, Request::Status { arn }),
        Command::Wait {
            arn,
            timeout_secs,
            client,
        } => workflows::run(
            client,
            Request::Wait {
                arn,
                timeout: Duration::from_secs(timeout_secs),
            },
        ),
        Command::Stop {
            arn,
            error,
            cause,
            client,
        } => workflows::run(client, Request::Stop { arn, error, cause }),
        Command::Executions {
            workflow,
            status,
            limit,
            client,
        } => workflows::run(
            client,
            Request::Executions {
                workflow,
                status,
                limit,
            },
        ),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_CONFIG)
}
