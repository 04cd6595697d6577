//! `/metrics`, `/healthz`, `/readyz` on `worker.metrics_addr`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sfn_worker_core::{Health, HealthState};
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    metrics: Option<PrometheusHandle>,
    health: Health,
}

/// The three endpoints; `/metrics` is 404 without a Prometheus recorder.
pub(crate) fn router(metrics: Option<PrometheusHandle>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

/// Serve until aborted. The listener is bound by the caller, so a port in
/// use is reported before the worker starts.
pub(crate) async fn serve(listener: TcpListener, app: Router) {
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn render(State(s): State<AppState>) -> axum::response::Response {
    match &s.metrics {
        Some(metrics) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no Prometheus recorder in this process: the worker's metrics go to the application's recorder\n",
        )
            .into_response(),
    }
}

/// 200 while the process serves at all: a liveness probe must not fail
/// during a drain, or the orchestrator kills the tasks being drained.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.state() {
        HealthState::Ready if s.health.is_misdirected() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "misdirected: Lambda does not know the durable callbacks this worker is sent (wrong region, account or endpoint?)\n",
        ),
        HealthState::Ready => (StatusCode::OK, "ready\n"),
        HealthState::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        HealthState::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        HealthState::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
    }
}
