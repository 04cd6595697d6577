//! The narrow seam between the worker and AWS, one folder per service.
//!
//! - [`sfn`]: Step Functions ([`SfnApi`]): the SDK client, the direct client
//!   and (feature `test-util`) an in-process fake.
//! - [`sqs`]: SQS ([`SqsApi`]): the SDK client and (feature `test-util`) an
//!   in-process fake.
//! - [`lambda`]: Lambda's durable-execution callbacks: the direct client
//!   and (feature `test-util`) an in-process fake.
//! - [`ledger`]: DynamoDB as the fleet's task ledger ([`ledger::LedgerApi`]):
//!   the direct client and (feature `test-util`) an in-process fake.
//! - [`CompletionTarget`]: where a task's result goes (Step Functions
//!   `SendTask*`, or a durable execution's callback), one seam.
//!
//! Errors arrive already classified ([`ApiErrorKind`], one classification for
//! every service), so retry decisions live in one place. [`Operation`] names
//! every call, for metrics, the clients and the fakes alike.

pub(crate) mod classify;
mod credentials;
mod error;
pub mod lambda;
pub mod ledger;
mod operation;
pub(crate) mod pacing;
pub(crate) mod retry;
pub(crate) mod sdk_config;
pub mod sfn;
mod signed;
mod sigv4;
pub mod sqs;
mod target;

pub use error::{ApiError, ApiErrorKind};
pub use lambda::DirectLambda;
pub use operation::Operation;
pub(crate) use sdk_config::load_sdk_config;
// Without `test-util` only the worker uses the seam, and not every name.
#[cfg_attr(not(any(test, feature = "test-util")), allow(unused_imports))]
pub use sfn::{ActivityTask, DirectClientError, DirectSfn, SdkSfn, SfnApi};
#[cfg_attr(not(any(test, feature = "test-util")), allow(unused_imports))]
pub use sqs::{BatchEntry, DirectSqs, EntryResult, Message, ReceiveRequest, SdkSqs, SqsApi};
pub use target::{CompletionTarget, StepFunctions, TargetOperations};

/// The in-process fakes of the seam, for tests of code built on this crate.
#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    pub use super::lambda::fake::*;
    pub use super::ledger::fake::*;
    pub use super::sfn::fake::*;
    pub use super::sqs::fake::*;
}
