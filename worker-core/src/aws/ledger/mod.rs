//! DynamoDB as the fleet's task ledger: one item per task, written with
//! conditional writes so that exactly one worker runs it
//! ([`crate::ledger`] holds the rules; this is the seam).
//!
//! The item, keyed by a hash of the task token or callback id (never the
//! token itself):
//!
//! | attribute | type | what |
//! |---|---|---|
//! | `pk` | S | hex SHA-256 of the token (the table's only key, HASH) |
//! | `st` | S | `IN_PROGRESS` or `COMPLETED` |
//! | `holder` | S | the worker holding or having settled it (worker name, process, a random id) |
//! | `lease_ms` | N | while `IN_PROGRESS`: when the claim ends unless renewed (Unix ms) |
//! | `expires_at` | N | the table's TTL attribute (Unix seconds): DynamoDB deletes the item some time after |
//! | `ok`, `out`, `err`, `cause` | BOOL, S | once `COMPLETED`: the outcome reported |
//!
//! TTL deletion is lazy (an expired item may be read for days), so no
//! condition relies on it: a claim's end is `lease_ms`, compared in the
//! condition itself.

mod direct;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;

use async_trait::async_trait;

use crate::aws::ApiError;
pub use direct::DirectDynamo;

/// The table's key attribute.
pub const KEY: &str = "pk";
/// The table's TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The claim is this worker's. `took_over`: from a worker whose lease
    /// had ended (it died, or lost touch with the table).
    Won {
        /// Whether another worker's expired claim was taken over.
        took_over: bool,
    },
    /// Another worker holds a live claim, until `lease_ms` (Unix ms) unless
    /// it renews it.
    HeldElsewhere {
        /// When that claim ends unless renewed.
        lease_ms: u64,
    },
    /// The task was settled already, with this outcome.
    Completed(Stored),
}

/// A settled task's outcome, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// Reported with `SendTaskSuccess` (or a callback's success): the output.
    Success(String),
    /// Reported with `SendTaskFailure` (or a callback's failure).
    Failure {
        /// The error name.
        error: String,
        /// The cause.
        cause: String,
    },
}

/// A claim to write: whose, and until when.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimRequest<'a> {
    /// The item's key (a hash of the token).
    pub key: &'a str,
    /// Who claims.
    pub holder: &'a str,
    /// Now, by the worker's clock (Unix ms): a claim ending before it is over.
    pub now_ms: u64,
    /// When the claim ends unless renewed (Unix ms).
    pub lease_ms: u64,
    /// The TTL attribute's value (Unix seconds).
    pub expires_at: u64,
}

/// The ledger table's shape, as the service describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableShape {
    /// The key attributes: (name, key type `HASH`/`RANGE`, attribute type `S`/`N`/`B`).
    pub keys: Vec<(String, String, String)>,
    /// The TTL attribute and its status (`ENABLED`, `ENABLING`, ...), if any.
    pub ttl: Option<(String, String)>,
}

impl TableShape {
    /// What is wrong with the table for a ledger, if anything: the key
    /// must be `pk` (string, HASH) alone, and TTL on `expires_at`.
    pub fn problem(&self) -> Option<String> {
        let want_key = (KEY.to_owned(), "HASH".to_owned(), "S".to_owned());
        if self.keys != [want_key] {
            let found: Vec<String> = self
                .keys
                .iter()
                .map(|(n, k, t)| format!("{n} ({k}, {t})"))
                .collect();
            return Some(format!(
                "expected the key to be {KEY} (HASH, type S) alone, found {}",
                if found.is_empty() {
                    "none".to_owned()
                } else {
                    found.join(", ")
                }
            ));
        }
        match &self.ttl {
            // AWS passes through ENABLING for up to an hour; moto answers
            // ENABLED at once.
            Some((attribute, status))
                if attribute == TTL_ATTRIBUTE && (status == "ENABLED" || status == "ENABLING") =>
            {
                None
            }
            Some((attribute, status)) => Some(format!(
                "expected time to live ENABLED on attribute {TTL_ATTRIBUTE}, found {status} on {attribute}"
            )),
            None => Some(format!(
                "expected time to live ENABLED on attribute {TTL_ATTRIBUTE}, found it disabled \
                 (aws dynamodb update-time-to-live --time-to-live-specification Enabled=true,AttributeName={TTL_ATTRIBUTE})"
            )),
        }
    }
}

/// The ledger's calls. Every write is conditional; a condition that fails
/// is an answer (`Ok`), not an error.
#[async_trait]
pub trait LedgerApi: Send + Sync {
    /// Claim the task: wins if no item exists, or the item is a claim that
    /// ended (or is this holder's own).
    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Claim, ApiError>;
    /// Extend this holder's claim to `lease_ms`; `false`: it is not this
    /// holder's any more (taken over, or settled).
    async fn renew(
        &self,
        key: &str,
        holder: &str,
        lease_ms: u64,
        expires_at: u64,
    ) -> Result<bool, ApiError>;
    /// Mark the task `COMPLETED` with its outcome; `false`: another worker
    /// holds or settled it (this claim was taken over).
    async fn settle(
        &self,
        key: &str,
        holder: &str,
        outcome: &Stored,
        expires_at: u64,
    ) -> Result<bool, ApiError>;
    /// Give up this holder's claim (the task was not run to its end here):
    /// the next delivery claims it at once. A claim that is not this
    /// holder's is left alone.
    async fn release(&self, key: &str, holder: &str) -> Result<(), ApiError>;
    /// The table's key schema and TTL.
    async fn describe(&self) -> Result<TableShape, ApiError>;
}
