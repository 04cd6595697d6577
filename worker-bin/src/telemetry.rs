//! Logs and trace export as the `sfn-worker` binary sets them up, for an
//! application that wants the same (an embedded worker logs through
//! whatever `tracing` subscriber the application installs).

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sfn_worker_core::metrics::{
    LEDGER_CALL_BUCKETS, LEDGER_CALL_DURATION, TASK_DURATION, TASK_DURATION_BUCKETS, describe,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event, with the current span's fields.
    Json,
}

/// Held for the life of the process: exported spans are flushed when it drops.
#[must_use]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("OpenTelemetry: could not flush the last spans: {e}");
        }
    }
}

/// Logs go to stderr; `RUST_LOG` picks levels (default `info`). With the
/// `otlp` feature and an OTLP endpoint in the environment, each task's span
/// is exported too, whatever the log level. Does nothing if a global
/// subscriber is installed already.
pub fn init_logging(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let (export, telemetry) = span_export();
    let mut layers: Vec<BoxedLayer> = vec![fmt.with_filter(filter).boxed()];
    layers.extend(export);
    let _ = tracing_subscriber::registry().with(layers).try_init();
    telemetry
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

#[cfg(not(feature = "otlp"))]
fn span_export() -> (Option<BoxedLayer>, Telemetry) {
    (None, Telemetry {})
}

/// One span per task over OTLP/HTTP, configured by the standard variables:
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
/// `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or
/// `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (default
/// `sfn-worker`). Only the `task` spans go out: they are the unit a trace
/// view needs, and the parent they join is the sender's.
#[cfg(feature = "otlp")]
fn span_export() -> (Option<BoxedLayer>, Telemetry) {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};

    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !configured {
        return (None, Telemetry { provider: None });
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OpenTelemetry: no span export ({e})");
            return (None, Telemetry { provider: None });
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("sfn-worker");
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("sfn-worker"))
        // The worker's own `task` span (an info span), not a handler's span
        // that happens to share the name; the level hint keeps the global
        // hint at info, so disabled debug events stay free.
        .with_filter(
            tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.name() == "task" && m.target().starts_with("sfn_worker_core::")
            })
            .with_max_level_hint(tracing::Level::INFO),
        )
        .boxed();
    (
        Some(layer),
        Telemetry {
            provider: Some(provider),
        },
    )
}

/// Install the Prometheus recorder with the worker's histogram buckets.
pub(crate) fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(TASK_DURATION.to_owned()),
            TASK_DURATION_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .set_buckets_for_metric(
            Matcher::Full(LEDGER_CALL_DURATION.to_owned()),
            LEDGER_CALL_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    describe();
    Ok(handle)
}
