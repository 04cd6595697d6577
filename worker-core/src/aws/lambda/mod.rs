//! Lambda durable-execution callbacks: the completion target of a durable
//! function's `createCallback` / `waitForCallback`.
//!
//! A callback id is completed with `SendDurableExecutionCallbackSuccess`
//! (`POST /2025-12-01/durable-execution-callbacks/{CallbackId}/succeed`,
//! the raw result as the body), `...Failure` (`/fail`, JSON `ErrorType`,
//! `ErrorMessage`) and kept alive with `...Heartbeat` (`/heartbeat`).
//! `CallbackTimeoutException` means the callback expired or was already
//! completed: the worker treats it as a closed task.

mod direct;

#[cfg(any(test, feature = "test-util"))]
pub mod fake;

pub use direct::DirectLambda;

/// The longest callback id the API accepts.
pub const MAX_CALLBACK_ID_CHARS: usize = 1024;

/// Whether `id` has the shape of a callback id: 1 to 1,024 characters of
/// the base64 alphabet, `[A-Za-z0-9+/]+={0,2}`.
pub fn is_callback_id(id: &str) -> bool {
    let body = id.trim_end_matches('=');
    let padding = id.len() - body.len();
    !body.is_empty()
        && id.len() <= MAX_CALLBACK_ID_CHARS
        && padding <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::is_callback_id;

    #[test]
    fn callback_ids_have_the_base64_shape() {
        for ok in ["a", "AbC+/09==", "x=", &"a".repeat(1024)] {
            assert!(is_callback_id(ok), "{ok}");
        }
        for bad in ["", "=", "a===", "a b", "a-b", "a=b", &"a".repeat(1025), "é"] {
            assert!(!is_callback_id(bad), "{bad}");
        }
    }
}
