//! `sfn-worker invoke`: run a handler once, locally, with no AWS.

use std::path::Path;
use std::process::ExitCode;

use sfn_worker_core::error_names::MAX_OUTPUT_BYTES;
use sfn_worker_core::{CancelReason, Registry, TaskContext};

use crate::cli::EXIT_CONFIG;

pub(crate) fn invoke(
    registry: &Registry,
    kind: &str,
    params: Option<&str>,
    input: &Path,
) -> ExitCode {
    match prepare(registry, kind, params, input) {
        Ok((handler, input)) => match super::runtime(0) {
            Ok(rt) => {
                let code = rt.block_on(call(handler, input));
                super::finish(rt);
                code
            }
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::FAILURE
            }
        },
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn prepare(
    registry: &Registry,
    kind: &str,
    params: Option<&str>,
    input: &Path,
) -> Result<(std::sync::Arc<dyn sfn_worker_core::Handler>, String), String> {
    let params: serde_json::Value = match params {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("--params: expected a JSON object: {e}"))?,
        None => serde_json::Value::Null,
    };
    let handler = registry
        .build(kind, &params)
        .map_err(|e| format!("{kind}: params: {e}"))?;
    Ok((handler, super::read_json_input(input)?))
}

async fn call(handler: std::sync::Arc<dyn sfn_worker_core::Handler>, input: String) -> ExitCode {
    let (ctx, cancel) = TaskContext::local_cancellable("invoke");
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: cancelling the handler");
            cancel.cancel(CancelReason::Local);
        }
    });
    // Its own task, so a panic is reported like the worker would.
    match tokio::spawn(async move { handler.call(input, ctx).await }).await {
        Ok(Ok(output)) => {
            println!("{output}");
            if output.len() > MAX_OUTPUT_BYTES {
                eprintln!(
                    "warning: output is {} bytes; the worker would fail it with Worker.OutputTooLarge",
                    output.len()
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {}\ncause: {}", e.error(), e.cause());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: Worker.HandlerPanicked\ncause: {e}");
            ExitCode::FAILURE
        }
    }
}
