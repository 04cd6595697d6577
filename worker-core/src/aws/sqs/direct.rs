//! [`SqsApi`] without the SDK's per-request machinery, as for Step Functions
//! (`aws::sfn::direct`): `ReceiveMessage`, `ChangeMessageVisibilityBatch` and
//! `DeleteMessageBatch` are small JSON calls (SQS's JSON protocol) signed
//! with the SDK's signer and sent on one keep-alive pool. The endpoint is
//! resolved once by the SDK's own resolver; `GetQueueAttributes` (once, at
//! start-up) stays on the SDK client. `[aws] sqs_client = "sdk"` switches
//! back to the SDK for every call.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use serde::{Deserialize, Serialize};

use super::{BatchEntry, EntryResult, Message, ReceiveRequest, SdkSqs, SqsApi};
use crate::aws::sdk_config::CALL_TIMEOUT;
use crate::aws::signed::{DirectClientError, Endpoint, InFlight, SignedHttp, configured_endpoint};
use crate::aws::{ApiError, ApiErrorKind, Operation};

/// A receive waits up to 20 s on the server; allow for the network on top.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// SQS over signed JSON calls.
pub struct DirectSqs {
    signed: SignedHttp,
    endpoint: String,
    /// `endpoint`, parsed once.
    url: Endpoint,
    /// For the start-up check.
    sdk: SdkSqs,
}

impl std::fmt::Debug for DirectSqs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSqs")
            .field("endpoint", &self.endpoint)
            .field("region", &self.signed.region())
            .finish_non_exhaustive()
    }
}

impl DirectSqs {
    /// A client for the region, endpoint and credentials in `sdk`, which
    /// must have a region.
    pub async fn new(sdk: &SdkConfig) -> Result<Self, DirectClientError> {
        let signed = SignedHttp::new(sdk, "sqs")?;
        let params = Params::builder()
            .region(signed.region().to_owned())
            .use_fips(sdk.use_fips().unwrap_or(false))
            .use_dual_stack(sdk.use_dual_stack().unwrap_or(false))
            .set_endpoint(configured_endpoint(sdk, "SQS"))
            .build()
            .map_err(|e| DirectClientError(format!("SQS endpoint parameters: {e}")))?;
        let endpoint = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| DirectClientError(format!("SQS endpoint: {e}")))?
            .url()
            .to_owned();
        let url = Endpoint::parse(&endpoint)
            .map_err(|e| DirectClientError(format!("SQS endpoint {endpoint}: {e}")))?;
        Ok(Self {
            signed,
            endpoint,
            url,
            sdk: SdkSqs::new(sdk),
        })
    }

    /// The resolved SQS endpoint.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        operation: Operation,
        body: Vec<u8>,
        timeout: Duration,
        in_flight: InFlight,
    ) -> Result<T, ApiError> {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", operation.target()),
        ];
        let bytes = self
            .signed
            .post(&self.url, &headers, body, timeout, in_flight)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ApiErrorKind::Transient,
                "ResponseError",
                format!("{operation} response: {e}"),
            )
        })
    }

    /// One batch call, for both batch operations: the same shape, with or
    /// without `VisibilityTimeout`.
    async fn batch(
        &self,
        operation: Operation,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        #[derive(Serialize)]
        struct Entry<'a> {
            #[serde(rename = "Id")]
            id: &'a str,
            #[serde(rename = "ReceiptHandle")]
            receipt_handle: &'a str,
            #[serde(rename = "VisibilityTimeout", skip_serializing_if = "Option::is_none")]
            visibility: Option<i32>,
        }
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "QueueUrl")]
            queue_url: &'a str,
            #[serde(rename = "Entries")]
            entries: Vec<Entry<'a>>,
        }
        #[derive(Deserialize)]
        struct Ok {
            #[serde(rename = "Id")]
            id: String,
        }
        #[derive(Deserialize)]
        struct Failed {
            #[serde(rename = "Id")]
            id: String,
            #[serde(rename = "SenderFault", default)]
            sender_fault: bool,
            #[serde(rename = "Code", default)]
            code: String,
            #[serde(rename = "Message", default)]
            message: String,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(rename = "Successful", default)]
            successful: Vec<Ok>,
            #[serde(rename = "Failed", default)]
            failed: Vec<Failed>,
        }
        let visibility = operation == Operation::ChangeMessageVisibilityBatch;
        let request = Request {
            queue_url,
            entries: entries
                .iter()
                .map(|e| Entry {
                    id: &e.id,
                    receipt_handle: &e.receipt_handle,
                    visibility: visibility.then_some(e.visibility_secs),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let response: Response = self
            .call(operation, body, CALL_TIMEOUT, InFlight::Bounded)
            .await?;
        let mut out: Vec<EntryResult> = response
            .successful
            .into_iter()
            .map(|s| EntryResult {
                id: s.id,
                error: None,
            })
            .collect();
        out.extend(response.failed.into_iter().map(|f| {
            let status = if f.sender_fault { 400 } else { 500 };
            EntryResult {
                id: f.id,
                error: Some(ApiError::service(f.code, status, f.message)),
            }
        }));
        Ok(out)
    }
}

#[async_trait]
impl SqsApi for DirectSqs {
    async fn receive(&self, r: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError> {
        #[derive(Serialize)]
        struct Request<'a> {
            #[serde(rename = "QueueUrl")]
            queue_url: &'a str,
            #[serde(rename = "MaxNumberOfMessages")]
            max_messages: i32,
            #[serde(rename = "WaitTimeSeconds")]
            wait_secs: i32,
            #[serde(rename = "VisibilityTimeout")]
            visibility_secs: i32,
            #[serde(rename = "MessageSystemAttributeNames")]
            system_attributes: [&'a str; 3],
            #[serde(
                rename = "MessageAttributeNames",
                skip_serializing_if = "Option::is_none"
            )]
            attributes: Option<[&'a str; 1]>,
        }
        #[derive(Deserialize)]
        struct Attribute {
            #[serde(rename = "StringValue")]
            string_value: Option<String>,
        }
        #[derive(Deserialize)]
        struct Received {
            #[serde(rename = "MessageId", default)]
            message_id: String,
            #[serde(rename = "ReceiptHandle")]
            receipt_handle: Option<String>,
            #[serde(rename = "Body", default)]
            body: String,
            #[serde(rename = "Attributes", default)]
            attributes: std::collections::HashMap<String, String>,
            #[serde(rename = "MessageAttributes", default)]
            message_attributes: std::collections::HashMap<String, Attribute>,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(rename = "Messages", default)]
            messages: Vec<Received>,
        }
        let request = Request {
            queue_url: r.queue_url,
            max_messages: r.max_messages,
            wait_secs: r.wait_secs,
            visibility_secs: r.visibility_secs,
            system_attributes: ["MessageGroupId", "AWSTraceHeader", "SentTimestamp"],
            attributes: r.attribute.map(|a| [a]),
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let response: Response = self
            .call(
                Operation::ReceiveMessage,
                body,
                RECEIVE_TIMEOUT,
                InFlight::Unbounded,
            )
            .await?;
        Ok(response
            .messages
            .into_iter()
            .filter_map(|mut m| {
                let attribute = r
                    .attribute
                    .and_then(|name| m.message_attributes.remove(name)?.string_value);
                Some(Message {
                    message_id: m.message_id,
                    receipt_handle: m.receipt_handle?,
                    body: m.body,
                    group_id: m.attributes.remove("MessageGroupId"),
                    trace_header: m.attributes.remove("AWSTraceHeader"),
                    sent_timestamp_ms: m
                        .attributes
                        .remove("SentTimestamp")
                        .and_then(|t| t.parse().ok()),
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
        self.batch(Operation::ChangeMessageVisibilityBatch, queue_url, entries)
            .await
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        self.batch(Operation::DeleteMessageBatch, queue_url, entries)
            .await
    }

    async fn check_queue(&self, queue_url: &str) -> Result<(), ApiError> {
        self.sdk.check_queue(queue_url).await
    }
}

#[cfg(test)]
mod tests;
