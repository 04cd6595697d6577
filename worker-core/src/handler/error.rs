use std::fmt;

pub use crate::limits::{MAX_CAUSE_CHARS, MAX_ERROR_CHARS};

/// A task failure, reported with `SendTaskFailure`.
///
/// `error` is a stable name a state machine can `Catch` or `Retry` on
/// (for example `Payments.CardDeclined`); `cause` is human-readable text.
/// Both are truncated on character boundaries to the lengths Step Functions
/// accepts, so a handler never has to care about those limits.
///
/// Any `std::error::Error` converts into a `TaskError` (so `?` works in
/// handlers); its error name is then the Rust type name of that error and its
/// cause its `Display` text. Use [`TaskError::new`] for names a state machine
/// is meant to match.
///
/// ```
/// use sfn_worker_core::TaskError;
/// let err = TaskError::new("Orders.NotFound", "no order with id 42");
/// assert_eq!(err.error(), "Orders.NotFound");
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

// TaskError deliberately does not implement std::error::Error, so that this
// blanket conversion (which makes `?` work in handlers) does not overlap the
// reflexive `From<T> for T`. The same trick as anyhow::Error.
impl<E: std::error::Error> From<E> for TaskError {
    fn from(err: E) -> Self {
        TaskError::new(std::any::type_name::<E>(), err.to_string())
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
    fn std_errors_convert_with_their_type_name() {
        let io = std::io::Error::other("disk on fire");
        let e: TaskError = io.into();
        assert_eq!(e.error(), "std::io::error::Error");
        assert_eq!(e.cause(), "disk on fire");
    }
}
