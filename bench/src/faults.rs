//! Fault injection: a switch per kind of fault, applied before any handling.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pub latency: Duration,
    pub throttle_rate: f64,
    pub error_rate: f64,
}

impl Faults {
    /// A fault to answer with instead of handling the call, if one is due.
    pub async fn inject(&self, operation: &str) -> Option<Response> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate {
            return Some(crate::aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "injected",
            ));
        }
        if self.throttle_rate > 0.0
            && operation.starts_with("SendTask")
            && rand::random::<f64>() < self.throttle_rate
        {
            return Some(crate::aws_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "injected",
            ));
        }
        None
    }
}
