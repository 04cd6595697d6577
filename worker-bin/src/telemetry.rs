//! Logs and the metrics recorder: installed by the binary only.

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sfn_worker_core::metrics::{TASK_DURATION, TASK_DURATION_BUCKETS, describe};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; `RUST_LOG` picks levels (default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Install the Prometheus recorder with the worker's histogram buckets.
pub(crate) fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(TASK_DURATION.to_owned()),
            TASK_DURATION_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    describe();
    Ok(handle)
}
