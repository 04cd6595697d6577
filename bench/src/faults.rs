//! Fault injection: a switch per kind of fault, drawn per call before any
//! handling (or, for a lost answer, after it).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// Fraction of `SendTask*` calls answered `ThrottlingException`, and of
    /// SQS calls answered `RequestThrottled`.
    pub throttle_rate: f64,
    /// Fraction of calls answered HTTP 500.
    pub error_rate: f64,
    /// Fraction of calls answered `ExpiredTokenException`.
    pub expired_rate: f64,
    /// Fraction of `SendTask*` calls answered `KmsThrottlingException` (and
    /// of SQS calls answered `KMS.ThrottlingException`).
    pub kms_throttle_rate: f64,
    /// Fraction of calls whose connection is reset before anything is done.
    pub reset_rate: f64,
    /// Fraction of calls that are carried out, and then their connection is
    /// reset instead of answered: the work is done, the answer is lost.
    pub lost_rate: f64,
    /// Fraction of calls answered `slow` late.
    pub slow_rate: f64,
    pub slow: Duration,
    /// Fraction of received SQS messages also left visible (handed out again).
    pub duplicate_rate: f64,
}

/// What to do with a call instead of (or after) handling it.
pub(crate) enum Fault {
    /// Answer this instead (`throttled`: with a throttling code).
    Answer { response: Response, throttled: bool },
    /// Reset the connection without handling the call.
    ResetBefore,
    /// Handle the call, then reset the connection instead of answering.
    LostAfter,
}

pub(crate) fn hit(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

impl Faults {
    pub fn any(&self) -> bool {
        !self.latency.is_zero()
            || [
                self.throttle_rate,
                self.error_rate,
                self.expired_rate,
                self.kms_throttle_rate,
                self.reset_rate,
                self.lost_rate,
                self.slow_rate,
            ]
            .iter()
            .any(|r| *r > 0.0)
    }

    /// A fault for this call, if one is drawn.
    pub async fn inject(&self, service: &str, operation: &str) -> Option<Fault> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if hit(self.slow_rate) {
            tokio::time::sleep(self.slow).await;
        }
        if hit(self.reset_rate) {
            return Some(Fault::ResetBefore);
        }
        let sqs = service == "AmazonSQS";
        // DynamoDB (the task ledger) gets the faults every call gets, but
        // not the throttles meant for Step Functions' and SQS's quotas.
        let send_task = operation.starts_with("SendTask");
        let answer = |status, code: &str| {
            Some(Fault::Answer {
                response: crate::aws_error(status, code, "injected"),
                throttled: code.contains("Throttl"),
            })
        };
        if hit(self.error_rate) {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure");
        }
        if hit(self.expired_rate) {
            return answer(StatusCode::BAD_REQUEST, "ExpiredTokenException");
        }
        if (send_task || sqs) && hit(self.throttle_rate) {
            return answer(StatusCode::BAD_REQUEST, crate::throttling_code(service));
        }
        if (send_task || sqs) && hit(self.kms_throttle_rate) {
            let code = if sqs {
                "KMS.ThrottlingException"
            } else {
                "KmsThrottlingException"
            };
            return answer(StatusCode::BAD_REQUEST, code);
        }
        if hit(self.lost_rate) {
            return Some(Fault::LostAfter);
        }
        None
    }
}
