//! The Step Functions operations.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::state::{Backend, Refusal};
use crate::{aws_error, aws_ok};

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Closed => aws_error(
            StatusCode::BAD_REQUEST,
            "TaskTimedOut",
            "task already closed",
        ),
        Refusal::Unknown => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "unknown task token",
        ),
    }
}

fn token(request: &Value) -> &str {
    request["taskToken"].as_str().unwrap_or_default()
}

pub(crate) async fn handle(b: &Backend, operation: &str, request: Value) -> Response {
    match operation {
        "GetActivityTask" => get_activity_task(b).await,
        "SendTaskSuccess" => b
            .complete(
                token(&request),
                true,
                request["output"].as_str().unwrap_or_default(),
            )
            .map_or_else(refused, |()| aws_ok(json!({}))),
        "SendTaskFailure" => b
            .complete(
                token(&request),
                false,
                request["error"].as_str().unwrap_or_default(),
            )
            .map_or_else(refused, |()| aws_ok(json!({}))),
        "SendTaskHeartbeat" => b
            .heartbeat(token(&request))
            .map_or_else(refused, |()| aws_ok(json!({}))),
        "DescribeActivity" => {
            let arn = request["activityArn"].as_str().unwrap_or_default();
            let name = arn.rsplit(':').next().unwrap_or_default();
            aws_ok(json!({ "activityArn": arn, "name": name, "creationDate": 1.7e9 }))
        }
        _ => aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            operation,
        ),
    }
}

/// Hand out a task, or wait up to the poll hold for one.
async fn get_activity_task(b: &Backend) -> Response {
    b.counters.polls.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + b.poll_hold;
    loop {
        let notified = b.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = b
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some((token, input)) = next {
            b.counters.handed_out.fetch_add(1, Ordering::Relaxed);
            b.handed_out(&token);
            return aws_ok(json!({ "taskToken": token, "input": input }));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                b.counters.empty_polls.fetch_add(1, Ordering::Relaxed);
                return aws_ok(json!({}));
            }
        }
    }
}
