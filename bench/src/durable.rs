//! Lambda's durable-execution callback routes (REST-JSON): the three calls
//! that complete a callback id, for messages made with `--callback-ids`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::state::{Backend, Refusal, token_of_callback_id};

pub(crate) async fn handle(
    State(b): State<Arc<Backend>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let token = token_of_callback_id(&id);
    let operation = match action.as_str() {
        "succeed" => "SendDurableExecutionCallbackSuccess",
        "fail" => "SendDurableExecutionCallbackFailure",
        "heartbeat" => "SendDurableExecutionCallbackHeartbeat",
        _ => "",
    };
    if !operation.is_empty() && !b.calls.admit(operation) {
        tokio::time::sleep(b.faults.latency).await;
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Rate exceeded",
        );
    }
    let result = match action.as_str() {
        "succeed" => b.complete(&token, true, &String::from_utf8_lossy(&body)),
        "fail" => {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            b.complete(
                &token,
                false,
                error["ErrorType"].as_str().unwrap_or_default(),
            )
        }
        "heartbeat" => b.heartbeat(&token),
        _ => return error(StatusCode::NOT_FOUND, "UnknownOperationException", &action),
    };
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(Refusal::Closed) => error(
            StatusCode::BAD_REQUEST,
            "CallbackTimeoutException",
            "the callback timed out or was already completed",
        ),
        Err(Refusal::Unknown) => error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "no such callback",
        ),
    }
}

/// A REST-JSON error as Lambda answers: the code in `x-amzn-errortype`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "message": message }).to_string();
    (
        status,
        [
            ("content-type", "application/json".to_owned()),
            ("x-amzn-errortype", code.to_owned()),
        ],
        body,
    )
        .into_response()
}
