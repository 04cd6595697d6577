//! Starting an execution, idempotently by name.

use serde::Serialize;

use super::{ExecutionArn, WorkflowError, Workflows};
use crate::aws::Operation;
use crate::aws::classify::classify;
use crate::config::arn::is_aws_name;
use crate::limits::{MAX_INPUT_BYTES, MAX_NAME_CHARS};

impl Workflows {
    /// Start an execution of `workflow` with `input`, named
    /// `<execution_name_prefix>-<uuid>`.
    pub async fn start<I: Serialize + ?Sized>(
        &self,
        workflow: &str,
        input: &I,
    ) -> Result<ExecutionArn, WorkflowError> {
        let name = format!(
            "{}-{}",
            self.prefix,
            uuid::Builder::from_random_bytes(rand::random()).into_uuid()
        );
        self.start_named(workflow, &name, input).await
    }

    /// Start an execution of `workflow` named `name`. Idempotent: if an
    /// execution of that name exists with the same input (equal as JSON),
    /// running or ended, its ARN is the answer and nothing new starts;
    /// with other input it is [`WorkflowError::ExecutionAlreadyExists`].
    pub async fn start_named<I: Serialize + ?Sized>(
        &self,
        workflow: &str,
        name: &str,
        input: &I,
    ) -> Result<ExecutionArn, WorkflowError> {
        let machine = self.state_machine(workflow)?;
        if !is_aws_name(name) {
            return Err(WorkflowError::InvalidRequest {
                field: "name",
                message: format!(
                    "expected 1 to {MAX_NAME_CHARS} characters without spaces, brackets, wildcards or \"#%\\^|~`$&,;:/, got {name:?}"
                ),
            });
        }
        let input = serde_json::to_string(input).map_err(|source| WorkflowError::Json {
            what: "input".into(),
            source,
        })?;
        if input.len() > MAX_INPUT_BYTES {
            return Err(WorkflowError::InvalidRequest {
                field: "input",
                message: format!(
                    "{} bytes; Step Functions takes at most {MAX_INPUT_BYTES}",
                    input.len()
                ),
            });
        }
        let started = self
            .call(Operation::StartExecution, || async {
                self.client
                    .start_execution()
                    .state_machine_arn(machine.as_str())
                    .name(name)
                    .input(&input)
                    .send()
                    .await
                    .map_err(classify)
            })
            .await;
        match started {
            Ok(out) => Ok(ExecutionArn::unchecked(out.execution_arn)),
            // AWS answers the same request again with the same execution
            // only while it runs (LocalStack too): after it ended, or after
            // a retry of a try that did start it, this is how a repeat
            // looks. Same input: the same request.
            Err(e) if e.code == "ExecutionAlreadyExists" => {
                let arn = machine.execution_arn(name);
                let existing = self.status(&arn).await?;
                if existing
                    .input
                    .as_deref()
                    .is_some_and(|text| same_json(text, &input))
                {
                    Ok(arn)
                } else {
                    Err(WorkflowError::ExecutionAlreadyExists { arn })
                }
            }
            Err(e) if e.code == "StateMachineDoesNotExist" => {
                Err(WorkflowError::StateMachineNotFound {
                    workflow: workflow.to_owned(),
                    arn: machine.to_string(),
                })
            }
            Err(e) => Err(WorkflowError::from_api(
                Operation::StartExecution,
                machine.as_str(),
                e,
            )),
        }
    }
}

/// Whether two JSON texts hold the same value (`{"a": 1}` is `{"a":1}`).
fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_compare_as_json() {
        assert!(same_json(
            r#"{"a": 1, "b": [1, 2]}"#,
            r#"{"b":[1,2],"a":1}"#
        ));
        assert!(!same_json(r#"{"a": 1}"#, r#"{"a": 2}"#));
        assert!(!same_json(r#"{"a": 1}"#, r#"{"a": 1.5}"#));
    }
}
