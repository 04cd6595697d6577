//! `embedded-worker`: an axum application that runs the sfn-worker in its
//! own tokio runtime, next to its own routes.
//!
//!     SFN_WORKER_CONFIG=worker.toml cargo run -p embedded-worker
//!
//! Environment: `SFN_WORKER_CONFIG` (or `SFN_WORKER_CONFIG_TOML`) and the
//! `SFN_WORKER_*` overrides, as the sfn-worker binary reads them;
//! `PRICES` (default `prices.json`); `LISTEN_ADDR` (default `127.0.0.1:8080`;
//! port 0 picks one, and the log line says which), where `/stats`,
//! `/metrics`, `/healthz` and `/readyz` are served.
//!
//! SIGTERM or SIGINT drains the worker (readiness turns 503, running tasks
//! finish) and then stops the HTTP server; a second signal skips the waiting.

use std::path::PathBuf;
use std::process::ExitCode;

use embedded_worker::{AppState, TaskStatsLayer, price_order, routes};
use sfn_worker::telemetry::{LogFormat, init_logging};
use sfn_worker::{ConfigSource, Daemon};
use tokio::sync::watch;
use tower::limit::GlobalConcurrencyLimitLayer;

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = init_logging(LogFormat::Text);
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let prices = PathBuf::from(std::env::var("PRICES").unwrap_or_else(|_| "prices.json".into()));
    let state = AppState::load(&prices).await?;

    let daemon = Daemon::builder()
        .config_source(ConfigSource::from_env()?)
        // The application's server serves the worker's endpoints.
        .serve_endpoints(false)
        .register(|registry| {
            registry
                .handler_with_state("price-order", state.clone(), price_order)
                // tower's own layer: at most 8 tasks in the handlers at once.
                .layer(GlobalConcurrencyLimitLayer::new(8))
                // The application's layer, inside it: counts every task.
                .layer(TaskStatsLayer(state.stats.clone()));
        })
        .build()
        .await?;

    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    eprintln!("embedded-worker: serving /stats, /metrics, /healthz, /readyz on {addr}");

    // One shutdown: SIGTERM or SIGINT drains the worker (`Daemon::run`
    // handles them; a second one skips the waiting), and once it is done the
    // server stops. The server answers /readyz (503) while the worker drains.
    let (stop_server, server_stopped) = watch::channel(false);
    let app = routes(state, daemon.router());
    let mut stopped = server_stopped.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
    });
    let worked = daemon.run().await;
    let _ = stop_server.send(true);
    // The server finishes the requests it has; a hung one does not hold
    // the process (SIGTERM is the worker's now, and it is done).
    match tokio::time::timeout(std::time::Duration::from_secs(10), server).await {
        Ok(served) => served??,
        Err(_) => eprintln!("embedded-worker: the server did not stop within 10 s; exiting"),
    }
    Ok(worked?)
}
