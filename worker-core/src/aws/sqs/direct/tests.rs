//! The direct SQS client against a local HTTP server: request shapes, the
//! answers' parsing, per-entry results and error classification.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::*;

type Seen = Arc<Mutex<Vec<(String, serde_json::Value, String)>>>;

/// Serves `reply(target)` = (status, extra headers, body), recording
/// (target, request body, authorization).
async fn server(
    reply: impl Fn(&str) -> (StatusCode, Vec<(&'static str, &'static str)>, String)
    + Clone
    + Send
    + Sync
    + 'static,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (record, reply) = (record.clone(), reply.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let target = h("x-amz-target");
                record.lock().expect("lock").push((
                    target.clone(),
                    serde_json::from_slice(&body).unwrap_or_default(),
                    h("authorization"),
                ));
                let (status, extra, body) = reply(&target);
                let mut headers = HeaderMap::new();
                for (n, v) in extra {
                    headers.insert(n, v.parse().expect("header"));
                }
                (status, headers, body).into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn client(url: &str) -> DirectSqs {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .build();
    DirectSqs::new(&sdk).await.expect("client")
}

const QUEUE: &str = "http://localhost:4566/000000000000/q";

#[tokio::test]
async fn receive_asks_for_the_group_and_the_token_attribute_and_reads_the_answer() {
    let (url, seen) = server(|_| {
        let body = serde_json::json!({ "Messages": [
            { "MessageId": "m1", "ReceiptHandle": "h1", "Body": "{\"taskToken\":\"t\"}",
              "Attributes": { "MessageGroupId": "g", "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793",
                              "SentTimestamp": "1764633600123" },
              "MessageAttributes": { "TaskToken": { "StringValue": "tok", "DataType": "String" } } },
            { "MessageId": "m2", "ReceiptHandle": "h2", "Body": "x" },
            // No receipt handle: nothing to hold or delete, so not a message.
            { "MessageId": "m3", "Body": "y" },
        ]});
        (StatusCode::OK, vec![], body.to_string())
    })
    .await;
    let messages = client(&url)
        .await
        .receive(ReceiveRequest {
            queue_url: QUEUE,
            max_messages: 3,
            wait_secs: 20,
            visibility_secs: 60,
            attribute: Some("TaskToken"),
        })
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (
            messages[0].message_id.as_str(),
            messages[0].receipt_handle.as_str(),
            messages[0].group_id.as_deref(),
            messages[0].attribute.as_deref()
        ),
        ("m1", "h1", Some("g"), Some("tok"))
    );
    assert_eq!(
        (
            messages[1].group_id.as_deref(),
            messages[1].attribute.as_deref()
        ),
        (None, None)
    );
    assert_eq!(
        messages[0].trace_header.as_deref(),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793")
    );
    assert_eq!(messages[1].trace_header, None);
    assert_eq!(messages[0].sent_timestamp_ms, Some(1_764_633_600_123));
    assert_eq!(messages[1].sent_timestamp_ms, None);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "AmazonSQS.ReceiveMessage");
    assert_eq!(
        seen[0].1,
        serde_json::json!({
            "QueueUrl": QUEUE, "MaxNumberOfMessages": 3, "WaitTimeSeconds": 20,
            "VisibilityTimeout": 60, "MessageSystemAttributeNames": ["MessageGroupId", "AWSTraceHeader", "SentTimestamp"],
            "MessageAttributeNames": ["TaskToken"],
        })
    );
    assert!(
        seen[0].2.contains("/us-east-1/sqs/aws4_request"),
        "{}",
        seen[0].2
    );
}

#[tokio::test]
async fn both_batch_calls_share_one_shape_and_report_per_entry() {
    let (url, seen) = server(|_| {
        let body = serde_json::json!({
            "Successful": [{ "Id": "0" }],
            "Failed": [{ "Id": "1", "SenderFault": true, "Code": "ReceiptHandleIsInvalid", "Message": "gone" }],
        });
        (StatusCode::OK, vec![], body.to_string())
    })
    .await;
    let c = client(&url).await;
    let entries = [
        BatchEntry {
            id: "0".into(),
            receipt_handle: "h0".into(),
            visibility_secs: 30,
        },
        BatchEntry {
            id: "1".into(),
            receipt_handle: "h1".into(),
            visibility_secs: 30,
        },
    ];
    let changed = c.change_visibility_batch(QUEUE, &entries).await.unwrap();
    let deleted = c.delete_batch(QUEUE, &entries).await.unwrap();
    for results in [changed, deleted] {
        assert_eq!(
            results[0],
            EntryResult {
                id: "0".into(),
                error: None
            }
        );
        assert_eq!(results[1].id, "1");
        assert_eq!(
            results[1].error.as_ref().map(|e| e.code.as_str()),
            Some("ReceiptHandleIsInvalid")
        );
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "AmazonSQS.ChangeMessageVisibilityBatch");
    assert_eq!(
        seen[0].1["Entries"][1],
        serde_json::json!({ "Id": "1", "ReceiptHandle": "h1", "VisibilityTimeout": 30 })
    );
    assert_eq!(seen[1].0, "AmazonSQS.DeleteMessageBatch");
    assert_eq!(
        seen[1].1["Entries"][1],
        serde_json::json!({ "Id": "1", "ReceiptHandle": "h1" })
    );
}

#[tokio::test]
async fn errors_are_classified_from_the_query_compatible_code() {
    let (url, _) = server(|target| match target {
        "AmazonSQS.ReceiveMessage" => (
            StatusCode::BAD_REQUEST,
            vec![(
                "x-amzn-query-error",
                "AWS.SimpleQueueService.NonExistentQueue;Sender",
            )],
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no queue"}"#.into(),
        ),
        "AmazonSQS.DeleteMessageBatch" => (
            StatusCode::BAD_REQUEST,
            vec![("x-amzn-query-error", "RequestThrottled;Sender")],
            r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}"#.into(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            r#"{"__type":"InternalError"}"#.into(),
        ),
    })
    .await;
    let c = client(&url).await;
    let request = ReceiveRequest {
        queue_url: QUEUE,
        max_messages: 1,
        wait_secs: 0,
        visibility_secs: 30,
        attribute: None,
    };
    assert_eq!(
        c.receive(request).await.unwrap_err().kind,
        ApiErrorKind::QueueDoesNotExist
    );
    let entries = [BatchEntry {
        id: "0".into(),
        receipt_handle: "h".into(),
        visibility_secs: 0,
    }];
    assert_eq!(
        c.delete_batch(QUEUE, &entries).await.unwrap_err().kind,
        ApiErrorKind::Throttled
    );
    assert_eq!(
        c.change_visibility_batch(QUEUE, &entries)
            .await
            .unwrap_err()
            .kind,
        ApiErrorKind::Transient
    );
}
