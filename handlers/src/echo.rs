//! `echo`: return the task input, optionally merged with `params.add`.
//! For smoke tests and pipelines.

use std::sync::Arc;

use serde::Deserialize;
use sfn_worker_core::{BuildError, Handler, HandlerFactory, TaskContext, TaskError, handler_fn};

/// The `echo` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// `[activity.params]` of `echo`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoParams {
    /// Fields merged into an object input (they win over the input's).
    #[serde(default)]
    pub add: serde_json::Map<String, serde_json::Value>,
    /// Wait this long before answering (load tests: tasks that stay in
    /// flight). Cancellation ends the wait with `Echo.Cancelled`.
    #[serde(default)]
    pub delay_ms: u64,
}

impl HandlerFactory for Echo {
    type Params = EchoParams;

    fn kind(&self) -> &str {
        "echo"
    }
    fn description(&self) -> &str {
        "Returns the task input, with params.add merged into an object input."
    }
    fn params_help(&self) -> &str {
        "add: table (default {}) - fields merged into the output object\n\
         delay_ms: integer (default 0) - wait this long first (load tests)"
    }
    fn build(&self, params: EchoParams) -> Result<Arc<dyn Handler>, BuildError> {
        let add = Arc::new(params.add);
        let delay = std::time::Duration::from_millis(params.delay_ms);
        Ok(Arc::new(handler_fn(
            move |mut input: serde_json::Value, ctx: TaskContext| {
                let add = add.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = ctx.cancelled() => {
                                return Err(TaskError::new("Echo.Cancelled", "cancelled while waiting"));
                            }
                        }
                    }
                    if let Some(object) = input.as_object_mut() {
                        object.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    Ok::<_, TaskError>(input)
                }
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes_and_merges() {
        let h = Echo
            .build(serde_json::from_value(serde_json::json!({"add": {"seen": true}})).unwrap())
            .unwrap();
        let out = h
            .call(r#"{"a":1}"#.into(), TaskContext::local("t"))
            .await
            .unwrap();
        assert_eq!(out, r#"{"a":1,"seen":true}"#);
        let out = h
            .call("[1,2]".into(), TaskContext::local("t"))
            .await
            .unwrap();
        assert_eq!(out, "[1,2]");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_when_asked_and_stops_when_cancelled() {
        let params = serde_json::json!({"delay_ms": 5000});
        let h = Echo.build(serde_json::from_value(params).unwrap()).unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(
            h.call("1".into(), TaskContext::local("t")).await.unwrap(),
            "1"
        );
        assert_eq!(start.elapsed().as_millis(), 5000);
        let (ctx, cancel) = TaskContext::local_cancellable("t");
        cancel.cancel(sfn_worker_core::CancelReason::Shutdown);
        let err = h.call("1".into(), ctx).await.unwrap_err();
        assert_eq!(err.error(), "Echo.Cancelled");
    }
}
