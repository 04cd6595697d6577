//! The workflow commands: `start`, `status`, `wait`, `stop`, `executions`,
//! on the library's [`Workflows`] client, with `[aws]` and `[workflows]`
//! from the configuration file.

mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::value::RawValue;
use sfn_worker_core::workflows::{
    Execution, ExecutionArn, ExecutionStatus, WorkflowError, Workflows,
};

use crate::cli::{
    EXIT_ABORTED, EXIT_CONFIG, EXIT_ERROR, EXIT_FAILED, EXIT_STILL_RUNNING, EXIT_TIMED_OUT,
};
use crate::config_file::{ConfigSource, load_for_workflows};

/// What every workflow command takes.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// The TOML configuration file ([aws], [workflows]); or
    /// SFN_WORKER_CONFIG_TOML.
    #[arg(long, short, env = "SFN_WORKER_CONFIG")]
    config: Option<PathBuf>,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `--output`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Aligned text for a person.
    Table,
    /// One JSON document for a script.
    Json,
}

/// `executions --status`: as Step Functions spells it, in any case.
#[derive(ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum StatusFilter {
    /// Still going.
    Running,
    /// Ended with output.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ran past the state machine's TimeoutSeconds.
    TimedOut,
    /// Stopped.
    Aborted,
    /// A redrive has been asked for.
    PendingRedrive,
}

impl StatusFilter {
    fn status(self) -> ExecutionStatus {
        match self {
            Self::Running => ExecutionStatus::Running,
            Self::Succeeded => ExecutionStatus::Succeeded,
            Self::Failed => ExecutionStatus::Failed,
            Self::TimedOut => ExecutionStatus::TimedOut,
            Self::Aborted => ExecutionStatus::Aborted,
            Self::PendingRedrive => ExecutionStatus::PendingRedrive,
        }
    }
}

/// One workflow command, parsed.
#[derive(Debug)]
pub(crate) enum Request {
    Start {
        workflow: String,
        input: Option<PathBuf>,
        name: Option<String>,
        wait: Option<Duration>,
    },
    Status {
        arn: String,
    },
    Wait {
        arn: String,
        timeout: Duration,
    },
    Stop {
        arn: String,
        error: Option<String>,
        cause: Option<String>,
    },
    Executions {
        workflow: String,
        status: Option<StatusFilter>,
        limit: usize,
    },
}

/// Why a command did not succeed: its exit code and what to say.
struct Failed {
    code: u8,
    message: String,
}

impl From<WorkflowError> for Failed {
    fn from(e: WorkflowError) -> Self {
        let code = match &e {
            WorkflowError::UnknownWorkflow { .. }
            | WorkflowError::InvalidArn { .. }
            | WorkflowError::InvalidRequest { .. }
            | WorkflowError::Json { .. } => EXIT_CONFIG,
            WorkflowError::Timeout { .. } => EXIT_STILL_RUNNING,
            _ => EXIT_ERROR,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

fn usage(message: String) -> Failed {
    Failed {
        code: EXIT_CONFIG,
        message,
    }
}

pub(crate) fn run(args: ClientArgs, request: Request) -> ExitCode {
    let result = super::runtime(1).map_err(|message| Failed {
        code: EXIT_ERROR,
        message,
    });
    let result = result.and_then(|rt| {
        let result = rt.block_on(serve(&args, request));
        super::finish(rt);
        result
    });
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn serve(args: &ClientArgs, request: Request) -> Result<ExitCode, Failed> {
    let source = ConfigSource::resolve(args.config.clone()).map_err(usage)?;
    let config = load_for_workflows(&source).map_err(usage)?;
    let sdk = config.aws.sdk_config().await;
    if sdk.region().is_none() {
        return Err(usage(format!(
            "no AWS region: set [aws] region in {} or AWS_REGION",
            source.name()
        )));
    }
    let workflows = Workflows::new(&sdk, &config.workflows).map_err(|errors| {
        usage(
            errors
                .iter()
                .map(|e| format!("{}: {e}", source.name()))
                .collect::<Vec<_>>()
                .join("\n  "),
        )
    })?;
    let out = Out {
        workflows: &workflows,
        format: args.output,
    };
    match request {
        Request::Start {
            workflow,
            input,
            name,
            wait,
        } => {
            let text = match &input {
                Some(path) => super::read_json_input(path).map_err(usage)?,
                None => "{}".to_owned(),
            };
            // Sent as written: no reformatting of the caller's JSON.
            let raw: Box<RawValue> = serde_json::from_str(&text)
                .map_err(|e| usage(format!("--input: not JSON: {e}")))?;
            let arn = match &name {
                Some(name) => workflows.start_named(&workflow, name, &raw).await?,
                None => workflows.start(&workflow, &raw).await?,
            };
            match wait {
                Some(timeout) => out.wait(&arn, timeout).await,
                None => {
                    render::started(&arn, out.format);
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Request::Status { arn } => {
            let arn: ExecutionArn = arn.parse()?;
            let e = workflows.status(&arn).await?;
            out.execution(&e).await?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Wait { arn, timeout } => out.wait(&arn.parse()?, timeout).await,
        Request::Stop { arn, error, cause } => {
            let arn: ExecutionArn = arn.parse()?;
            workflows
                .stop(&arn, error.as_deref(), cause.as_deref())
                .await?;
            let e = workflows.status(&arn).await?;
            out.execution(&e).await?;
            Ok(ExitCode::SUCCESS)
        }
        Request::Executions {
            workflow,
            status,
            limit,
        } => {
            let status = status.map(StatusFilter::status);
            let list = workflows
                .executions(&workflow, status.as_ref(), limit)
                .await?;
            render::executions(&list, out.format);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Printing answers, with what they need to ask for.
struct Out<'a> {
    workflows: &'a Workflows,
    format: Output,
}

impl Out<'_> {
    /// Print an execution; for one that ended badly, with its failure from
    /// the history.
    async fn execution(&self, e: &Execution) -> Result<(), Failed> {
        let failure = match e.status {
            ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {
                self.workflows.history(&e.arn).await?
            }
            _ => None,
        };
        let workflow = self.workflows.workflow_of(&e.state_machine_arn);
        render::execution(e, workflow, failure.as_ref(), self.format);
        Ok(())
    }

    /// Wait, print the execution, exit with its outcome.
    async fn wait(&self, arn: &ExecutionArn, timeout: Duration) -> Result<ExitCode, Failed> {
        match self.workflows.wait(arn, timeout).await {
            Ok(e) => {
                self.execution(&e).await?;
                Ok(ExitCode::from(outcome(&e.status)))
            }
            Err(timed_out @ WorkflowError::Timeout { .. }) => {
                // Shown as it is now, so the output has one shape.
                let e = self.workflows.status(arn).await?;
                self.execution(&e).await?;
                if e.status.is_terminal() {
                    return Ok(ExitCode::from(outcome(&e.status)));
                }
                Err(timed_out.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The exit code of an ended execution.
fn outcome(status: &ExecutionStatus) -> u8 {
    match status {
        ExecutionStatus::Succeeded => 0,
        ExecutionStatus::Failed => EXIT_FAILED,
        ExecutionStatus::TimedOut => EXIT_TIMED_OUT,
        ExecutionStatus::Aborted => EXIT_ABORTED,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => EXIT_STILL_RUNNING,
        _ => EXIT_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_filter_is_a_step_functions_status() {
        for f in StatusFilter::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(
                f.status().as_str(),
                name,
                "the choice reads as it is spelled"
            );
            assert!(ExecutionStatus::NAMES.contains(&name.as_str()), "{name}");
        }
        assert_eq!(
            StatusFilter::value_variants().len(),
            ExecutionStatus::NAMES.len()
        );
    }

    #[test]
    fn exit_codes_are_distinct_per_outcome() {
        let codes: Vec<u8> = ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "RUNNING"]
            .iter()
            .map(|s| outcome(&s.parse().unwrap()))
            .collect();
        assert_eq!(codes, [0, 3, 4, 5, 6]);
        let mut unique = codes.clone();
        unique.extend([EXIT_ERROR, EXIT_CONFIG]);
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 7);
    }
}
