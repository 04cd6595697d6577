//! `echo`: return the task input, optionally merged with `params.add`.
//! For smoke tests and pipelines.

use std::sync::Arc;

use serde::Deserialize;
use sfn_worker_core::{Handler, HandlerFactory, TaskError, handler_fn};

/// The `echo` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// `[activity.params]` of `echo`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoParams {
    /// Fields merged into an object input (they win over the input's).
    #[serde(default)]
    pub add: serde_json::Map<String, serde_json::Value>,
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
        "add: table (default {}) - fields merged into the output object"
    }
    fn build(&self, params: EchoParams) -> Result<Arc<dyn Handler>, String> {
        let add = Arc::new(params.add);
        Ok(Arc::new(handler_fn(
            move |mut input: serde_json::Value, _ctx| {
                let add = add.clone();
                async move {
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
    use sfn_worker_core::TaskContext;

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
}
