//! What a failed AWS call means for the worker.
//!
//! Every client (the SDK, the direct client, the fakes) turns its errors into
//! an [`ApiError`] whose [`ApiErrorKind`] comes from one table,
//! [`ApiError::kind_for`], written from the API references of Step Functions
//! and SQS and the errors common to every AWS API. The rule that matters most:
//! a refusal is only blamed on a task's *output* when the service said so
//! (`InvalidOutput`, a validation error). Throttling, credential and clock
//! errors are the worker's own trouble and are retried; an unknown refusal
//! leaves the task undelivered and says so, it never turns a success into a
//! failure.

/// How the worker should treat a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// `TaskTimedOut`, `TaskDoesNotExist` (Lambda callbacks:
    /// `CallbackTimeoutException`): the task is over (timed out, stopped,
    /// or already completed). Stop working on it.
    TaskClosed,
    /// Lambda's `ResourceNotFoundException` for a durable-execution callback:
    /// no such callback *here*. For a callback Lambda knew before (a
    /// heartbeat of it was accepted) that means closed; for one it never
    /// knew it is as likely a worker pointed at the wrong region, account or
    /// endpoint, and the message (the only copy of the callback id) must be
    /// kept. (AWS's local runner also answers it for an expired callback;
    /// `aws.lambda_callback_not_found = "closed"` reads it as closed.)
    CallbackNotFound,
    /// `InvalidToken`. On AWS: the token string itself is not valid. On
    /// LocalStack also the answer to a heartbeat for a state without
    /// `HeartbeatSeconds`, and for a closed task; so on its own it does not
    /// prove the task is closed (see the runner's keep-alive).
    InvalidToken,
    /// Throttled (`ThrottlingException`, `KmsThrottlingException`, SQS
    /// `RequestThrottled`, HTTP 429, ...): retry with backoff, and let
    /// reports go before heartbeats.
    Throttled,
    /// Network error, timeout, 5xx: retry with backoff.
    Transient,
    /// Credentials expired or not recognized, or the request's clock is off
    /// (`ExpiredTokenException`, `InvalidSignatureException`, `RequestExpired`,
    /// `SignatureDoesNotMatch`, ...). Not a verdict on the task: refresh the
    /// credentials, correct the clock skew, retry.
    Credentials,
    /// The service refused the request's content (`InvalidOutput`, a
    /// validation error): for `SendTaskSuccess`, the output itself. Sending
    /// the same thing again will not help.
    InvalidPayload,
    /// The worker may not use the KMS key that encrypts the execution's data
    /// (`KmsAccessDeniedException`, `KmsInvalidStateException`). A failure
    /// with empty `error` and `cause` still goes through.
    KmsRefused,
    /// `AccessDenied*`: the worker's IAM policy does not allow the call.
    /// Nothing about the task is wrong; it cannot be delivered by this worker.
    AccessDenied,
    /// `ActivityDoesNotExist`.
    ActivityDoesNotExist,
    /// The SQS queue does not exist.
    QueueDoesNotExist,
    /// Any other refusal: retrying the same call will not help.
    Rejected,
}

/// A failed AWS call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// What the worker should do about it.
    pub kind: ApiErrorKind,
    /// The AWS error code (`ThrottlingException`), or for errors that never
    /// reached the service: `Timeout`, `DispatchFailure`, `ResponseError`.
    pub code: String,
    /// Details, for logs.
    pub message: String,
}

impl ApiError {
    /// An error of the given kind and code.
    pub fn new(kind: ApiErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A service error, its kind from [`ApiError::kind_for`].
    pub fn service(code: impl Into<String>, http_status: u16, message: impl Into<String>) -> Self {
        let code = code.into();
        Self {
            kind: Self::kind_for(&code, http_status),
            code,
            message: message.into(),
        }
    }

    /// The same error with `secret` (a task token, a callback id) taken out
    /// of its message: AWS's validation messages quote the request's values.
    pub fn redact(mut self, secret: &str) -> Self {
        if let std::borrow::Cow::Owned(m) = crate::redact(&self.message, secret) {
            self.message = m;
        }
        self
    }

    /// Whether the request certainly never reached the service: no
    /// connection, no credentials, or timed out waiting to be sent. (Any
    /// other failure may have come after the service carried it out.)
    pub fn never_sent(&self) -> bool {
        matches!(
            self.code.as_str(),
            super::signed::NOT_SENT
                | super::signed::CONNECT_FAILED
                | "CredentialsError"
                | "NoCredentials"
                | "BatcherStopped"
        )
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Throttled | ApiErrorKind::Transient | ApiErrorKind::Credentials
        )
    }

    /// The kind a service error code and HTTP status stand for. Codes are
    /// matched without their namespace (`com.amazonaws...#`) and, for SQS,
    /// as the SDK reports them (`KMS.ThrottlingException`,
    /// `AWS.SimpleQueueService.NonExistentQueue`).
    pub fn kind_for(code: &str, http_status: u16) -> ApiErrorKind {
        use ApiErrorKind::*;
        match code {
            // Step Functions: the task is over. Lambda durable callbacks:
            // expired or already completed. (Lambda's
            // `ResourceNotFoundException` is `CallbackNotFound`, given by
            // the Lambda client alone: elsewhere it says nothing about a task.)
            "TaskTimedOut" | "TaskDoesNotExist" | "CallbackTimeoutException" => TaskClosed,
            "InvalidToken" => InvalidToken,
            // Throttling: common to all APIs, KMS behind Step Functions and
            // SQS, SQS's own, and the worker limit of GetActivityTask.
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "ProvisionedThroughputExceededException"
            | "KmsThrottlingException"
            | "KMSThrottlingException"
            | "KMS.ThrottlingException"
            | "KmsThrottled"
            | "ActivityWorkerLimitExceeded" => Throttled,
            // Credentials and clock: common to all AWS APIs.
            "ExpiredToken"
            | "ExpiredTokenException"
            | "RequestExpired"
            | "RequestTimeTooSkewed"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClient"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "IncompleteSignature" => Credentials,
            // The payload itself.
            "InvalidOutput"
            | "ValidationException"
            | "ValidationError"
            | "SerializationException"
            | "InvalidParameterValue"
            | "InvalidParameterValueException" => InvalidPayload,
            "KmsAccessDeniedException"
            | "KmsInvalidStateException"
            | "KMS.AccessDeniedException"
            | "KMS.DisabledException"
            | "KMS.InvalidStateException"
            | "KMS.NotFoundException"
            | "KMS.InvalidKeyUsageException"
            | "KmsAccessDenied"
            | "KmsDisabled"
            | "KmsInvalidState"
            | "KmsNotFound"
            | "KmsInvalidKeyUsage"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSInvalidStateException"
            | "KMSNotFoundException" => KmsRefused,
            "AccessDenied" | "AccessDeniedException" | "NotAuthorized" => AccessDenied,
            "ActivityDoesNotExist" => ActivityDoesNotExist,
            "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" => QueueDoesNotExist,
            "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "InternalFailure"
            | "InternalError"
            | "InternalServerError"
            | "ServiceException"
            | "RequestTimeout"
            | "RequestTimeoutException"
            | "IDPCommunicationError"
            | "EC2ThrottledException" => Transient,
            _ if http_status == 429 => Throttled,
            _ if http_status >= 500 => Transient,
            _ => Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_from_the_api_references() {
        use ApiErrorKind::*;
        for (code, status, kind) in [
            ("TaskTimedOut", 400, TaskClosed),
            ("TaskDoesNotExist", 400, TaskClosed),
            ("InvalidToken", 400, InvalidToken),
            ("ThrottlingException", 400, Throttled),
            ("KmsThrottlingException", 400, Throttled),
            ("KMS.ThrottlingException", 400, Throttled),
            ("RequestThrottled", 400, Throttled),
            ("ActivityWorkerLimitExceeded", 400, Throttled),
            ("Whatever", 429, Throttled),
            ("ExpiredTokenException", 400, Credentials),
            ("ExpiredToken", 403, Credentials),
            ("InvalidSignatureException", 400, Credentials),
            ("RequestExpired", 400, Credentials),
            ("UnrecognizedClientException", 400, Credentials),
            ("SignatureDoesNotMatch", 403, Credentials),
            ("InvalidOutput", 400, InvalidPayload),
            ("ValidationException", 400, InvalidPayload),
            ("KmsAccessDeniedException", 400, KmsRefused),
            ("KmsInvalidStateException", 400, KmsRefused),
            ("AccessDeniedException", 400, AccessDenied),
            ("Whatever", 503, Transient),
            ("InternalFailure", 500, Transient),
            ("ActivityDoesNotExist", 400, ActivityDoesNotExist),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                400,
                QueueDoesNotExist,
            ),
            ("SomethingNew", 400, Rejected),
        ] {
            assert_eq!(ApiError::kind_for(code, status), kind, "{code} {status}");
        }
    }

    #[test]
    fn credentials_throttling_and_transient_errors_are_retryable_and_nothing_else() {
        for (code, retryable) in [
            ("ExpiredTokenException", true),
            ("KmsThrottlingException", true),
            ("InternalFailure", true),
            ("InvalidOutput", false),
            ("AccessDeniedException", false),
            ("TaskTimedOut", false),
            ("SomethingNew", false),
        ] {
            assert_eq!(
                ApiError::service(code, 400, "").is_retryable(),
                retryable,
                "{code}"
            );
        }
    }
}
