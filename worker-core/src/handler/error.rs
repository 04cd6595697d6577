use std::fmt;

pub use crate::limits::{MAX_CAUSE_CHARS, MAX_ERROR_CHARS};

/// A task failure, reported with `SendTaskFailure`.
///
/// `error` is a stable name a state machine can `Catch` or `Retry` on
/// (for example `Payments.CardDeclined`); `cause` is human-readable text.
/// Both are truncated on character boundaries to the lengths Step Functions
/// accepts, so a handler never has to care about those limits.
///
/// A handler may return its own error type `E` instead, as long as
/// `E: Into<TaskError>`: map your error enum to stable names once, in one
/// `From` impl, and use `?` inside the handler (the Lambda runtime's
/// `Diagnostic` model). There is deliberately no conversion from every
/// `std::error::Error`: a name derived from a Rust type would change with a
/// refactor and break the state machines that `Catch` it. For a one-off
/// error, [`ResultExt::or_task_error`] names it where it happens.
///
/// ```
/// use sfn_worker_core::TaskError;
///
/// enum OrderError { NotFound(u64), Declined }
///
/// impl From<OrderError> for TaskError {
///     fn from(e: OrderError) -> Self {
///         match e {
///             OrderError::NotFound(id) => TaskError::new("Orders.NotFound", format!("no order with id {id}")),
///             OrderError::Declined => TaskError::new("Orders.Declined", "the card was declined"),
///         }
///     }
/// }
///
/// let err: TaskError = OrderError::NotFound(42).into();
/// assert_eq!(err.error(), "Orders.NotFound");
/// ```
///
/// An error nobody named does not become a `TaskError` by itself:
///
/// ```compile_fail
/// use sfn_worker_core::{TaskContext, TaskError};
/// async fn read(path: String, _ctx: TaskContext) -> Result<String, TaskError> {
///     Ok(std::fs::read_to_string(path)?) // io::Error has no name here
/// }
/// ```
///
/// ```
/// use sfn_worker_core::{ResultExt, TaskContext, TaskError};
/// async fn read(path: String, _ctx: TaskContext) -> Result<String, TaskError> {
///     Ok(std::fs::read_to_string(path).or_task_error("Files.ReadFailed")?)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    error: String,
    cause: String,
}

impl TaskError {
    /// A failure with the given error name and cause, truncated to the limits.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: truncate_chars(error.into(), MAX_ERROR_CHARS),
            cause: truncate_chars(cause.into(), MAX_CAUSE_CHARS),
        }
    }

    /// The same failure with `secret` (the task's token) taken out of both
    /// fields: a handler's error may quote its input, and with the default
    /// `input_pointer` an SQS task's input is the whole message, token
    /// included.
    pub(crate) fn redacted(self, secret: &str) -> Self {
        use std::borrow::Cow;
        match (
            crate::redact(&self.error, secret),
            crate::redact(&self.cause, secret),
        ) {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => self,
            (error, cause) => Self::new(error.into_owned(), cause.into_owned()),
        }
    }

    /// The error name (at most 256 characters).
    pub fn error(&self) -> &str {
        &self.error
    }

    /// The human-readable cause (at most 32,768 characters).
    pub fn cause(&self) -> &str {
        &self.cause
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for TaskError {}

/// A handler that cannot fail (`Result<O, Infallible>`).
impl From<std::convert::Infallible> for TaskError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// The error of a tower stack (`tower::BoxError`, what `Timeout`, `Buffer`
/// and most layers return) as a task failure: a [`TaskError`] inside it
/// keeps its name; tower's timeout is `Worker.HandlerTimeout`, as the
/// binding's own `timeout_secs` is; anything else is `Worker.ServiceError`
/// with the error's text as the cause. One fixed name, not one derived from
/// the error's type: a state machine's `Catch` must not change with a
/// refactor. Name your own layer's failures by returning a `TaskError`.
impl From<tower::BoxError> for TaskError {
    fn from(e: tower::BoxError) -> Self {
        match e.downcast::<TaskError>() {
            Ok(named) => *named,
            Err(e) if e.is::<tower::timeout::error::Elapsed>() => TaskError::new(
                crate::error_names::HANDLER_TIMEOUT,
                "the handler ran past the timeout of a tower layer",
            ),
            Err(e) => TaskError::new(crate::error_names::SERVICE_ERROR, e.to_string()),
        }
    }
}

/// Name an error where it happens: `std::fs::read(p).or_task_error("Orders.ReadFailed")?`.
pub trait ResultExt<T> {
    /// The error becomes a [`TaskError`] named `error`, with the error's
    /// `Display` text as the cause.
    fn or_task_error(self, error: &str) -> Result<T, TaskError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn or_task_error(self, error: &str) -> Result<T, TaskError> {
        self.map_err(|e| TaskError::new(error, e.to_string()))
    }
}

/// Cut `s` to at most `max` characters without splitting a character.
pub(crate) fn truncate_chars(mut s: String, max: usize) -> String {
    if let Some((byte_index, _)) = s.char_indices().nth(max) {
        s.truncate(byte_index);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept() {
        let e = TaskError::new("A.B", "cause");
        assert_eq!((e.error(), e.cause()), ("A.B", "cause"));
    }

    #[test]
    fn error_is_truncated_to_256_characters_on_char_boundaries() {
        // 'é' is two bytes: a byte-based cut would split it.
        let e = TaskError::new("é".repeat(300), "");
        assert_eq!(e.error().chars().count(), MAX_ERROR_CHARS);
        assert_eq!(e.error(), "é".repeat(256));
    }

    #[test]
    fn cause_is_truncated_to_32768_characters_on_char_boundaries() {
        let e = TaskError::new("X", "🦀".repeat(40_000));
        assert_eq!(e.cause().chars().count(), MAX_CAUSE_CHARS);
        assert!(e.cause().chars().all(|c| c == '🦀'));
    }

    #[test]
    fn exactly_at_the_limit_is_not_truncated() {
        let e = TaskError::new("x".repeat(256), "y".repeat(32_768));
        assert_eq!(e.error().len(), 256);
        assert_eq!(e.cause().len(), 32_768);
    }

    #[test]
    fn a_tower_error_keeps_a_task_errors_name_and_names_the_rest_once() {
        let named: tower::BoxError = Box::new(TaskError::new("Orders.Declined", "no"));
        assert_eq!(
            TaskError::from(named),
            TaskError::new("Orders.Declined", "no")
        );
        let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(TaskError::from(elapsed).error(), "Worker.HandlerTimeout");
        let other: tower::BoxError = "overloaded".into();
        assert_eq!(
            TaskError::from(other),
            TaskError::new("Worker.ServiceError", "overloaded")
        );
    }

    #[test]
    fn an_error_is_named_where_it_happens() {
        let io: Result<(), _> = Err(std::io::Error::other("disk on fire"));
        let e = io.or_task_error("Files.ReadFailed").unwrap_err();
        assert_eq!((e.error(), e.cause()), ("Files.ReadFailed", "disk on fire"));
    }
}
