//! What an execution is, as the workflows client answers it.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::WorkflowError;
use crate::config::arn::states_arn;

/// A Step Functions execution ARN, checked for shape when parsed:
/// `arn:PARTITION:states:REGION:ACCOUNT:execution:MACHINE:NAME`.
///
/// ```
/// use sfn_worker_core::workflows::{ExecutionArn, WorkflowError};
/// let arn: ExecutionArn = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1".parse().unwrap();
/// assert_eq!((arn.state_machine_name(), arn.name()), ("orders", "run-1"));
/// assert!(matches!("run-1".parse::<ExecutionArn>(), Err(WorkflowError::InvalidArn { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecutionArn(String);

const EXPECTED: &str =
    "expected an execution ARN like arn:aws:states:us-east-1:123456789012:execution:MACHINE:NAME";

impl ExecutionArn {
    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The state machine's name (the part before the execution's name; a
    /// Distributed Map's child executions have `MACHINE/LABEL` there).
    pub fn state_machine_name(&self) -> &str {
        self.0.split(':').nth(6).unwrap_or_default()
    }
    /// The execution's name (the last part).
    pub fn name(&self) -> &str {
        self.0.rsplit(':').next().unwrap_or_default()
    }
    /// An ARN Step Functions gave us: taken as it is.
    pub(crate) fn unchecked(arn: String) -> Self {
        Self(arn)
    }
}

impl FromStr for ExecutionArn {
    type Err = WorkflowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            Err(WorkflowError::InvalidArn {
                arn: s.to_owned(),
                reason: format!("{EXPECTED} ({why})"),
            })
        };
        let rest = match states_arn(s, "execution", &[8]) {
            Ok(rest) => rest,
            Err(why) => return bad(why),
        };
        let part_ok = |p: &str| !p.is_empty() && !p.chars().any(|c| c.is_whitespace());
        if !part_ok(rest[0]) || !part_ok(rest[1]) {
            return bad("the state machine's or the execution's name is empty or has spaces");
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ExecutionArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ExecutionArn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Where an execution is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutionStatus {
    /// Still going.
    Running,
    /// Ended with output.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ran past the state machine's `TimeoutSeconds`.
    TimedOut,
    /// Stopped (`StopExecution`).
    Aborted,
    /// A redrive was asked for and has not begun: it will run again.
    PendingRedrive,
    /// A status this client does not know yet, as Step Functions spells it.
    Other(String),
}

impl ExecutionStatus {
    /// Every status, as Step Functions spells it (for a CLI's choices).
    pub const NAMES: [&'static str; 6] = [
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "TIMED_OUT",
        "ABORTED",
        "PENDING_REDRIVE",
    ];

    /// As Step Functions spells it: `RUNNING`, `TIMED_OUT`, ...
    pub fn as_str(&self) -> &str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
            Self::PendingRedrive => "PENDING_REDRIVE",
            Self::Other(s) => s,
        }
    }

    /// Whether the execution has ended (a redrive pending is not an end:
    /// it will run again; an unknown status is taken as an end, so that
    /// `wait` does not wait for ever on a status it cannot read).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Running | Self::PendingRedrive)
    }

    pub(crate) fn from_sdk(s: &aws_sdk_sfn::types::ExecutionStatus) -> Self {
        s.as_str()
            .parse()
            .unwrap_or_else(|()| Self::Other(s.as_str().to_owned()))
    }

    pub(crate) fn to_sdk(&self) -> aws_sdk_sfn::types::ExecutionStatus {
        aws_sdk_sfn::types::ExecutionStatus::from(self.as_str())
    }
}

impl FromStr for ExecutionStatus {
    type Err = ();

    /// One of [`ExecutionStatus::NAMES`], in any case.
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "TIMED_OUT" => Self::TimedOut,
            "ABORTED" => Self::Aborted,
            "PENDING_REDRIVE" => Self::PendingRedrive,
            _ => return Err(()),
        })
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution, as `DescribeExecution` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Execution {
    /// Its ARN.
    pub arn: ExecutionArn,
    /// Its name.
    pub name: String,
    /// Its state machine's ARN.
    pub state_machine_arn: String,
    /// Where it is.
    pub status: ExecutionStatus,
    /// When it started.
    pub started: SystemTime,
    /// When it ended; `None` while it runs.
    pub stopped: Option<SystemTime>,
    /// Its input, JSON text (`None` when Step Functions does not include
    /// it, for instance under a KMS key the caller may not use).
    pub input: Option<String>,
    /// Its output, JSON text; only once it has succeeded.
    pub output: Option<String>,
    /// The error it ended with (failed, timed out; stopped, on AWS).
    pub error: Option<String>,
    /// The cause it ended with.
    pub cause: Option<String>,
}

/// One execution in a listing (`ListExecutions`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionSummary {
    /// Its ARN.
    pub arn: ExecutionArn,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub status: ExecutionStatus,
    /// When it started.
    pub started: SystemTime,
    /// When it ended; `None` while it runs.
    pub stopped: Option<SystemTime>,
}

/// A time as RFC 3339 in UTC, to the millisecond, as Step Functions'
/// console shows it: `2026-11-30T00:55:00.011Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    // Whole seconds from the SDK's formatter, then always three digits
    // (it would write `.3Z` for 300 ms: uneven columns).
    let seconds = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs());
    match aws_smithy_types::DateTime::from(seconds)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
    {
        Ok(text) => format!(
            "{}.{:03}Z",
            text.trim_end_matches('Z'),
            since.subsec_millis()
        ),
        Err(_) => format!("{t:?}"),
    }
}

pub(crate) fn system_time(t: &aws_smithy_types::DateTime) -> SystemTime {
    SystemTime::try_from(*t).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_are_checked_for_shape() {
        let ok: ExecutionArn =
            "arn:aws:states:us-east-1:000000000000:execution:orders:sfn-worker-1"
                .parse()
                .unwrap();
        assert_eq!(
            (ok.state_machine_name(), ok.name()),
            ("orders", "sfn-worker-1")
        );
        assert!(
            "arn:aws:states:us-east-1:000000000000:execution:orders/map-label:child"
                .parse::<ExecutionArn>()
                .is_ok()
        );
        for (bad, why) in [
            ("not-an-arn", "8 colon-separated parts"),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:orders:x",
                "resource type is not `execution`",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:orders",
                "8 colon",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:execution:orders:",
                "name",
            ),
            (
                "arn:aws:sqs:us-east-1:000000000000:execution:orders:x",
                "service",
            ),
        ] {
            match bad.parse::<ExecutionArn>() {
                Err(WorkflowError::InvalidArn { arn, reason }) => {
                    assert_eq!(arn, bad);
                    assert!(reason.contains(why), "{bad}: {reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn statuses_read_and_spell_as_step_functions_does() {
        for name in ExecutionStatus::NAMES {
            let s: ExecutionStatus = name.parse().unwrap();
            assert_eq!(s.as_str(), name);
            assert_eq!(ExecutionStatus::from_sdk(&s.to_sdk()), s);
        }
        assert_eq!("running".parse(), Ok(ExecutionStatus::Running));
        assert!("DONE".parse::<ExecutionStatus>().is_err());
        let new = aws_sdk_sfn::types::ExecutionStatus::from("PAUSED");
        assert_eq!(
            ExecutionStatus::from_sdk(&new),
            ExecutionStatus::Other("PAUSED".into())
        );
        let ended: Vec<_> = ExecutionStatus::NAMES
            .iter()
            .filter(|n| n.parse::<ExecutionStatus>().unwrap().is_terminal())
            .collect();
        assert_eq!(ended, [&"SUCCEEDED", &"FAILED", &"TIMED_OUT", &"ABORTED"]);
    }

    #[test]
    fn times_print_as_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_796_000_100_011_654);
        assert_eq!(rfc3339(t), "2026-11-30T00:55:00.011Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_000_100_300);
        assert_eq!(rfc3339(t), "2026-11-30T00:55:00.300Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_100);
        assert_eq!(rfc3339(t), "2026-11-30T00:55:00.000Z");
    }
}
