//! The SQS side of the seam: [`SqsApi`], the calls a worker makes for
//! `[[queue]]` bindings, with the SDK client [`SdkSqs`] and (feature
//! `test-util`) the in-process `fake::FakeSqs`.

mod direct;
mod sdk;

#[cfg(any(test, feature = "test-util"))]
pub mod fake;

use async_trait::async_trait;

use super::ApiError;

pub use direct::DirectSqs;
pub use sdk::SdkSqs;

/// One `ReceiveMessage` long poll.
#[derive(Debug, Clone)]
pub struct ReceiveRequest<'a> {
    /// The queue.
    pub queue_url: &'a str,
    /// 1 to 10.
    pub max_messages: i32,
    /// 0 to 20.
    pub wait_secs: i32,
    /// The visibility timeout the received messages start with.
    pub visibility_secs: i32,
    /// A message attribute to return (the token, when it is carried there).
    pub attribute: Option<&'a str>,
}

/// A received message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// `MessageId`.
    pub message_id: String,
    /// The receipt handle of this receipt.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// `MessageGroupId` (FIFO queues).
    pub group_id: Option<String>,
    /// The requested attribute's string value, if present.
    pub attribute: Option<String>,
    /// The `AWSTraceHeader` system attribute (X-Ray trace context), if set.
    pub trace_header: Option<String>,
    /// The `SentTimestamp` system attribute (epoch milliseconds): a message
    /// a state sent for a newer attempt is newer than one coming back.
    pub sent_timestamp_ms: Option<u64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body carries the task token: never print it.
        f.debug_struct("Message")
            .field("message_id", &self.message_id)
            .field("body_bytes", &self.body.len())
            .field("group_id", &self.group_id)
            .field("trace_header", &self.trace_header)
            .field("sent_timestamp_ms", &self.sent_timestamp_ms)
            .finish()
    }
}

/// One entry of a batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// Unique within the batch.
    pub id: String,
    /// Whose visibility to change, or which message to delete.
    pub receipt_handle: String,
    /// The new visibility timeout (ignored by deletes).
    pub visibility_secs: i32,
}

/// What became of one batch entry (batch calls report per entry, even on HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryResult {
    /// The entry's id.
    pub id: String,
    /// `None` when it succeeded.
    pub error: Option<ApiError>,
}

/// The SQS calls a worker makes.
#[async_trait]
pub trait SqsApi: Send + Sync + 'static {
    /// `ReceiveMessage`.
    async fn receive(&self, request: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError>;
    /// `ChangeMessageVisibilityBatch` (at most 10 entries).
    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError>;
    /// `DeleteMessageBatch` (at most 10 entries).
    async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError>;
    /// Does the queue exist? (`GetQueueAttributes`, once at start-up.)
    async fn check_queue(&self, queue_url: &str) -> Result<(), ApiError>;
}
