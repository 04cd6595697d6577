//! `fake-aws`: a small, fast HTTP server speaking the AWS JSON 1.0 protocol
//! subset that task-token workers use, so a benchmark measures the worker and
//! not the backend (LocalStack answers ~700 requests/s here).
//!
//! Step Functions: GetActivityTask, SendTaskSuccess, SendTaskFailure,
//! SendTaskHeartbeat, DescribeActivity. SQS (JSON protocol, as current SDKs
//! use): ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch),
//! GetQueueAttributes. It is preloaded with N activity tasks and M messages
//! with unique tokens, counts completions, duplicates and unknown tokens
//! (`GET /stats`), and can inject faults (latency, throttling, 5xx) with
//! flags. Signatures are accepted, not verified: it is a test fixture.

mod faults;
mod sfn;
mod sqs;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;

use faults::Faults;
use state::Backend;

#[derive(Parser, Debug)]
#[command(about = "A fast fake of the Step Functions and SQS APIs for worker benchmarks")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Activity tasks to preload (tokens act-0 ... act-N-1).
    #[arg(long, default_value_t = 0)]
    activity_tasks: usize,
    /// SQS messages to preload (tokens sqs-0 ... sqs-M-1), on every queue URL.
    #[arg(long, default_value_t = 0)]
    messages: usize,
    /// How long an empty GetActivityTask / ReceiveMessage waits (the real
    /// service: up to 60 s / 20 s). Shorter makes benchmark shutdowns quick.
    #[arg(long, default_value_t = 1000)]
    poll_hold_ms: u64,
    /// Added to every response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of SendTask* calls answered ThrottlingException.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Fraction of calls answered HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend = Arc::new(Backend::new(
        args.activity_tasks,
        args.messages,
        std::time::Duration::from_millis(args.poll_hold_ms),
        Faults {
            latency: std::time::Duration::from_millis(args.latency_ms),
            throttle_rate: args.throttle_rate,
            error_rate: args.error_rate,
        },
    ));
    let app = Router::new()
        .route("/", post(dispatch))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(backend);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-aws: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    eprintln!("fake-aws: listening on {}", args.listen);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fake-aws: {e}");
    }
}

async fn stats(State(b): State<Arc<Backend>>) -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        b.stats().to_string(),
    )
}

/// An AWS JSON 1.0 error answer.
pub(crate) fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    (
        status,
        [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amzn-query-error", "AWS.SimpleQueueService.Error;Sender"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn aws_ok(body: serde_json::Value) -> Response {
    (
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

async fn dispatch(State(b): State<Arc<Backend>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let Some((service, operation)) = target.split_once('.') else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "no X-Amz-Target",
        );
    };
    if let Some(fault) = b.faults.inject(operation).await {
        return fault;
    }
    match service {
        "AWSStepFunctions" => sfn::handle(&b, operation, request).await,
        "AmazonSQS" => sqs::handle(&b, operation, request).await,
        _ => aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &target,
        ),
    }
}
