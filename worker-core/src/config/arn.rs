use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The parts every Step Functions ARN shares, checked:
/// `arn:PARTITION:states:REGION:ACCOUNT:TYPE:...`. Returns the parts after
/// the resource type, or why `s` is not such an ARN (`parts` is how many
/// colon-separated parts it must have).
pub(crate) fn states_arn<'a>(
    s: &'a str,
    resource: &str,
    parts: &[usize],
) -> Result<Vec<&'a str>, &'static str> {
    let all: Vec<&str> = s.split(':').collect();
    if !parts.contains(&all.len()) {
        return Err(match parts {
            [7] => "it does not have 7 colon-separated parts",
            [8] => "it does not have 8 colon-separated parts",
            _ => "it does not have 7 or 8 colon-separated parts",
        });
    }
    if all[0] != "arn" || !all[1].starts_with("aws") {
        return Err("it does not start with arn:aws");
    }
    if all[2] != "states" {
        return Err("the service is not `states`");
    }
    let region_ok = !all[3].is_empty()
        && all[3]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err("the region is missing or malformed");
    }
    if all[4].len() != 12 || !all[4].chars().all(|c| c.is_ascii_digit()) {
        return Err("the account is not 12 digits");
    }
    if all[5] != resource {
        return Err(match resource {
            "activity" => "the resource type is not `activity`",
            "stateMachine" => "the resource type is not `stateMachine`",
            _ => "the resource type is not `execution`",
        });
    }
    Ok(all[6..].to_vec())
}

/// Whether `name` is a name Step Functions accepts for a state machine or
/// an execution: 1 to 80 characters, none of them white space, brackets,
/// wildcards, control characters or `" # % \ ^ | ~ ` $ & , ; : /` (the
/// StartExecution and CreateStateMachine API references).
pub(crate) fn is_aws_name(name: &str) -> bool {
    (1..=crate::limits::MAX_NAME_CHARS).contains(&name.chars().count())
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

/// A Step Functions activity ARN, checked for shape when parsed:
/// `arn:PARTITION:states:REGION:ACCOUNT:activity:NAME`.
///
/// ```
/// use sfn_worker_core::config::ActivityArn;
/// let arn: ActivityArn = "arn:aws:states:us-east-1:123456789012:activity:resize".parse().unwrap();
/// assert_eq!(arn.name(), "resize");
/// assert!("arn:aws:states:us-east-1:123456789012:stateMachine:x".parse::<ActivityArn>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ActivityArn {
    arn: String,
    name_at: usize,
}

impl ActivityArn {
    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    /// The activity's name (the last part).
    pub fn name(&self) -> &str {
        &self.arn[self.name_at..]
    }
    /// The region part.
    pub fn region(&self) -> &str {
        self.arn.split(':').nth(3).unwrap_or_default()
    }
}

impl fmt::Display for ActivityArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

const EXPECTED: &str =
    "expected an activity ARN like arn:aws:states:us-east-1:123456789012:activity:NAME";

impl FromStr for ActivityArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Err(format!("{EXPECTED}, got {s:?} ({why})"));
        let rest = match states_arn(s, "activity", &[7]) {
            Ok(rest) => rest,
            Err(why) => return bad(why),
        };
        let name = rest[0];
        let name_ok = (1..=80).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return bad("the name must be 1-80 characters of A-Z a-z 0-9 - _");
        }
        Ok(Self {
            arn: s.to_owned(),
            name_at: s.len() - name.len(),
        })
    }
}

impl TryFrom<String> for ActivityArn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ActivityArn> for String {
    fn from(a: ActivityArn) -> String {
        a.arn
    }
}

/// A Step Functions state machine ARN, checked for shape when parsed:
/// `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`, or with a
/// version or alias after the name (`...:stateMachine:NAME:3`,
/// `...:stateMachine:NAME:prod`), which `StartExecution` also takes.
///
/// ```
/// use sfn_worker_core::config::StateMachineArn;
/// let arn: StateMachineArn = "arn:aws:states:us-east-1:123456789012:stateMachine:orders".parse().unwrap();
/// assert_eq!(arn.name(), "orders");
/// assert_eq!(
///     arn.execution_arn("run-1").as_str(),
///     "arn:aws:states:us-east-1:123456789012:execution:orders:run-1"
/// );
/// assert!("arn:aws:states:us-east-1:123456789012:activity:x".parse::<StateMachineArn>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct StateMachineArn {
    arn: String,
}

const EXPECTED_MACHINE: &str =
    "expected a state machine ARN like arn:aws:states:us-east-1:123456789012:stateMachine:NAME";

impl StateMachineArn {
    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
    /// The state machine's name (without a version or alias).
    pub fn name(&self) -> &str {
        self.arn.split(':').nth(6).unwrap_or_default()
    }
    /// The ARN an execution of this state machine named `name` has: the
    /// same partition, region and account, `execution`, the machine's name
    /// (a version or alias is not part of it) and `name`.
    pub fn execution_arn(&self, name: &str) -> crate::workflows::ExecutionArn {
        let prefix: Vec<&str> = self.arn.split(':').take(5).collect();
        crate::workflows::ExecutionArn::unchecked(format!(
            "{}:execution:{}:{name}",
            prefix.join(":"),
            self.name()
        ))
    }
}

impl fmt::Display for StateMachineArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl FromStr for StateMachineArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| Err(format!("{EXPECTED_MACHINE}, got {s:?} ({why})"));
        let rest = match states_arn(s, "stateMachine", &[7, 8]) {
            Ok(rest) => rest,
            Err(why) => return bad(why),
        };
        if !is_aws_name(rest[0]) {
            return bad(
                "the name must be 1-80 characters without spaces, brackets, wildcards or \"#%\\^|~`$&,;:/",
            );
        }
        if rest.get(1).is_some_and(|q| !is_aws_name(q)) {
            return bad("the version or alias after the name is empty or malformed");
        }
        Ok(Self { arn: s.to_owned() })
    }
}

impl TryFrom<String> for StateMachineArn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<StateMachineArn> for String {
    fn from(a: StateMachineArn) -> String {
        a.arn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_shapes() {
        for ok in [
            "arn:aws:states:us-east-1:000000000000:activity:resize",
            "arn:aws-cn:states:cn-north-1:123456789012:activity:a_b-C9",
            "arn:aws-us-gov:states:us-gov-west-1:123456789012:activity:x",
        ] {
            assert!(ok.parse::<ActivityArn>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        for (bad, why) in [
            ("resize", "7 colon-separated parts"),
            ("arn:aws:sqs:us-east-1:000000000000:activity:x", "service"),
            ("arn:aws:states:us-east-1:0000:activity:x", "12 digits"),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:x",
                "resource type",
            ),
            ("arn:aws:states:us-east-1:000000000000:activity:", "name"),
            ("arn:aws:states:us-east-1:000000000000:activity:a b", "name"),
            ("arn:aws:states::000000000000:activity:x", "region"),
        ] {
            let err = bad.parse::<ActivityArn>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("expected an activity ARN"), "{err}");
        }
    }

    #[test]
    fn state_machine_arns_are_checked_like_activity_arns() {
        for ok in [
            "arn:aws:states:us-east-1:000000000000:stateMachine:orders",
            "arn:aws:states:us-east-1:000000000000:stateMachine:orders.v2",
            "arn:aws:states:us-east-1:000000000000:stateMachine:orders:3",
            "arn:aws:states:us-east-1:000000000000:stateMachine:orders:prod",
            "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:x",
        ] {
            assert!(ok.parse::<StateMachineArn>().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("orders", "7 or 8 colon-separated parts"),
            (
                "arn:aws:lambda:us-east-1:000000000000:stateMachine:x",
                "service",
            ),
            (
                "arn:aws:states:us-east-1:00000000000x:stateMachine:x",
                "12 digits",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:activity:x",
                "resource type",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:",
                "name",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:a b",
                "name",
            ),
            (
                "arn:aws:states:us-east-1:000000000000:stateMachine:x:",
                "version or alias",
            ),
            ("arn:aws:states:US:000000000000:stateMachine:x", "region"),
        ] {
            let err = bad.parse::<StateMachineArn>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("expected a state machine ARN"), "{err}");
        }
    }

    #[test]
    fn an_execution_arn_drops_the_version_or_alias() {
        let arn: StateMachineArn = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders:prod"
            .parse()
            .unwrap();
        assert_eq!(
            arn.execution_arn("x").as_str(),
            "arn:aws:states:eu-west-1:123456789012:execution:orders:x"
        );
    }

    #[test]
    fn aws_names() {
        for ok in ["a", "orders-1_2.v3", &"x".repeat(80), "ünïcode"] {
            assert!(is_aws_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "a/b",
            "a*",
            "a\u{7}",
            &"x".repeat(81),
            "a{b}",
        ] {
            assert!(!is_aws_name(bad), "{bad:?}");
        }
    }
}
