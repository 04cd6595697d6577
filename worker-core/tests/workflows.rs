//! The workflows client's retries and request timeout, and a start retried
//! after a lost answer, against a local HTTP server that answers as Step
//! Functions does (AWS JSON 1.0). The calls themselves are tested against
//! LocalStack in worker-bin/tests/workflows.rs.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sfn_worker_core::aws::{ApiErrorKind, Operation};
use sfn_worker_core::config::WorkflowsConfig;
use sfn_worker_core::workflows::{ExecutionArn, ExecutionStatus, WorkflowError, Workflows};

const MACHINE: &str = "arn:aws:states:us-east-1:000000000000:stateMachine:orders";
const EXECUTION: &str = "arn:aws:states:us-east-1:000000000000:execution:orders:run-1";

/// What the server saw: (target, body), in order.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// The server answers the nth request (0-based) with `reply(n, target, body)`;
/// `None` never answers.
async fn server(
    reply: impl Fn(usize, &str, &Value) -> Option<(StatusCode, Value)> + Clone + Send + Sync + 'static,
) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (seen, reply) = (state.clone(), reply.clone());
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .trim_start_matches("AWSStepFunctions.")
                    .to_owned();
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((target.clone(), body.clone()));
                    s.len() - 1
                };
                match reply(n, &target, &body) {
                    Some((status, doc)) => (
                        status,
                        [("content-type", "application/x-amz-json-1.0")],
                        doc.to_string(),
                    )
                        .into_response(),
                    None => std::future::pending().await,
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn client(url: &str, max_retries: u32, timeout_secs: u64) -> Workflows {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "tests",
        )))
        .build();
    let mut config = WorkflowsConfig::default();
    config.max_retries = max_retries;
    config.request_timeout_secs = NonZeroU64::new(timeout_secs).unwrap();
    config.state_machines = [("orders".to_owned(), MACHINE.parse().unwrap())].into();
    Workflows::new(&sdk, &config).unwrap()
}

fn error(code: &str) -> Option<(StatusCode, Value)> {
    Some((
        StatusCode::BAD_REQUEST,
        json!({ "__type": format!("com.amazonaws.swf.service.v2.model#{code}"), "message": code }),
    ))
}

fn described(input: &str) -> Option<(StatusCode, Value)> {
    Some((
        StatusCode::OK,
        json!({
            "executionArn": EXECUTION, "stateMachineArn": MACHINE, "name": "run-1",
            "status": "RUNNING", "startDate": 1.796e9, "input": input
        }),
    ))
}

#[tokio::test]
async fn throttled_calls_are_retried_max_retries_times() {
    let throttle_twice = |n: usize, _: &str, _: &Value| {
        if n < 2 {
            error("ThrottlingException")
        } else {
            described("{}")
        }
    };
    let (url, seen) = server(throttle_twice).await;
    let arn: ExecutionArn = EXECUTION.parse().unwrap();
    let e = client(&url, 3, 5).status(&arn).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Running);
    assert_eq!(seen.lock().unwrap().len(), 3);

    // The control: one retry is not enough for two throttles.
    let (url, seen) = server(throttle_twice).await;
    match client(&url, 1, 5).status(&arn).await {
        Err(WorkflowError::Api { operation, source }) => {
            assert_eq!(operation, Operation::DescribeExecution);
            assert_eq!(source.kind, ApiErrorKind::Throttled);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let (url, seen) = server(|_, _, _| error("ExecutionDoesNotExist")).await;
    let arn: ExecutionArn = EXECUTION.parse().unwrap();
    let err = client(&url, 3, 5).status(&arn).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::ExecutionNotFound { arn } if arn == EXECUTION),
        "{err:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_call_that_hangs_is_cut_at_the_request_timeout_and_retried() {
    let (url, seen) = server(|_, _, _| None).await;
    let arn: ExecutionArn = EXECUTION.parse().unwrap();
    let begun = Instant::now();
    let err = client(&url, 1, 1).status(&arn).await.unwrap_err();
    let took = begun.elapsed();
    assert!(
        matches!(&err, WorkflowError::Api { source, .. } if source.code == "Timeout"),
        "{err:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2, "one try and one retry");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The control: without retries, one try of one second.
    let (url, seen) = server(|_, _, _| None).await;
    let begun = Instant::now();
    client(&url, 0, 1).status(&arn).await.unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "{:?}",
        begun.elapsed()
    );
}

#[tokio::test]
async fn a_start_retried_after_a_lost_answer_is_the_same_execution() {
    // The first try reached the service (which started the execution) but
    // its answer was lost as a 500; the retry, with the same name, finds it.
    let reply = |n: usize, target: &str, _: &Value| match (n, target) {
        (0, "StartExecution") => Some((StatusCode::INTERNAL_SERVER_ERROR, json!({}))),
        (_, "StartExecution") => error("ExecutionAlreadyExists"),
        (_, "DescribeExecution") => described(r#"{ "id": 7 }"#),
        _ => error("UnknownOperationException"),
    };
    let (url, seen) = server(reply).await;
    let arn = client(&url, 3, 5)
        .start_named("orders", "run-1", &json!({ "id": 7 }))
        .await
        .unwrap();
    assert_eq!(arn.as_str(), EXECUTION);
    let seen = seen.lock().unwrap().clone();
    let starts: Vec<&Value> = seen
        .iter()
        .filter(|(t, _)| t == "StartExecution")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts.iter().all(|b| b["name"] == "run-1"), "{starts:?}");
    assert_eq!(starts[0]["input"], r#"{"id":7}"#);

    // The control: the execution of that name has other input.
    let (url, _) = server(reply).await;
    let err = client(&url, 3, 5)
        .start_named("orders", "run-1", &json!({ "id": 8 }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::ExecutionAlreadyExists { arn } if arn.as_str() == EXECUTION),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_generated_name_is_kept_across_retries() {
    let reply = |n: usize, _: &str, _: &Value| {
        if n == 0 {
            error("ThrottlingException")
        } else {
            Some((
                StatusCode::OK,
                json!({ "executionArn": EXECUTION, "startDate": 1.796e9 }),
            ))
        }
    };
    let (url, seen) = server(reply).await;
    client(&url, 3, 5)
        .start("orders", &json!({}))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let names: Vec<&str> = seen
        .iter()
        .map(|(_, b)| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(names[0], names[1], "the retry must not pick a new name");
    let uuid = names[0].strip_prefix("sfn-worker-").unwrap();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(uuid.chars().filter(|c| *c == '-').count(), 4, "{uuid}");
}

#[tokio::test]
async fn a_config_the_checks_refuse_builds_no_client() {
    let mut config = WorkflowsConfig::default();
    config.execution_name_prefix = "two words".into();
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .build();
    let errors = Workflows::new(&sdk, &config).unwrap_err();
    assert_eq!(errors[0].field, "workflows.execution_name_prefix");
}
