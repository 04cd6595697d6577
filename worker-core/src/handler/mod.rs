//! What a handler is, what it gets, and what it returns.
//!
//! A handler is an async function `(Input, TaskContext) -> Result<Output, E>`
//! where `Input: DeserializeOwned` (use `serde_json::Value` for raw JSON),
//! `Output: Serialize` and `E: Into<TaskError>` (your own error type, mapped
//! to stable error names once). [`handler_fn`] turns such a function into a
//! [`Handler`]; [`Registry::handler`] registers one in a single line.

mod context;
mod error;
mod registry;
mod service;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{CancelReason, LocalCancel, TaskContext, TaskSource};
pub use error::{MAX_CAUSE_CHARS, MAX_ERROR_CHARS, ResultExt, TaskError};
pub use registry::{BuildError, HandlerFactory, KindInfo, ParamsError, Registry};
pub use service::{HandlerService, ServiceHandler, Task};

use crate::error_names;

/// The future a [`Handler`] returns: the output as JSON text, or the failure.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<String, TaskError>> + Send>>;

/// A type-erased task handler, as the worker sees it.
///
/// Most code never implements this directly: write an async function and use
/// [`handler_fn`] or [`Registry::handler`]. Implement it for handlers that work
/// on raw JSON text (like `exec`, which pipes the input to a child process).
pub trait Handler: Send + Sync + 'static {
    /// Run the task. `input` is the task's JSON input as text; the result is
    /// the output as JSON text. The worker calls this inside its own tokio
    /// task, so a panic here (or in deserialization) fails only this task.
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture;
}

/// Wrap an async function over typed input and output into a [`Handler`].
///
/// Input that does not deserialize into `I` fails the task with
/// `Worker.InvalidInput` (the cause names the offending path) and the function
/// is not called.
///
/// ```
/// use sfn_worker_core::{handler_fn, Handler, TaskContext, TaskError};
///
/// async fn double(n: i64, _ctx: TaskContext) -> Result<i64, TaskError> {
///     Ok(n * 2)
/// }
/// let handler = handler_fn(double);
/// # let _: &dyn Handler = &handler;
/// ```
pub fn handler_fn<F, I, O, E, Fut>(f: F) -> HandlerFn<F, I, O, E>
where
    F: Fn(I, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<TaskError> + 'static,
{
    HandlerFn {
        f,
        _types: PhantomData,
    }
}

/// A [`Handler`] made from an async function by [`handler_fn`].
pub struct HandlerFn<F, I, O, E> {
    f: F,
    // fn(I) -> (O, E): the handler owns none of them, so Send/Sync of F decide.
    _types: PhantomData<fn(I) -> (O, E)>,
}

impl<F, I, O, E, Fut> Handler for HandlerFn<F, I, O, E>
where
    F: Fn(I, TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    E: Into<TaskError> + 'static,
{
    fn call(&self, input: String, ctx: TaskContext) -> HandlerFuture {
        let typed = match parse_input::<I>(&input) {
            Ok(typed) => typed,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = (self.f)(typed, ctx);
        Box::pin(async move {
            let output = fut.await.map_err(Into::into)?;
            serialize_output(&output)
        })
    }
}

/// A handler's output as JSON text, or `Worker.InvalidOutput`.
fn serialize_output<O: Serialize>(output: &O) -> Result<String, TaskError> {
    serde_json::to_string(output).map_err(|e| {
        TaskError::new(
            error_names::INVALID_OUTPUT,
            format!("handler output does not serialize to JSON: {e}"),
        )
    })
}

/// The task input as the handler's type, or `Worker.InvalidInput` naming
/// where it did not match.
fn parse_input<I: DeserializeOwned>(input: &str) -> Result<I, TaskError> {
    parse_input_text(input).map_err(|cause| TaskError::new(error_names::INVALID_INPUT, cause))
}

/// Deserialize the task input, saying where it did not match.
fn parse_input_text<I: DeserializeOwned>(input: &str) -> Result<I, String> {
    let mut de = serde_json::Deserializer::from_str(input);
    let typed: I = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!(
                "input does not match the handler's input type: {}",
                e.inner()
            )
        } else {
            format!(
                "input does not match the handler's input type at {path}: {}",
                e.inner()
            )
        }
    })?;
    de.end()
        .map_err(|e| format!("input is not a single JSON value: {e}"))?;
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct In {
        order: Order,
    }
    #[derive(Deserialize)]
    struct Order {
        qty: u32,
    }

    async fn qty_times_two(input: In, _ctx: TaskContext) -> Result<serde_json::Value, TaskError> {
        Ok(serde_json::json!({ "qty": input.order.qty * 2 }))
    }

    #[tokio::test]
    async fn typed_input_and_output_round_trip() {
        let h = handler_fn(qty_times_two);
        let out = h
            .call(r#"{"order":{"qty":21}}"#.into(), TaskContext::local("t"))
            .await;
        assert_eq!(out.unwrap(), r#"{"qty":42}"#);
    }

    #[tokio::test]
    async fn bad_input_names_the_path_and_does_not_call_the_handler() {
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = called.clone();
        let h = handler_fn(move |_: In, _ctx| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, TaskError>(()) }
        });
        let err = h
            .call(
                r#"{"order":{"qty":"many"}}"#.into(),
                TaskContext::local("t"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error(), "Worker.InvalidInput");
        assert!(err.cause().contains("order.qty"), "{}", err.cause());
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A user's own error type, mapped to stable names once.
    #[derive(Debug)]
    enum PriceError {
        UnknownSku(String),
    }
    impl From<PriceError> for TaskError {
        fn from(e: PriceError) -> Self {
            match e {
                PriceError::UnknownSku(sku) => {
                    TaskError::new("Prices.UnknownSku", format!("no price for {sku}"))
                }
            }
        }
    }

    #[tokio::test]
    async fn a_handler_returns_its_own_error_type_under_the_name_it_maps_to() {
        async fn price(sku: String, _ctx: TaskContext) -> Result<u32, PriceError> {
            match sku.as_str() {
                "apple" => Ok(30),
                _ => Err(PriceError::UnknownSku(sku)),
            }
        }
        let h = handler_fn(price);
        let ok = h.call(r#""apple""#.into(), TaskContext::local("t")).await;
        assert_eq!(ok.unwrap(), "30");
        let err = h
            .call(r#""kiwi""#.into(), TaskContext::local("t"))
            .await
            .unwrap_err();
        assert_eq!(
            (err.error(), err.cause()),
            ("Prices.UnknownSku", "no price for kiwi")
        );
    }

    #[tokio::test]
    async fn unserializable_output_is_invalid_output() {
        use std::collections::HashMap;
        // JSON object keys must be strings; a map keyed by tuples is not JSON.
        let h = handler_fn(|_: serde_json::Value, _ctx| async {
            Ok::<_, TaskError>(HashMap::from([((1, 2), "x")]))
        });
        let err = h
            .call("{}".into(), TaskContext::local("t"))
            .await
            .unwrap_err();
        assert_eq!(err.error(), "Worker.InvalidOutput");
    }
}
