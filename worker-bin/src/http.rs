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
    metrics: PrometheusHandle,
    health: Health,
}

/// Serve until the process exits. The listener is bound by the caller, so a
/// port in use is reported before the worker starts.
pub(crate) async fn serve(listener: TcpListener, metrics: PrometheusHandle, health: Health) {
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

async fn render(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
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
    }
}
