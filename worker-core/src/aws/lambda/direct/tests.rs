//! The Lambda callback client against a local HTTP server: paths, bodies,
//! signing scope, and how answers are classified.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;

use super::*;
use crate::aws::ApiErrorKind;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    content_type: Option<String>,
    content_length: Option<String>,
    authorization: String,
    body: Vec<u8>,
}

/// Serves `reply` (status, `x-amzn-errortype`, body) to every request, after recording it.
async fn server(
    reply: impl Fn(&str) -> (StatusCode, Option<&'static str>, String) + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let (record, reply) = (record.clone(), reply.clone());
        async move {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let path = uri.path().to_owned();
            record.lock().expect("lock").push(Seen {
                path: path.clone(),
                content_type: header("content-type"),
                content_length: header("content-length"),
                authorization: header("authorization").unwrap_or_default(),
                body: body.to_vec(),
            });
            let (status, error_type, body) = reply(&path);
            let mut headers = HeaderMap::new();
            if let Some(t) = error_type {
                headers.insert("x-amzn-errortype", t.parse().expect("header"));
            }
            (status, headers, body).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn client(url: &str) -> DirectLambda {
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
    DirectLambda::new(&sdk, None).expect("client")
}

#[tokio::test]
async fn the_three_calls_go_to_their_routes_with_their_bodies() {
    let (url, seen) = server(|_| (StatusCode::OK, None, String::new())).await;
    let c = client(&url);
    // A callback id has +, / and =: each is percent-encoded in the path.
    let id = "Ab+c/d==";
    c.succeed(id, r#"{"total":3}"#).await.unwrap();
    c.fail(id, "Orders.Rejected", "no stock").await.unwrap();
    c.heartbeat(id).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let base = "/2025-12-01/durable-execution-callbacks/Ab%2Bc%2Fd%3D%3D";
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        [
            format!("{base}/succeed"),
            format!("{base}/fail"),
            format!("{base}/heartbeat")
        ]
    );
    // The result is the output's bytes as they are; the failure an ErrorObject.
    assert_eq!(seen[0].body, br#"{"total":3}"#);
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/octet-stream")
    );
    let failure: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(
        failure,
        serde_json::json!({"ErrorType": "Orders.Rejected", "ErrorMessage": "no stock"})
    );
    assert!(seen[2].body.is_empty());
    for s in &seen {
        // Buffered bodies: a chunked body is dropped by the local runner.
        assert!(s.content_length.is_some(), "{s:?}");
        // Signed for Lambda in the client's region.
        assert!(
            s.authorization.contains("/us-east-1/lambda/aws4_request"),
            "{}",
            s.authorization
        );
    }
}

#[tokio::test]
async fn answers_are_classified_like_every_other_service_answer() {
    let (url, _) = server(|path| {
        if path.contains("expired") {
            // AWS: an expired or completed callback.
            (
                StatusCode::BAD_REQUEST,
                Some("CallbackTimeoutException"),
                r#"{"Type":"User","message":"callback timed out"}"#.into(),
            )
        } else if path.contains("gone") {
            // The local runner: no header, the exception name in `Type`.
            (
                StatusCode::NOT_FOUND,
                None,
                r#"{"Type":"ResourceNotFoundException","Message":"not in STARTED state"}"#.into(),
            )
        } else if path.contains("busy") {
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some("TooManyRequestsException"),
                r#"{"Type":"User","message":"slow down"}"#.into(),
            )
        } else if path.contains("kms") {
            (
                StatusCode::BAD_GATEWAY,
                Some("KMSAccessDeniedException"),
                r#"{"Type":"User","message":"no"}"#.into(),
            )
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("ServiceException"),
                r#"{"Type":"Service","message":"oops"}"#.into(),
            )
        }
    })
    .await;
    let c = client(&url);
    let kind = |r: Result<(), ApiError>| r.unwrap_err().kind;
    assert_eq!(kind(c.heartbeat("expired").await), ApiErrorKind::TaskClosed);
    // Not found: not closed unless the runner knows better (or the local
    // runner's reading is asked for).
    assert_eq!(
        kind(c.succeed("gone", "1").await),
        ApiErrorKind::CallbackNotFound
    );
    let local = client(&url).not_found_is_closed(true);
    assert_eq!(
        kind(local.succeed("gone", "1").await),
        ApiErrorKind::TaskClosed
    );
    assert_eq!(kind(c.heartbeat("busy").await), ApiErrorKind::Throttled);
    assert_eq!(
        kind(c.fail("kms", "E", "c").await),
        ApiErrorKind::KmsRefused
    );
    assert_eq!(kind(c.heartbeat("oops").await), ApiErrorKind::Transient);
}

#[test]
fn the_endpoint_follows_the_sdk() {
    let base = |region: &str| {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
    };
    assert_eq!(
        endpoint(&base("eu-west-1").build(), "eu-west-1").unwrap(),
        "https://lambda.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        endpoint(&base("cn-north-1").build(), "cn-north-1").unwrap(),
        "https://lambda.cn-north-1.amazonaws.com.cn"
    );
    assert_eq!(
        endpoint(&base("us-east-1").use_fips(true).build(), "us-east-1").unwrap(),
        "https://lambda-fips.us-east-1.amazonaws.com"
    );
    assert_eq!(
        endpoint(
            &base("us-east-1").endpoint_url("http://127.0.0.1:9").build(),
            "us-east-1"
        )
        .unwrap(),
        "http://127.0.0.1:9"
    );
    // No guessing in partitions whose host names differ.
    assert!(endpoint(&base("us-isob-east-1").build(), "us-isob-east-1").is_err());
}
