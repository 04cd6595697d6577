use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};

use super::{BatchEntry, EntryResult, Message, ReceiveRequest, SqsApi};
use crate::aws::ApiError;
use crate::aws::classify::classify;
use crate::aws::sdk_config::{CALL_TIMEOUT, client_policy};

/// A receive waits up to 20 s on the server; allow for the network on top.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`SqsApi`] over the AWS SDK. SDK retries are off: the worker retries,
/// knowing what each failure means.
#[derive(Debug, Clone)]
pub struct SdkSqs {
    receive: aws_sdk_sqs::Client,
    calls: aws_sdk_sqs::Client,
}

impl SdkSqs {
    /// Clients from a loaded configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        let client = |timeout: Duration| {
            let (retry, timeouts, stalled) = client_policy(timeout);
            let conf = aws_sdk_sqs::config::Builder::from(sdk)
                .retry_config(retry)
                .timeout_config(timeouts)
                .stalled_stream_protection(stalled)
                .build();
            aws_sdk_sqs::Client::from_conf(conf)
        };
        Self {
            receive: client(RECEIVE_TIMEOUT),
            calls: client(CALL_TIMEOUT),
        }
    }
}

fn entry_results(successful: Vec<String>, failed: Vec<BatchResultErrorEntry>) -> Vec<EntryResult> {
    let mut out: Vec<EntryResult> = successful
        .into_iter()
        .map(|id| EntryResult { id, error: None })
        .collect();
    out.extend(failed.into_iter().map(|f| {
        let status = if f.sender_fault { 400 } else { 500 };
        let message = f.message.unwrap_or_default();
        EntryResult {
            id: f.id,
            error: Some(ApiError::new(
                ApiError::kind_for(&f.code, status),
                f.code,
                message,
            )),
        }
    }));
    out
}

fn construction(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        crate::aws::ApiErrorKind::Rejected,
        "ConstructionFailure",
        e.to_string(),
    )
}

#[async_trait]
impl SqsApi for SdkSqs {
    async fn receive(&self, r: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError> {
        let out = self
            .receive
            .receive_message()
            .queue_url(r.queue_url)
            .max_number_of_messages(r.max_messages)
            .wait_time_seconds(r.wait_secs)
            .visibility_timeout(r.visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .set_message_attribute_names(r.attribute.map(|a| vec![a.to_owned()]))
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attribute = r.attribute.and_then(|name| {
                    m.message_attributes
                        .as_ref()?
                        .get(name)?
                        .string_value
                        .clone()
                });
                let system = |name: &MessageSystemAttributeName| {
                    m.attributes.as_ref().and_then(|a| a.get(name).cloned())
                };
                let group_id = system(&MessageSystemAttributeName::MessageGroupId);
                let trace_header = system(&MessageSystemAttributeName::AwsTraceHeader);
                let sent_timestamp_ms =
                    system(&MessageSystemAttributeName::SentTimestamp).and_then(|t| t.parse().ok());
                Some(Message {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    group_id,
                    trace_header,
                    sent_timestamp_ms,
                    attribute,
                })
            })
            .collect())
    }

    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let mut built = Vec::with_capacity(entries.len());
        for e in entries {
            built.push(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(&e.id)
                    .receipt_handle(&e.receipt_handle)
                    .visibility_timeout(e.visibility_secs)
                    .build()
                    .map_err(construction)?,
            );
        }
        let out = self
            .calls
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(built))
            .send()
            .await
            .map_err(classify)?;
        Ok(entry_results(
            out.successful.into_iter().map(|s| s.id).collect(),
            out.failed,
        ))
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        let mut built = Vec::with_capacity(entries.len());
        for e in entries {
            built.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(&e.id)
                    .receipt_handle(&e.receipt_handle)
                    .build()
                    .map_err(construction)?,
            );
        }
        let out = self
            .calls
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(built))
            .send()
            .await
            .map_err(classify)?;
        Ok(entry_results(
            out.successful.into_iter().map(|s| s.id).collect(),
            out.failed,
        ))
    }

    async fn check_queue(&self, queue_url: &str) -> Result<(), ApiError> {
        self.calls
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }
}
