//! `fake-aws`: a small, fast HTTP server speaking the AWS JSON 1.0 protocol
//! subset that task-token workers use, so a benchmark measures the worker and
//! not the backend (LocalStack answers ~700 requests/s here).
//!
//! Step Functions: GetActivityTask, SendTaskSuccess, SendTaskFailure,
//! SendTaskHeartbeat, DescribeActivity. SQS (JSON protocol, as current SDKs
//! use): ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch),
//! GetQueueAttributes. DynamoDB, as much as the task ledger uses (see
//! `dynamodb.rs`); `--duplicate-rate` hands SQS messages out twice. It is preloaded with N activity tasks and M messages
//! with unique tokens, counts completions, duplicates and unknown tokens
//! (`GET /stats`), and can inject faults with flags: latency, slow answers,
//! throttling (Step Functions, KMS, SQS codes), 5xx, expired credentials,
//! connection resets, and answers lost after the call was carried out. In
//! chaos mode (`--heartbeat-timeout-secs`) it times out tokens nobody keeps
//! alive and schedules retries, and keeps every token's record
//! (`GET /chaos`) for `bench/chaos.py`. Signatures are accepted, not
//! verified: it is a test fixture.

mod congestion;
mod durable;
mod dynamodb;
mod faults;
mod sfn;
mod sqs;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use clap::Parser;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Notify;

use faults::{Fault, Faults};
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
    /// Offered load: make the preloaded tasks and messages available at this
    /// many per second (each source), instead of all at once. Compares runs
    /// at the same throughput (a saturated worker costs less per task than
    /// one woken for every few calls).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate_per_sec: Option<u32>,
    /// Fraction of SendTask* calls answered ThrottlingException (SQS calls:
    /// RequestThrottled).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Fraction of calls answered HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Congestion: a token bucket per operation, OPERATION=RATE[:BURST]
    /// (calls per second; burst default: one second's worth). A prefix
    /// ending in `*` gives each operation it matches a bucket of its own,
    /// as AWS's quotas are per API. Repeatable.
    #[arg(long = "bucket", value_name = "OPERATION=RATE[:BURST]")]
    buckets: Vec<congestion::BucketSpec>,
    /// Fraction of calls answered ExpiredTokenException.
    #[arg(long, default_value_t = 0.0)]
    expired_rate: f64,
    /// Fraction of SendTask* calls answered KmsThrottlingException (SQS calls:
    /// KMS.ThrottlingException).
    #[arg(long, default_value_t = 0.0)]
    kms_throttle_rate: f64,
    /// Fraction of calls whose connection is reset before they are handled.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Fraction of calls carried out whose answer is then lost (connection reset).
    #[arg(long, default_value_t = 0.0)]
    lost_rate: f64,
    /// Fraction of calls answered --slow-ms late.
    #[arg(long, default_value_t = 0.0)]
    slow_rate: f64,
    #[arg(long, default_value_t = 500)]
    slow_ms: u64,
    /// Chaos mode: a token handed out and then neither heartbeated nor
    /// reported for this long times out, and a new token for its task is
    /// scheduled (as a state's HeartbeatSeconds and Retry would).
    #[arg(long)]
    heartbeat_timeout_secs: Option<u64>,
    /// Chaos mode: tasks ask the chaos handler to sit in spawn_blocking.
    #[arg(long)]
    blocking: bool,
    /// Fraction of received SQS messages also left visible: a copy is
    /// handed out again (SQS standard queues deliver at least once), to
    /// this or another worker.
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    /// SQS messages carry a Lambda durable callback id (`callbackId`)
    /// instead of a task token, completed on the callback routes.
    #[arg(long)]
    callback_ids: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let ms = std::time::Duration::from_millis;
    let backend = Arc::new(
        Backend::new(
            args.activity_tasks,
            args.messages,
            args.rate_per_sec.is_none(),
            ms(args.poll_hold_ms),
            Faults {
                latency: ms(args.latency_ms),
                throttle_rate: args.throttle_rate,
                error_rate: args.error_rate,
                expired_rate: args.expired_rate,
                kms_throttle_rate: args.kms_throttle_rate,
                reset_rate: args.reset_rate,
                lost_rate: args.lost_rate,
                slow_rate: args.slow_rate,
                slow: ms(args.slow_ms),
                duplicate_rate: args.duplicate_rate,
            },
            args.heartbeat_timeout_secs.map(|secs| state::Chaos {
                heartbeat_timeout: std::time::Duration::from_secs(secs),
                blocking: args.blocking,
            }),
            args.callback_ids,
        )
        .with_calls(congestion::Calls::new(args.buckets)),
    );
    let sweeper = backend.clone();
    tokio::spawn(async move { sweeper.sweep().await });
    if let Some(rate) = args.rate_per_sec {
        let feeder = backend.clone();
        tokio::spawn(async move { feeder.feed(rate).await });
    }
    let app = Router::new()
        .route("/", post(dispatch))
        .route(
            "/2025-12-01/durable-execution-callbacks/{id}/{action}",
            post(durable::handle),
        )
        .route("/stats", get(stats))
        .route("/chaos", get(chaos))
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
    serve(listener, app).await;
}

/// Cuts one connection: the fault switches reset connections mid-call.
#[derive(Clone)]
struct Cut(Arc<Notify>);

/// axum's serving, one connection at a time, so that a call can have its
/// connection reset (RST) before or after it is handled.
async fn serve(listener: tokio::net::TcpListener, app: Router) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("fake-aws: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let cut = Arc::new(Notify::new());
            // A second handle on the socket, to make the close a reset.
            let Ok(std) = stream.into_std() else { return };
            let Ok(handle) = std.try_clone() else { return };
            let Ok(stream) = tokio::net::TcpStream::from_std(std) else {
                return;
            };
            let service = TowerToHyperService::new(app.layer(Extension(Cut(cut.clone()))));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = cut.notified() => {
                    let _ = socket2::SockRef::from(&handle).set_linger(Some(std::time::Duration::ZERO));
                }
            }
        });
    }
}

async fn chaos(State(b): State<Arc<Backend>>) -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        b.records().to_string(),
    )
}

async fn stats(State(b): State<Arc<Backend>>) -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        b.stats().to_string(),
    )
}

/// An AWS JSON 1.0 error answer. `x-amzn-query-error` carries the code as
/// SQS's query-compatible errors do (the SQS SDK reads the code from it).
pub(crate) fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    (
        status,
        [
            ("content-type", "application/x-amz-json-1.0".to_owned()),
            ("x-amzn-query-error", format!("{code};{fault}")),
        ],
        body,
    )
        .into_response()
}

/// The code a service throttles with: SQS `RequestThrottled`, Step
/// Functions `ThrottlingException`.
pub(crate) fn throttling_code(service: &str) -> &'static str {
    if service == "AmazonSQS" {
        "RequestThrottled"
    } else {
        "ThrottlingException"
    }
}

/// The answer to a call its bucket has no token for, in the service's words.
pub(crate) fn throttled(service: &str) -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        throttling_code(service),
        "Rate exceeded",
    )
}

pub(crate) fn aws_ok(body: serde_json::Value) -> Response {
    (
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

async fn dispatch(
    State(b): State<Arc<Backend>>,
    Extension(cut): Extension<Cut>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    if !b.calls.admit(operation) {
        b.counters.faults.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(b.faults.latency).await;
        return throttled(service);
    }
    let fault = if b.faults.any() {
        b.faults.inject(service, operation).await
    } else {
        None
    };
    if let Some(f) = &fault {
        let throttled = matches!(
            f,
            Fault::Answer {
                throttled: true,
                ..
            }
        );
        b.calls.faulted(operation, throttled);
    }
    let lost = match fault {
        Some(Fault::Answer { response, .. }) => {
            b.counters.faults.fetch_add(1, Ordering::Relaxed);
            return response;
        }
        Some(Fault::ResetBefore) => {
            b.counters.faults.fetch_add(1, Ordering::Relaxed);
            cut.0.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::LostAfter) => true,
        None => false,
    };
    let response = match service {
        "AWSStepFunctions" => sfn::handle(&b, operation, request).await,
        "AmazonSQS" => sqs::handle(&b, operation, request).await,
        "DynamoDB_20120810" => dynamodb::handle(&b.tables, operation, &request),
        _ => aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &target,
        ),
    };
    if lost {
        // Carried out; the answer never arrives.
        b.counters.faults.fetch_add(1, Ordering::Relaxed);
        cut.0.notify_one();
        return std::future::pending().await;
    }
    response
}
