//! The client side next to the worker: start executions of the configured
//! workflows by name, watch them, read their output, stop them.
//!
//! A [`Workflows`] is built from `[workflows]` ([`WorkflowsConfig`]: names
//! to state machine ARNs, an execution name prefix, retries, a per-request
//! timeout) and the AWS configuration (`[aws]`, whose `endpoint_url` points
//! it at LocalStack). It calls Step Functions through the AWS SDK:
//! nothing here is on a task's hot path.
//!
//! ```no_run
//! # async fn demo(sdk: &aws_config::SdkConfig, config: &sfn_worker_core::config::WorkflowsConfig)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use sfn_worker_core::workflows::{ExecutionStatus, Workflows};
//!
//! #[derive(serde::Deserialize)]
//! struct Receipt { charged: bool }
//!
//! let workflows = Workflows::new(sdk, config).map_err(|e| format!("{e:?}"))?;
//! let arn = workflows.start("orders", &serde_json::json!({ "id": 7 })).await?;
//! let ended = workflows.wait(&arn, Duration::from_secs(60)).await?;
//! if ended.status == ExecutionStatus::Succeeded {
//!     let receipt: Option<Receipt> = workflows.output(&arn).await?;
//!     println!("charged: {}", receipt.is_some_and(|r| r.charged));
//! } else if let Some(failure) = workflows.history(&arn).await? {
//!     println!("failed in {:?}: {:?}", failure.state, failure.error);
//! }
//! # Ok(()) }
//! ```
//!
//! Calls that fail with throttling, a network error, a timeout or a 5xx
//! answer are retried `max_retries` times; starting is safe to retry
//! because the execution's name is chosen before the first try, and
//! Step Functions starts one execution per name.

mod config;
mod error;
mod execution;
mod history;
mod start;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use serde::de::DeserializeOwned;

use crate::aws::classify::classify;
use crate::aws::sdk_config::client_policy;
use crate::aws::{ApiError, Operation, retry};
use crate::config::{ConfigError, StateMachineArn};
use crate::limits::{MAX_CAUSE_CHARS, MAX_ERROR_CHARS};

pub use config::WorkflowsConfig;
pub use error::WorkflowError;
pub use execution::{Execution, ExecutionArn, ExecutionStatus, ExecutionSummary, rfc3339};
pub use history::Failure;

/// Starts and watches executions of the configured workflows. Cheap to
/// clone (the SDK client is shared).
#[derive(Debug, Clone)]
pub struct Workflows {
    client: aws_sdk_sfn::Client,
    machines: BTreeMap<String, StateMachineArn>,
    prefix: String,
    max_retries: u32,
}

/// The most events one `GetExecutionHistory` page holds.
const HISTORY_PAGE: i32 = 1000;
/// The most executions one `ListExecutions` page holds.
const LIST_PAGE: usize = 1000;

impl Workflows {
    /// A client for `config`'s workflows, calling Step Functions as `sdk`
    /// says (region, credentials, endpoint). Refuses a configuration that
    /// [`WorkflowsConfig::validate`] refuses.
    pub fn new(sdk: &SdkConfig, config: &WorkflowsConfig) -> Result<Self, Vec<ConfigError>> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(errors);
        }
        // The SDK's own retries are off: ours know which errors are worth
        // it and keep StartExecution's name across tries.
        let (retry, timeouts, stalled) =
            client_policy(Duration::from_secs(config.request_timeout_secs.get()));
        let conf = aws_sdk_sfn::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            .stalled_stream_protection(stalled)
            .build();
        Ok(Self {
            client: aws_sdk_sfn::Client::from_conf(conf),
            machines: config.state_machines.clone(),
            prefix: config.execution_name_prefix.clone(),
            max_retries: config.max_retries,
        })
    }

    /// The configured workflow names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.machines.keys().map(String::as_str)
    }

    /// The state machine of a workflow.
    pub fn state_machine(&self, workflow: &str) -> Result<&StateMachineArn, WorkflowError> {
        self.machines
            .get(workflow)
            .ok_or_else(|| WorkflowError::UnknownWorkflow {
                name: workflow.to_owned(),
                known: self.machines.keys().cloned().collect(),
            })
    }

    /// The workflow a state machine ARN is configured as, if any.
    pub fn workflow_of(&self, state_machine_arn: &str) -> Option<&str> {
        self.machines
            .iter()
            .find(|(_, arn)| arn.as_str() == state_machine_arn)
            .map(|(name, _)| name.as_str())
    }

    /// Where an execution is (`DescribeExecution`).
    pub async fn status(&self, arn: &ExecutionArn) -> Result<Execution, WorkflowError> {
        let d = self
            .call(Operation::DescribeExecution, || async {
                self.client
                    .describe_execution()
                    .execution_arn(arn.as_str())
                    .send()
                    .await
                    .map_err(classify)
            })
            .await
            .map_err(|e| WorkflowError::from_api(Operation::DescribeExecution, arn.as_str(), e))?;
        Ok(Execution {
            arn: ExecutionArn::unchecked(d.execution_arn),
            name: d.name.unwrap_or_else(|| arn.name().to_owned()),
            state_machine_arn: d.state_machine_arn,
            status: ExecutionStatus::from_sdk(&d.status),
            started: execution::system_time(&d.start_date),
            stopped: d.stop_date.as_ref().map(execution::system_time),
            input: d.input,
            output: d.output,
            error: d.error,
            cause: d.cause,
        })
    }

    /// The output of a succeeded execution as a `T`; `None` while it runs.
    /// An execution that ended otherwise is [`WorkflowError::Ended`].
    pub async fn output<T: DeserializeOwned>(
        &self,
        arn: &ExecutionArn,
    ) -> Result<Option<T>, WorkflowError> {
        let e = self.status(arn).await?;
        match e.status {
            ExecutionStatus::Succeeded => {}
            s if !s.is_terminal() => return Ok(None),
            status => {
                return Err(WorkflowError::Ended {
                    arn: e.arn,
                    status,
                    error: e.error,
                    cause: e.cause,
                });
            }
        }
        // A succeeded execution whose output is not included (a KMS key
        // the caller may not use) reads as JSON `null`.
        let text = e.output.as_deref().unwrap_or("null");
        serde_json::from_str(text)
            .map(Some)
            .map_err(|source| WorkflowError::Json {
                what: format!("output of {arn}"),
                source,
            })
    }

    /// Stop a running execution (`StopExecution`), with an optional error
    /// name and cause for its history.
    pub async fn stop(
        &self,
        arn: &ExecutionArn,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<(), WorkflowError> {
        for (field, value, max) in [
            ("error", error, MAX_ERROR_CHARS),
            ("cause", cause, MAX_CAUSE_CHARS),
        ] {
            if let Some(v) = value
                && v.chars().count() > max
            {
                return Err(WorkflowError::InvalidRequest {
                    field,
                    message: format!("at most {max} characters, got {}", v.chars().count()),
                });
            }
        }
        self.call(Operation::StopExecution, || async {
            self.client
                .stop_execution()
                .execution_arn(arn.as_str())
                .set_error(error.map(str::to_owned))
                .set_cause(cause.map(str::to_owned))
                .send()
                .await
                .map_err(classify)
        })
        .await
        .map(drop)
        .map_err(|e| WorkflowError::from_api(Operation::StopExecution, arn.as_str(), e))
    }

    /// Wait until the execution ends, looking 200 ms after the first look,
    /// then at doubling intervals up to 5 s; the last look is at `timeout`.
    /// Still running then: [`WorkflowError::Timeout`].
    pub async fn wait(
        &self,
        arn: &ExecutionArn,
        timeout: Duration,
    ) -> Result<Execution, WorkflowError> {
        let begun = Instant::now();
        let deadline = begun + timeout;
        let mut delays = retry::wait();
        loop {
            let e = self.status(arn).await?;
            if e.status.is_terminal() {
                return Ok(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WorkflowError::Timeout {
                    arn: e.arn,
                    waited: now - begun,
                    status: e.status,
                });
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::time::sleep(delay.min(deadline - now)).await;
        }
    }

    /// Why an execution failed, from its history: the state, the error and
    /// the cause. `None` while it runs and once it succeeded.
    pub async fn history(&self, arn: &ExecutionArn) -> Result<Option<Failure>, WorkflowError> {
        let mut events = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .call(Operation::GetExecutionHistory, || async {
                    self.client
                        .get_execution_history()
                        .execution_arn(arn.as_str())
                        .reverse_order(true)
                        .include_execution_data(false)
                        .max_results(HISTORY_PAGE)
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(classify)
                })
                .await
                .map_err(|e| {
                    WorkflowError::from_api(Operation::GetExecutionHistory, arn.as_str(), e)
                })?;
            events.extend(page.events.iter().map(history::event));
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        Ok(history::summarize(&events))
    }

    /// The newest executions of `workflow` (at most `limit`), optionally
    /// only those with `status`.
    pub async fn executions(
        &self,
        workflow: &str,
        status: Option<&ExecutionStatus>,
        limit: usize,
    ) -> Result<Vec<ExecutionSummary>, WorkflowError> {
        let machine = self.state_machine(workflow)?;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        while out.len() < limit {
            let page_size = (limit - out.len()).min(LIST_PAGE);
            let page = self
                .call(Operation::ListExecutions, || async {
                    self.client
                        .list_executions()
                        .state_machine_arn(machine.as_str())
                        .set_status_filter(status.map(ExecutionStatus::to_sdk))
                        .max_results(i32::try_from(page_size).unwrap_or(i32::MAX))
                        .set_next_token(next.clone())
                        .send()
                        .await
                        .map_err(classify)
                })
                .await
                .map_err(|e| match e.code.as_str() {
                    "StateMachineDoesNotExist" => WorkflowError::StateMachineNotFound {
                        workflow: workflow.to_owned(),
                        arn: machine.to_string(),
                    },
                    _ => WorkflowError::from_api(Operation::ListExecutions, machine.as_str(), e),
                })?;
            out.extend(page.executions.into_iter().map(|e| ExecutionSummary {
                arn: ExecutionArn::unchecked(e.execution_arn),
                name: e.name,
                status: ExecutionStatus::from_sdk(&e.status),
                started: execution::system_time(&e.start_date),
                stopped: e.stop_date.as_ref().map(execution::system_time),
            }));
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// One call, retried `max_retries` times on the errors worth it.
    async fn call<T, F, Fut>(&self, operation: Operation, mut send: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut delays = retry::request(self.max_retries);
        loop {
            match send().await {
                Ok(out) => return Ok(out),
                Err(e) if e.is_retryable() => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(%operation, code = %e.code, error = %e.message,
                            retry_in_ms = delay.as_millis() as u64, "call failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}
