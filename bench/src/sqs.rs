//! The SQS operations (JSON protocol).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::state::{Backend, Queue};
use crate::{aws_error, aws_ok};

pub(crate) async fn handle(b: &Backend, operation: &str, request: Value) -> Response {
    match operation {
        "ReceiveMessage" => receive(b, &request).await,
        "DeleteMessage" => match delete(b, request["ReceiptHandle"].as_str().unwrap_or_default()) {
            true => aws_ok(json!({})),
            false => aws_error(
                StatusCode::BAD_REQUEST,
                "ReceiptHandleIsInvalid",
                "unknown receipt handle",
            ),
        },
        "ChangeMessageVisibility" => {
            let secs = request["VisibilityTimeout"].as_u64().unwrap_or(0);
            match change(
                b,
                request["ReceiptHandle"].as_str().unwrap_or_default(),
                secs,
            ) {
                true => aws_ok(json!({})),
                false => aws_error(
                    StatusCode::BAD_REQUEST,
                    "MessageNotInflight",
                    "not in flight",
                ),
            }
        }
        "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
            b.counters.batch_calls.fetch_add(1, Ordering::Relaxed);
            let delete_op = operation == "DeleteMessageBatch";
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for entry in request["Entries"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let id = entry["Id"].as_str().unwrap_or_default();
                let handle = entry["ReceiptHandle"].as_str().unwrap_or_default();
                let ok = if delete_op {
                    delete(b, handle)
                } else {
                    change(b, handle, entry["VisibilityTimeout"].as_u64().unwrap_or(0))
                };
                if ok {
                    successful.push(json!({ "Id": id }));
                } else {
                    failed.push(json!({ "Id": id, "SenderFault": true, "Code": "ReceiptHandleIsInvalid", "Message": "unknown receipt handle" }));
                }
            }
            aws_ok(json!({ "Successful": successful, "Failed": failed }))
        }
        "GetQueueAttributes" => aws_ok(json!({ "Attributes": { "VisibilityTimeout": "30" } })),
        _ => aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            operation,
        ),
    }
}

fn lock(b: &Backend) -> std::sync::MutexGuard<'_, Queue> {
    b.queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long after a hand-out its copy (`--duplicate-rate`) is handed out.
const COPY_AFTER: Duration = Duration::from_millis(500);

fn expire(q: &mut Queue, now: Instant) {
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut q.copies)
        .into_iter()
        .partition(|(_, at)| *at <= now);
    q.copies = later;
    for (m, _) in due {
        q.visible.push_front(m);
    }
    let expired: Vec<String> = q
        .in_flight
        .iter()
        .filter(|(_, (_, at))| *at <= now)
        .map(|(h, _)| h.clone())
        .collect();
    for h in expired {
        if let Some((m, _)) = q.in_flight.remove(&h) {
            q.visible.push_back(m);
            q.lapses += 1;
        }
    }
}

/// `expire`, tracing what lapsed.
fn expire_traced(b: &Backend, q: &mut Queue, now: Instant) {
    if b.trace.is_some() {
        for (h, (m, at)) in &q.in_flight {
            if *at <= now {
                b.trace(format_args!("lapse {h} {}", m.token));
            }
        }
    }
    expire(q, now);
}

fn delete(b: &Backend, handle: &str) -> bool {
    let removed = lock(b).in_flight.remove(handle);
    b.trace(format_args!(
        "delete {handle} {}",
        removed
            .as_ref()
            .map_or("invalid", |(m, _)| m.token.as_str())
    ));
    let removed = removed.is_some();
    if removed {
        b.counters.deleted.fetch_add(1, Ordering::Relaxed);
    }
    removed
}

fn change(b: &Backend, handle: &str, secs: u64) -> bool {
    let mut q = lock(b);
    let Some((m, _)) = q.in_flight.remove(handle) else {
        b.trace(format_args!("change {handle} {secs} invalid"));
        return false;
    };
    b.trace(format_args!("change {handle} {secs} {}", m.token));
    b.counters
        .visibility_changes
        .fetch_add(1, Ordering::Relaxed);
    if secs == 0 {
        q.visible.push_front(m);
        drop(q);
        b.changed.notify_waiters();
    } else {
        q.in_flight.insert(
            handle.to_owned(),
            (m, Instant::now() + Duration::from_secs(secs)),
        );
    }
    true
}

async fn receive(b: &Backend, request: &Value) -> Response {
    b.counters.receives.fetch_add(1, Ordering::Relaxed);
    let max = request["MaxNumberOfMessages"]
        .as_u64()
        .unwrap_or(1)
        .clamp(1, 10) as usize;
    let wait =
        Duration::from_secs(request["WaitTimeSeconds"].as_u64().unwrap_or(0)).min(b.poll_hold);
    let visibility = Duration::from_secs(request["VisibilityTimeout"].as_u64().unwrap_or(30));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = b.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (messages, tokens) = {
            let now = Instant::now();
            let mut q = lock(b);
            expire_traced(b, &mut q, now);
            let mut out = Vec::new();
            let mut tokens = Vec::new();
            while out.len() < max {
                let Some(m) = q.visible.pop_front() else {
                    break;
                };
                q.next_handle += 1;
                let handle = format!("rh-{}", q.next_handle);
                out.push(json!({
                    "MessageId": m.id, "ReceiptHandle": handle, "MD5OfBody": m.md5, "Body": m.body,
                    "Attributes": { "ApproximateReceiveCount": "1" }
                }));
                tokens.push(m.token.clone());
                b.trace(format_args!("receive {handle} {}", m.token));
                if crate::faults::hit(b.faults.duplicate_rate) {
                    // At least once: the same message, handed out again a
                    // moment later (by the next receive, whichever worker's
                    // it is), as another SQS host holding a copy would.
                    q.copies.push((m.clone(), now + COPY_AFTER));
                    b.counters
                        .duplicates_injected
                        .fetch_add(1, Ordering::Relaxed);
                }
                q.in_flight.insert(handle, (m, now + visibility));
            }
            (out, tokens)
        };
        for token in &tokens {
            b.handed_out(token);
        }
        if !messages.is_empty() {
            b.counters
                .handed_out
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            return aws_ok(json!({ "Messages": messages }));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => return aws_ok(json!({})),
        }
    }
}
