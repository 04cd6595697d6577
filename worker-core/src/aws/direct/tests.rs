//! The direct client against a local HTTP server that checks each request's
//! SigV4 signature by signing the received request again.

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

#[derive(Default)]
struct Seen {
    targets: Vec<String>,
    bodies: Vec<serde_json::Value>,
    signatures_ok: Vec<bool>,
    session_tokens: Vec<Option<String>>,
}

/// Serves `reply` to every request, after recording it and checking its signature.
async fn server(
    reply: impl Fn(&str) -> (StatusCode, HeaderMap, String) + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = (seen.clone(), url.clone());
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (seen, url) = state.clone();
            let reply = reply.clone();
            async move {
                let target = header(&headers, "x-amz-target").unwrap_or_default();
                let mut s = seen.lock().expect("lock");
                s.targets.push(target.clone());
                s.bodies
                    .push(serde_json::from_slice(&body).unwrap_or_default());
                s.signatures_ok.push(signature_ok(&url, &headers, &body));
                s.session_tokens
                    .push(header(&headers, "x-amz-security-token"));
                let (status, headers, body) = reply(&target);
                (status, headers, body).into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sign what arrived, with the time it claims, and compare.
fn signature_ok(url: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(auth), Some(date)) = (
        header(headers, "authorization"),
        header(headers, "x-amz-date"),
    ) else {
        return false;
    };
    // 20261121T120000Z -> 2026-11-21T12:00:00Z
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    let Ok(time) = aws_smithy_types::DateTime::from_str(
        &rfc3339,
        aws_smithy_types::date_time::Format::DateTime,
    ) else {
        return false;
    };
    let identity: Identity = Credentials::new(
        "AKIDEXAMPLE",
        SECRET,
        header(headers, "x-amz-security-token"),
        None,
        "test",
    )
    .into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("states")
        .time(SystemTime::try_from(time).expect("time"))
        .settings(SigningSettings::default())
        .build()
    else {
        return false;
    };
    let signed: Vec<(&str, String)> = ["content-type", "x-amz-target"]
        .into_iter()
        .filter_map(|n| header(headers, n).map(|v| (n, v)))
        .collect();
    let Ok(request) = SignableRequest::new(
        "POST",
        url,
        signed.iter().map(|(n, v)| (*n, v.as_str())),
        SignableBody::Bytes(body),
    ) else {
        return false;
    };
    let Ok(out) = sign(request, &params.into()) else {
        return false;
    };
    auth.ends_with(&format!("Signature={}", out.signature()))
}

async fn client(url: &str, session_token: Option<&str>) -> DirectSfn {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            SECRET,
            session_token.map(str::to_owned),
            None,
            "test",
        )))
        .build();
    DirectSfn::new(&sdk, Duration::from_secs(70))
        .await
        .expect("client")
}

fn ok(body: &str) -> (StatusCode, HeaderMap, String) {
    (StatusCode::OK, HeaderMap::new(), body.to_owned())
}

#[tokio::test]
async fn signs_and_sends_each_call() {
    let (url, seen) = server(|target| match target {
        "AWSStepFunctions.GetActivityTask" => ok(r#"{"taskToken":"tok-1","input":"{\"a\":1}"}"#),
        _ => ok("{}"),
    })
    .await;
    let api = client(&url, Some("session-1")).await;
    assert_eq!(api.endpoint(), url);
    let task = api
        .get_activity_task("arn:aws:states:us-east-1:123456789012:activity:a", "w1")
        .await;
    assert_eq!(
        task.expect("poll"),
        Some(ActivityTask {
            token: "tok-1".into(),
            input: r#"{"a":1}"#.into()
        })
    );
    api.send_task_success("tok-1", r#"{"b":2}"#)
        .await
        .expect("success");
    api.send_task_failure("tok-2", "Err", "why")
        .await
        .expect("failure");
    api.send_task_heartbeat("tok-3").await.expect("heartbeat");

    let s = seen.lock().expect("lock");
    assert_eq!(
        s.targets,
        [
            "AWSStepFunctions.GetActivityTask",
            "AWSStepFunctions.SendTaskSuccess",
            "AWSStepFunctions.SendTaskFailure",
            "AWSStepFunctions.SendTaskHeartbeat"
        ]
    );
    assert_eq!(
        s.bodies,
        [
            serde_json::json!({"activityArn": "arn:aws:states:us-east-1:123456789012:activity:a", "workerName": "w1"}),
            serde_json::json!({"taskToken": "tok-1", "output": "{\"b\":2}"}),
            serde_json::json!({"taskToken": "tok-2", "error": "Err", "cause": "why"}),
            serde_json::json!({"taskToken": "tok-3"}),
        ]
    );
    assert_eq!(
        s.signatures_ok, [true; 4],
        "every request carries a valid SigV4 signature"
    );
    assert!(
        s.session_tokens
            .iter()
            .all(|t| t.as_deref() == Some("session-1"))
    );
}

#[tokio::test]
async fn an_empty_poll_is_no_task() {
    let (url, _) = server(|_| ok(r#"{"taskToken":""}"#)).await;
    let api = client(&url, None).await;
    assert_eq!(api.get_activity_task("arn", "w").await.expect("poll"), None);
}

#[tokio::test]
async fn service_errors_are_classified_by_code() {
    for (status, header_type, body, code, kind) in [
        (
            400,
            None,
            r#"{"__type":"com.amazonaws.swf.service.v2.model#TaskTimedOut","message":"gone"}"#,
            "TaskTimedOut",
            ApiErrorKind::TaskClosed,
        ),
        (
            400,
            None,
            r#"{"__type":"ThrottlingException","Message":"slow down"}"#,
            "ThrottlingException",
            ApiErrorKind::Throttled,
        ),
        (
            400,
            Some("TaskDoesNotExist:http://internal.amazon.com/"),
            "{}",
            "TaskDoesNotExist",
            ApiErrorKind::TaskClosed,
        ),
        (
            400,
            None,
            r#"{"__type":"InvalidOutput","message":"bad"}"#,
            "InvalidOutput",
            ApiErrorKind::InvalidPayload,
        ),
        (
            503,
            None,
            "<html>busy</html>",
            "HTTP503",
            ApiErrorKind::Transient,
        ),
    ] {
        let (url, _) = server(move |_| {
            let mut headers = HeaderMap::new();
            if let Some(t) = header_type {
                headers.insert("x-amzn-errortype", t.parse().expect("header"));
            }
            (
                StatusCode::from_u16(status).expect("status"),
                headers,
                body.to_owned(),
            )
        })
        .await;
        let err = client(&url, None)
            .await
            .send_task_heartbeat("t")
            .await
            .expect_err("an error");
        assert_eq!(
            (err.code.as_str(), err.kind),
            (code, kind),
            "{status} {body}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let err = client(&url, None)
        .await
        .send_task_success("t", "{}")
        .await
        .expect_err("refused");
    assert_eq!(
        (err.code.as_str(), err.kind),
        ("DispatchFailure", ApiErrorKind::Transient)
    );
}

#[tokio::test]
async fn a_garbled_poll_response_is_transient() {
    let (url, _) = server(|_| ok("not json")).await;
    let err = client(&url, None)
        .await
        .get_activity_task("arn", "w")
        .await
        .expect_err("garbled");
    assert_eq!(
        (err.code.as_str(), err.kind),
        ("ResponseError", ApiErrorKind::Transient)
    );
}
