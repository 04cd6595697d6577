//! `[ledger]` and the bindings' `ledger` settings.

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// A claim's length unless renewed, by default: renewed every third of it,
/// so two renewals in a row may fail before another worker can take over.
pub const LEASE_SECS: u64 = 60;
/// The shortest claim: renewals every 3 s at most, on the task's timer.
pub const MIN_LEASE_SECS: u64 = 10;
/// How long a settled task's record is kept by default: 14 days, SQS's
/// longest retention, so no copy of a message outlives its record.
pub const KEEP_SECS: u64 = 14 * 24 * 60 * 60;

/// `[ledger]`: the fleet's task ledger, a DynamoDB table (see the README's
/// "Exactly once across workers").
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LedgerConfig {
    /// The DynamoDB table: key `pk` (string, HASH) alone, time to live on
    /// `expires_at`.
    pub table: String,
    /// DynamoDB's endpoint, for tests (moto, DynamoDB Local); default: as
    /// the SDK resolves DynamoDB's (`AWS_ENDPOINT_URL_DYNAMODB`, `[aws]
    /// endpoint_url`, `AWS_ENDPOINT_URL`, then AWS).
    pub endpoint_url: Option<String>,
    /// How long a claim lasts unless renewed; a worker that dies holding
    /// one is taken over this long after its last renewal. Renewed every
    /// third of it. Default 60; at least 10.
    #[serde(default = "lease_secs")]
    pub lease_secs: NonZeroU64,
    /// How long a settled task's record is kept (the TTL). Default 1209600
    /// (14 days, SQS's longest retention).
    #[serde(default = "keep_secs")]
    pub keep_secs: NonZeroU64,
}

impl LedgerConfig {
    /// A ledger in `table`, every other field at its default.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            endpoint_url: None,
            lease_secs: lease_secs(),
            keep_secs: keep_secs(),
        }
    }

    /// What is wrong with the section, field by field.
    pub(crate) fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let t = &self.table;
        // DynamoDB's rule for table names.
        if !(3..=255).contains(&t.len())
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            errors.push(ConfigError::new(
                "ledger.table",
                format!(
                    "expected a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _ - .), got {t:?}"
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url
            && url::Url::parse(url).is_err()
        {
            errors.push(ConfigError::new(
                "ledger.endpoint_url",
                format!("expected a URL like http://localhost:5000, got {url:?}"),
            ));
        }
        let lease = self.lease_secs.get();
        if !(MIN_LEASE_SECS..=crate::config::MAX_SECS).contains(&lease) {
            errors.push(ConfigError::new(
                "ledger.lease_secs",
                format!(
                    "expected {MIN_LEASE_SECS} to {} (renewed every third of it), got {lease}",
                    crate::config::MAX_SECS
                ),
            ));
        }
        if self.keep_secs.get() > crate::config::MAX_SECS {
            errors.push(ConfigError::new(
                "ledger.keep_secs",
                format!(
                    "expected at most {} (a year), got {}",
                    crate::config::MAX_SECS,
                    self.keep_secs
                ),
            ));
        }
        errors
    }
}

fn lease_secs() -> NonZeroU64 {
    NonZeroU64::new(LEASE_SECS).unwrap_or(NonZeroU64::MIN)
}

fn keep_secs() -> NonZeroU64 {
    NonZeroU64::new(KEEP_SECS).unwrap_or(NonZeroU64::MIN)
}

/// A binding's `ledger_unreachable`: what to do with a task when the
/// ledger cannot be reached to claim it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerUnreachable {
    /// Do not run it: an SQS message is left to come back after its
    /// visibility timeout; an activity task is failed with
    /// `Worker.LedgerUnavailable` (its state's `Retry` runs it again). A
    /// late task is better than a payment made twice.
    #[default]
    FailClosed,
    /// Run it without the guarantee (a copy on another worker may run too).
    FailOpen,
}
