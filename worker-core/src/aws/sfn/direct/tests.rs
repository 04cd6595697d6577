//! The direct client against a local HTTP server that checks each request's
//! SigV4 signature by signing the received request again.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::service_config::ServiceConfigKey;
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
    server_with(move |target, _| reply(target)).await
}

/// [`server`], with the request's headers given to `reply` too.
async fn server_with(
    reply: impl Fn(&str, &HeaderMap) -> (StatusCode, HeaderMap, String) + Clone + Send + Sync + 'static,
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
                drop(s);
                let (status, headers, body) = reply(&target, &headers);
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
        ("ConnectFailure", ApiErrorKind::Transient)
    );
    // A refused connection carried nothing: the report cannot have been applied.
    assert!(err.never_sent());
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

/// Credentials whose session token counts how often they were fetched.
#[derive(Debug, Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl ProvideCredentials for Counting {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            "AKIDEXAMPLE",
            SECRET,
            Some(format!("session-{n}")),
            None,
            "counting",
        )))
    }
}

async fn client_with(url: &str, credentials: impl ProvideCredentials + 'static) -> DirectSfn {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    DirectSfn::new(&sdk, Duration::from_secs(70))
        .await
        .expect("client")
}

fn refused(code: &str, date: Option<String>) -> (StatusCode, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    if let Some(d) = date {
        headers.insert("date", d.parse().expect("date"));
    }
    (
        StatusCode::BAD_REQUEST,
        headers,
        format!(r#"{{"__type":"{code}","message":"refused"}}"#),
    )
}

#[tokio::test]
async fn an_expired_token_answer_drops_the_cached_credentials() {
    for code in [
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    ] {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let (url, seen) = server(move |_| {
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                refused(code, None)
            } else {
                ok("{}")
            }
        })
        .await;
        let api = client_with(&url, Counting::default()).await;
        let err = api.send_task_heartbeat("t").await.expect_err("refused");
        assert_eq!(err.kind, ApiErrorKind::Credentials, "{code}");
        api.send_task_heartbeat("t").await.expect("accepted");
        api.send_task_heartbeat("t").await.expect("accepted");
        let tokens = seen.lock().expect("lock").session_tokens.clone();
        let tokens: Vec<_> = tokens.iter().map(|t| t.as_deref().unwrap_or("")).collect();
        assert_eq!(
            tokens,
            ["session-1", "session-2", "session-2"],
            "{code}: fetched anew once, then cached again"
        );
    }
}

#[tokio::test]
async fn a_request_expired_answer_corrects_the_signing_clock() {
    // The service's clock is an hour ahead of ours; it refuses requests
    // signed more than 5 minutes off, saying its time in `Date`.
    let ahead = Duration::from_secs(3600);
    let (url, seen) = server_with(move |_, headers| {
        let server_now = SystemTime::now() + ahead;
        let signed = header(headers, "x-amz-date").unwrap_or_default();
        let server_stamp = aws_smithy_types::DateTime::from(server_now)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .expect("format");
        // Compare yyyy-mm-ddThh:mm at minute precision is enough here.
        let signed_minute = format!(
            "{}-{}-{}T{}:{}",
            &signed[0..4],
            &signed[4..6],
            &signed[6..8],
            &signed[9..11],
            &signed[11..13]
        );
        if server_stamp.starts_with(&signed_minute) {
            ok("{}")
        } else {
            refused("RequestExpired", Some(httpdate::fmt_http_date(server_now)))
        }
    })
    .await;
    let api = client(&url, None).await;
    let err = api
        .send_task_heartbeat("t")
        .await
        .expect_err("off by an hour");
    assert_eq!(err.code, "RequestExpired");
    api.send_task_heartbeat("t")
        .await
        .expect("signed with the corrected clock");
    assert_eq!(seen.lock().expect("lock").signatures_ok, [true, true]);
}

/// A service-specific endpoint, as `AWS_ENDPOINT_URL_SFN` or a profile's
/// `services` section gives it (without touching this process's environment).
#[derive(Debug)]
struct SfnOnly;

impl aws_types::service_config::LoadServiceConfig for SfnOnly {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        (key.service_id() == "SFN" && key.profile() == "endpoint_url")
            .then(|| "http://sfn-only.invalid:2".to_owned())
    }
}

#[tokio::test]
async fn a_service_specific_endpoint_wins_as_in_the_sdk() {
    let base = || {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://global.invalid:1")
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "a", "b", None, None, "t",
            )))
    };
    let endpoint = |sdk: SdkConfig| async move {
        DirectSfn::new(&sdk, Duration::from_secs(70))
            .await
            .expect("client")
            .endpoint()
            .to_owned()
    };
    // AWS_ENDPOINT_URL_SFN (or the profile's services section) over
    // AWS_ENDPOINT_URL.
    assert_eq!(
        endpoint(base().service_config(SfnOnly).build()).await,
        "http://sfn-only.invalid:2"
    );
    // The control: nothing service-specific, the global one.
    assert_eq!(endpoint(base().build()).await, "http://global.invalid:1");
    // Set in code ([aws] endpoint_url): it wins, as in the SDK.
    let mut in_code = base().service_config(SfnOnly);
    in_code.insert_origin("endpoint_url", aws_types::origin::Origin::shared_config());
    assert_eq!(endpoint(in_code.build()).await, "http://global.invalid:1");
}
