//! `[workflows]`: the state machines a configuration starts executions of,
//! by name, and how the client calls Step Functions.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::config::arn::is_aws_name;
use crate::config::{ConfigError, MAX_SECS, StateMachineArn, defaults};
use crate::limits::MAX_NAME_CHARS;

/// The characters `-<uuid>` adds to the prefix of a generated name.
pub(crate) const GENERATED_SUFFIX_CHARS: usize = 37;

/// `[workflows]`: workflow names and their state machines, and the
/// client's settings.
///
/// ```toml
/// [workflows]
/// execution_name_prefix = "orders"
/// [workflows.state_machines]
/// orders = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowsConfig {
    /// Executions started without a name are named `<prefix>-<uuid>`; at
    /// most 43 characters, as a name may be (no spaces, brackets,
    /// wildcards or `"#%\^|~`$&,;:/`). Default `sfn-worker`.
    #[serde(default = "defaults::execution_name_prefix")]
    pub execution_name_prefix: String,
    /// How often one call is retried after throttling, a network error, a
    /// timeout or a 5xx answer (with backoff and jitter). Default 3.
    #[serde(default = "defaults::workflow_max_retries")]
    pub max_retries: u32,
    /// One call's time limit, each try. Default 10.
    #[serde(default = "defaults::workflow_request_timeout_secs")]
    pub request_timeout_secs: NonZeroU64,
    /// Workflow name -> state machine ARN (`[workflows.state_machines]`).
    #[serde(default)]
    pub state_machines: BTreeMap<String, StateMachineArn>,
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        Self {
            execution_name_prefix: defaults::execution_name_prefix(),
            max_retries: defaults::workflow_max_retries(),
            request_timeout_secs: defaults::workflow_request_timeout_secs(),
            state_machines: BTreeMap::new(),
        }
    }
}

impl WorkflowsConfig {
    /// What parsing could not check, every problem with its field
    /// (`workflows.execution_name_prefix`). The ARNs were checked when
    /// parsed.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let max_prefix = MAX_NAME_CHARS - GENERATED_SUFFIX_CHARS;
        let prefix = &self.execution_name_prefix;
        if !is_aws_name(prefix) || prefix.chars().count() > max_prefix {
            errors.push(ConfigError::new(
                "workflows.execution_name_prefix",
                format!(
                    "expected 1 to {max_prefix} characters without spaces, brackets, wildcards or \"#%\\^|~`$&,;:/ \
                     (names are <prefix>-<uuid>, at most {MAX_NAME_CHARS}), got {prefix:?}"
                ),
            ));
        }
        if self.request_timeout_secs.get() > MAX_SECS {
            errors.push(ConfigError::new(
                "workflows.request_timeout_secs",
                format!(
                    "expected at most {MAX_SECS} (a year), got {}",
                    self.request_timeout_secs
                ),
            ));
        }
        for name in self.state_machines.keys() {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(ConfigError::new(
                    format!("workflows.state_machines.{name:?}"),
                    "expected a workflow name without spaces (it is typed on the command line)",
                ));
            }
        }
        errors
    }

    /// Whether it names any state machine: a configuration with only this
    /// is one for the workflow commands, not for `run`.
    pub fn is_empty(&self) -> bool {
        self.state_machines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<WorkflowsConfig, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply() {
        let c = parse(serde_json::json!({})).unwrap();
        assert_eq!(c, WorkflowsConfig::default());
        assert_eq!(
            (
                c.execution_name_prefix.as_str(),
                c.max_retries,
                c.request_timeout_secs.get()
            ),
            ("sfn-worker", 3, 10)
        );
        assert!(c.validate().is_empty());
    }

    #[test]
    fn arns_are_checked_when_parsed() {
        let err = parse(serde_json::json!({ "state_machines": {
            "orders": "arn:aws:states:us-east-1:123456789012:activity:orders"
        }}))
        .unwrap_err();
        assert!(err.contains("expected a state machine ARN"), "{err}");
        // The control: a state machine ARN is taken.
        let ok = parse(serde_json::json!({ "state_machines": {
            "orders": "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
        }}))
        .unwrap();
        assert_eq!(ok.state_machines["orders"].name(), "orders");
    }

    #[test]
    fn unknown_fields_and_zero_timeouts_are_refused() {
        let err = parse(serde_json::json!({ "max_retry": 3 })).unwrap_err();
        assert!(err.contains("unknown field `max_retry`"), "{err}");
        let err = parse(serde_json::json!({ "request_timeout_secs": 0 })).unwrap_err();
        assert!(err.contains("nonzero"), "{err}");
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let c = parse(serde_json::json!({
            "execution_name_prefix": "has space",
            "request_timeout_secs": MAX_SECS + 1,
            "state_machines": {
                "": "arn:aws:states:us-east-1:123456789012:stateMachine:a",
                "two words": "arn:aws:states:us-east-1:123456789012:stateMachine:b",
                "fine": "arn:aws:states:us-east-1:123456789012:stateMachine:c"
            }
        }))
        .unwrap();
        let fields: Vec<_> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "workflows.execution_name_prefix",
                "workflows.request_timeout_secs",
                "workflows.state_machines.\"\"",
                "workflows.state_machines.\"two words\"",
            ]
        );
    }

    #[test]
    fn the_prefix_leaves_room_for_the_uuid() {
        let at = |n: usize| WorkflowsConfig {
            execution_name_prefix: "p".repeat(n),
            ..WorkflowsConfig::default()
        };
        assert!(at(43).validate().is_empty());
        let errors = at(44).validate();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("1 to 43 characters"),
            "{}",
            errors[0]
        );
        assert_eq!(at(0).validate().len(), 1, "empty");
    }
}
