use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
        let parts: Vec<&str> = s.split(':').collect();
        let bad = |why: &str| Err(format!("{EXPECTED}, got {s:?} ({why})"));
        if parts.len() != 7 {
            return bad("it does not have 7 colon-separated parts");
        }
        if parts[0] != "arn" || !parts[1].starts_with("aws") {
            return bad("it does not start with arn:aws");
        }
        if parts[2] != "states" {
            return bad("the service is not `states`");
        }
        let region_ok = !parts[3].is_empty()
            && parts[3]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return bad("the region is missing or malformed");
        }
        if parts[4].len() != 12 || !parts[4].chars().all(|c| c.is_ascii_digit()) {
            return bad("the account is not 12 digits");
        }
        if parts[5] != "activity" {
            return bad("the resource type is not `activity`");
        }
        let name = parts[6];
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
}
