//! Trace context end to end: SQS messages carrying a parent trace (the
//! `AWSTraceHeader` system attribute, or a `traceparent` in the input) reach
//! a real OTLP/HTTP receiver as the task span's parent, and the trace id is
//! in the logs. LocalStack for SQS, the real binary built with `otlp`.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::*;

const X_RAY: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const X_RAY_TRACE: &str = "5759e988bd862e3fe1be46a994272793";
const X_RAY_PARENT: &str = "53995c3f42cd8ad8";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const W3C_PARENT: &str = "00f067aa0ba902b7";

/// What the receiver got: (content type, body) per export request.
type Exports = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP receiver: records every POST to /v1/traces.
async fn receiver() -> (String, Exports) {
    let got: Exports = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let got = state.clone();
            async move {
                let kind = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                got.lock().unwrap().push((kind, body));
                "{}"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// Every exported span (OTLP JSON), flattened.
fn spans(got: &Exports) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, body) in got.lock().unwrap().iter() {
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

async fn send(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    token: &str,
    input: Value,
    x_ray: Option<&str>,
) {
    let mut send = sqs
        .send_message()
        .queue_url(url)
        .message_body(json!({ "taskToken": token, "input": input }).to_string());
    if let Some(header) = x_ray {
        send = send.message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .unwrap(),
        );
    }
    send.send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_trace_arrives_in_the_exported_task_span() {
    let sqs = sqs().await;
    let url = create_queue(&sqs, &unique("traced")).await;
    let (otlp, got) = receiver().await;
    let dir = scratch_dir("traced");
    // Tokens Step Functions does not know: the report is refused, the task
    // ends, and its span is exported all the same.
    let tokens = [
        unique("xray-token"),
        unique("w3c-token"),
        unique("plain-token"),
    ];
    send(&sqs, &url, &tokens[0], json!({"n": 0}), Some(X_RAY)).await;
    // A traceparent in the input wins over an attribute.
    send(
        &sqs,
        &url,
        &tokens[1],
        json!({"n": 1, "traceparent": TRACEPARENT}),
        Some(X_RAY),
    )
    .await;
    send(&sqs, &url, &tokens[2], json!({"n": 2}), None).await;

    let binding = format!(
        "[[queue]]\nname = \"traced\"\nurl = \"{url}\"\nhandler = \"echo\"\ninput_pointer = \"/input\"\ntraceparent_pointer = \"/traceparent\"\n"
    );
    let mut daemon = Daemon::start_with(
        &dir,
        "traced",
        "",
        &binding,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let fingerprints: Vec<String> = tokens
        .iter()
        .map(|t| sfn_worker_core::fingerprint(t))
        .collect();
    let span_of = |fp: &str| {
        spans(&got)
            .into_iter()
            .find(|s| s["name"] == "task" && attribute(s, "token") == Some(fp))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while fingerprints.iter().any(|fp| span_of(fp).is_none()) {
        assert!(
            Instant::now() < deadline,
            "not every task span was exported within 30 s: {:?}\n{}",
            spans(&got),
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(30)).await;

    let x_ray = span_of(&fingerprints[0]).unwrap();
    assert_eq!(x_ray["traceId"], X_RAY_TRACE, "{x_ray}");
    assert_eq!(x_ray["parentSpanId"], X_RAY_PARENT, "{x_ray}");
    assert_eq!(attribute(&x_ray, "binding"), Some("traced"));
    let w3c = span_of(&fingerprints[1]).unwrap();
    assert_eq!(w3c["traceId"], W3C_TRACE, "{w3c}");
    assert_eq!(w3c["parentSpanId"], W3C_PARENT, "{w3c}");
    // Control: a message with no trace gets a trace of its own.
    let plain = span_of(&fingerprints[2]).unwrap();
    let own = plain["traceId"].as_str().unwrap_or_default();
    assert!(
        own.len() == 32 && own != X_RAY_TRACE && own != W3C_TRACE,
        "{plain}"
    );
    assert!(
        plain["parentSpanId"].as_str().is_none_or(str::is_empty),
        "{plain}"
    );
    // Only task spans go out.
    assert!(
        spans(&got).iter().all(|s| s["name"] == "task"),
        "{:?}",
        spans(&got)
    );

    // The trace id is in the task's log lines.
    let logs = daemon.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("trace_id={X_RAY_TRACE}"))),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("trace_id={W3C_TRACE}"))),
        "{logs}"
    );
}

/// The default protocol, OTLP/HTTP with protobuf, carries the same parent.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_export_is_protobuf_with_the_parent_trace() {
    let sqs = sqs().await;
    let url = create_queue(&sqs, &unique("traced-proto")).await;
    let (otlp, got) = receiver().await;
    let dir = scratch_dir("traced-proto");
    send(&sqs, &url, &unique("token"), json!({"n": 0}), Some(X_RAY)).await;
    let binding = format!(
        "[[queue]]\nname = \"traced\"\nurl = \"{url}\"\nhandler = \"echo\"\ninput_pointer = \"/input\"\n"
    );
    let mut daemon = Daemon::start_with(
        &dir,
        "traced-proto",
        "",
        &binding,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&X_RAY_TRACE[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let carries_trace = |body: &Bytes| body.windows(16).any(|w| w == trace_id.as_slice());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = got
            .lock()
            .unwrap()
            .iter()
            .any(|(kind, body)| kind == "application/x-protobuf" && carries_trace(body));
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no protobuf export carrying the trace id within 30 s\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(30)).await;
}
