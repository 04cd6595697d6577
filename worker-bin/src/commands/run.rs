//! `sfn-worker run`: serve until SIGTERM/SIGINT, then drain.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sfn_worker_core::aws::{
    DirectLambda, DirectSfn, DirectSqs, SdkSfn, SdkSqs, SfnApi, SqsApi, load_sdk_config,
};
use sfn_worker_core::config::{CallbackNotFound, ClientKind, Completes, NOTHING_TO_SERVE};
use sfn_worker_core::{Registry, ShutdownHandle, Worker};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::EXIT_CONFIG;
use crate::config_file::{ConfigSource, load_plan};
use crate::{http, telemetry};

pub(crate) fn run(source: &ConfigSource, registry: Registry) -> ExitCode {
    let plan = match load_plan(source, &registry) {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !plan.has_bindings() {
        // A file with only [workflows] is valid for the workflow commands.
        let name = source.name();
        eprintln!(
            "error: {name}: invalid configuration\n  {name}: activity: {NOTHING_TO_SERVE} \
             (a file with only [workflows] is for the workflow commands)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match super::runtime(plan.config.worker.threads) {
        Ok(rt) => rt,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(&source.name(), plan));
    // A handler abandoned inside spawn_blocking must not keep the process up.
    super::finish(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &str, plan: sfn_worker_core::Plan) -> Result<(), String> {
    let metrics = telemetry::install_metrics()?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        // Histograms are drained into their buckets on upkeep.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });

    let sdk = load_sdk_config(&plan.config.aws).await;
    if sdk.region().is_none() {
        return Err(format!(
            "no AWS region: set [aws] region in {} or AWS_REGION",
            config
        ));
    }
    let addr = plan.config.worker.metrics_addr;
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "{}: worker.metrics_addr: cannot listen on {addr}: {e}",
            config
        )
    })?;

    let poll_timeout = Duration::from_secs(plan.config.worker.poll_timeout_secs);
    let api: Arc<dyn SfnApi> = match plan.config.aws.sfn_client {
        ClientKind::Direct => Arc::new(
            DirectSfn::new(&sdk, poll_timeout)
                .await
                .map_err(|e| format!("{config}: aws: {e}"))?,
        ),
        ClientKind::Sdk => Arc::new(SdkSfn::new(&sdk, poll_timeout)),
    };
    let lambda_endpoint = plan.config.aws.lambda_endpoint_url.clone();
    let not_found_is_closed = plan.config.aws.lambda_callback_not_found == CallbackNotFound::Closed;
    let durable = plan
        .queues
        .iter()
        .any(|q| q.completes == Completes::DurableCallback);
    let sqs: Arc<dyn SqsApi> = match plan.config.aws.sqs_client {
        ClientKind::Direct => Arc::new(
            DirectSqs::new(&sdk)
                .await
                .map_err(|e| format!("{config}: aws: {e}"))?,
        ),
        ClientKind::Sdk => Arc::new(SdkSqs::new(&sdk)),
    };
    let mut worker = Worker::new(plan, api).with_sqs(sqs);
    if durable {
        let lambda = DirectLambda::new(&sdk, lambda_endpoint.as_deref())
            .map_err(|e| format!("{config}: aws: {e}"))?
            .not_found_is_closed(not_found_is_closed);
        tracing::info!(
            endpoint = lambda.endpoint(),
            "durable-execution callbacks go to Lambda"
        );
        worker = worker.with_durable_callbacks(Arc::new(lambda));
    }
    tokio::spawn(http::serve(listener, metrics, worker.health()));
    tokio::spawn(forward_signals(worker.shutdown_handle()));
    tracing::info!(%config, %addr, worker_name = worker.worker_name(), "sfn-worker starting");
    worker.run().await.map_err(|e| e.to_string())
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one forces it.
async fn forward_signals(shutdown: ShutdownHandle) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; shutdown needs SIGKILL");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if shutdown.is_draining() {
            tracing::warn!(signal = name, "second signal: shutting down now");
        } else {
            tracing::info!(signal = name, "shutdown requested");
        }
        shutdown.shutdown();
    }
}
