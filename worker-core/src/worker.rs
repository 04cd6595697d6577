//! The worker: start-up checks, pollers, and the shutdown sequence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::aws::ledger::LedgerApi;
use crate::aws::pacing::{Paced, Pacer};
use crate::aws::{ApiError, ApiErrorKind, CompletionTarget, SfnApi, SqsApi, StepFunctions};
use crate::completion::Reporter;
use crate::config::Completes;
use crate::config::Plan;
use crate::limits::MAX_WORKER_NAME_CHARS;
use crate::metrics::{self, Saturation};
use crate::runner::Env;
use crate::send_gate::SendGate;
use crate::shutdown::ShutdownHandle;
use crate::slots::GlobalSlots;
use crate::source::{Runtime, Source, activity, sqs};

/// After shutdown gives up on retrying reports, how long their last attempts get.
const REPORT_GRACE: Duration = Duration::from_secs(10);
/// On a forced shutdown, how long tasks get to send their last report.
const FORCED_EXIT: Duration = Duration::from_secs(20);
/// How long start-up checks retry throttling, 5xx and network errors before
/// the worker gives up: long enough to ride out a throttled or flaky minute
/// (five tries in a row failed 2.5% of the time under the chaos suite's
/// faults), short enough that a wrong endpoint is reported, not hidden.
const START_UP_CHECK_FOR: Duration = Duration::from_secs(60);

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A configured activity does not exist in Step Functions.
    #[error(
        "activity[{index}] ({binding}): {arn} does not exist in Step Functions; create it or fix the ARN (account, region, name)"
    )]
    ActivityDoesNotExist {
        /// Position in the configuration.
        index: usize,
        /// Binding name.
        binding: String,
        /// The ARN.
        arn: String,
    },
    /// A configured queue does not exist.
    #[error("queue[{index}] ({binding}): {url} does not exist; create it or fix the URL")]
    QueueDoesNotExist {
        /// Position in the configuration.
        index: usize,
        /// Binding name.
        binding: String,
        /// The URL.
        url: String,
    },
    /// AWS could not be reached to check the configuration.
    #[error("could not reach AWS to check {arn}: {source}")]
    Unreachable {
        /// The ARN or URL being checked.
        arn: String,
        /// The last error.
        source: ApiError,
    },
    /// The plan has no binding (a configuration with only `[workflows]`).
    #[error("{}", crate::config::NOTHING_TO_SERVE)]
    NothingToServe,
    /// The plan has queue bindings but the worker was given no SQS client.
    #[error("queue bindings need an SQS client (Worker::with_sqs)")]
    NoSqsClient,
    /// Bindings use the task ledger but the worker was given no ledger
    /// (`[ledger]` missing, or `Worker::with_ledger` not called in tests).
    #[error(
        "bindings with ledger = true need the task ledger ([ledger] table, or Worker::with_ledger)"
    )]
    NoLedgerClient,
    /// The ledger table is missing or not shaped for a ledger.
    #[error("ledger.table ({table}): {problem}")]
    LedgerTable {
        /// The table.
        table: String,
        /// What is wrong, and what was expected.
        problem: String,
    },
    /// The plan has `completes = "durable-callback"` bindings but the worker
    /// was given no durable-callback target.
    #[error("durable-callback bindings need a completion target (Worker::with_durable_callbacks)")]
    NoDurableClient,
}

/// Why [`Worker::connect`] could not make the worker's AWS clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Neither `[aws] region` nor the standard chain (`AWS_REGION`, the
    /// profile, IMDS) gives a region.
    #[error("no AWS region: set [aws] region or AWS_REGION")]
    NoRegion,
    /// A client could not be made (an endpoint URL that does not parse, no
    /// TLS roots); the text says which and why.
    #[error("aws: {0}")]
    Client(String),
}

/// Where the worker is in its life, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum HealthState {
    /// Checking the configuration against AWS.
    Starting = 0,
    /// Pollers run.
    Ready = 1,
    /// Shutting down: no new polls.
    Draining = 2,
    /// Done.
    Stopped = 3,
}

/// The worker's health, shared with the HTTP endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<HealthInner>);

#[derive(Debug)]
struct HealthInner {
    state: AtomicU8,
    /// Lambda answered that it does not know callbacks it never knew: the
    /// worker is likely pointed at the wrong region, account or endpoint.
    misdirected: AtomicBool,
}

impl Health {
    fn new() -> Self {
        // Published from the start: a worker stuck in its start-up checks
        // must show as not ready, not as no series at all.
        metrics::ready(false);
        Self(Arc::new(HealthInner {
            state: AtomicU8::new(HealthState::Starting as u8),
            misdirected: AtomicBool::new(false),
        }))
    }
    fn set(&self, state: HealthState) {
        self.0.state.store(state as u8, Ordering::Release);
        metrics::ready(self.is_ready());
    }
    /// The current state.
    pub fn state(&self) -> HealthState {
        match self.0.state.load(Ordering::Acquire) {
            0 => HealthState::Starting,
            1 => HealthState::Ready,
            2 => HealthState::Draining,
            _ => HealthState::Stopped,
        }
    }
    /// Whether `/readyz` should answer 200: serving, and not misdirected
    /// (Lambda refusing to know the durable callbacks it is sent).
    pub fn is_ready(&self) -> bool {
        self.state() == HealthState::Ready && !self.is_misdirected()
    }
    /// Whether the latest durable-callback report was refused with "no
    /// such callback" for a callback Lambda never knew: the worker is
    /// likely pointed at the wrong region, account or endpoint. It reads
    /// not ready (`/readyz`, `sfn_worker_ready`) until Lambda accepts a
    /// call again, so a rollout with the wrong setting stops there.
    pub fn is_misdirected(&self) -> bool {
        self.0.misdirected.load(Ordering::Relaxed)
    }
    pub(crate) fn set_misdirected(&self, misdirected: bool) {
        if self.0.misdirected.swap(misdirected, Ordering::Relaxed) != misdirected {
            metrics::ready(self.is_ready());
        }
    }
}

/// A worker serving the activities of a [`Plan`].
pub struct Worker {
    plan: Plan,
    api: Arc<dyn SfnApi>,
    sqs: Option<Arc<dyn SqsApi>>,
    durable: Option<Arc<dyn CompletionTarget>>,
    ledger: Option<Arc<dyn LedgerApi>>,
    /// The ledger given by [`Worker::with_ledger`] keeps tokio's time (the
    /// simulation's paused clock), not the wall clock.
    ledger_on_tokio_clock: bool,
    shutdown: ShutdownHandle,
    health: Health,
    worker_name: String,
}

impl Worker {
    /// A worker for `plan` with the AWS clients its `[aws]` section asks
    /// for: the standard configuration chain (credentials, region) with the
    /// section's overrides, the direct or SDK client for Step Functions and
    /// SQS (`sfn_client`, `sqs_client`), and Lambda's durable-execution
    /// callbacks when a binding completes there.
    pub async fn connect(plan: Plan) -> Result<Self, ConnectError> {
        use crate::aws::{DirectLambda, DirectSfn, DirectSqs, SdkSfn, SdkSqs, load_sdk_config};
        use crate::config::{CallbackNotFound, ClientKind};

        let aws = &plan.config.aws;
        let sdk = load_sdk_config(aws).await;
        if sdk.region().is_none() {
            return Err(ConnectError::NoRegion);
        }
        let client = |e: &dyn std::fmt::Display| ConnectError::Client(e.to_string());
        let poll_timeout = Duration::from_secs(plan.config.worker.poll_timeout_secs);
        let api: Arc<dyn SfnApi> = match aws.sfn_client {
            ClientKind::Direct => Arc::new(
                DirectSfn::new(&sdk, poll_timeout)
                    .await
                    .map_err(|e| client(&e))?,
            ),
            ClientKind::Sdk => Arc::new(SdkSfn::new(&sdk, poll_timeout)),
        };
        let sqs: Arc<dyn SqsApi> = match aws.sqs_client {
            ClientKind::Direct => Arc::new(DirectSqs::new(&sdk).await.map_err(|e| client(&e))?),
            ClientKind::Sdk => Arc::new(SdkSqs::new(&sdk)),
        };
        let durable = if plan
            .queues
            .iter()
            .any(|q| q.completes == Completes::DurableCallback)
        {
            let lambda = DirectLambda::new(&sdk, aws.lambda_endpoint_url.as_deref())
                .map_err(|e| client(&e))?
                .not_found_is_closed(aws.lambda_callback_not_found == CallbackNotFound::Closed);
            tracing::info!(
                endpoint = lambda.endpoint(),
                "durable-execution callbacks go to Lambda"
            );
            Some(lambda)
        } else {
            None
        };
        let ledger = match &plan.config.ledger {
            Some(l) => {
                let dynamo = crate::aws::ledger::DirectDynamo::new(
                    &sdk,
                    &l.table,
                    l.endpoint_url.as_deref(),
                )
                .map_err(|e| client(&e))?;
                tracing::info!(endpoint = dynamo.endpoint(), table = %l.table, "the task ledger is in DynamoDB");
                Some(Arc::new(dynamo) as Arc<dyn LedgerApi>)
            }
            None => None,
        };
        let mut worker = Self::with_clients(plan, api);
        worker.sqs = Some(sqs);
        worker.ledger = ledger;
        worker.durable = durable.map(|lambda| Arc::new(lambda) as Arc<dyn CompletionTarget>);
        Ok(worker)
    }

    /// A worker for `plan`, talking to Step Functions through `api` (an
    /// in-process fake of `aws::fake`; [`Worker::connect`] makes the real
    /// clients). Feature `test-util`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn new(plan: Plan, api: Arc<dyn SfnApi>) -> Self {
        Self::with_clients(plan, api)
    }

    fn with_clients(plan: Plan, api: Arc<dyn SfnApi>) -> Self {
        let worker_name = plan
            .config
            .worker
            .worker_name
            .clone()
            .unwrap_or_else(default_worker_name);
        Self {
            plan,
            api,
            sqs: None,
            durable: None,
            ledger: None,
            ledger_on_tokio_clock: false,
            shutdown: ShutdownHandle::default(),
            health: Health::new(),
            worker_name,
        }
    }

    /// The SQS client for `[[queue]]` bindings (a fake of `aws::fake`;
    /// [`Worker::connect`] makes the real one). Feature `test-util`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_sqs(mut self, sqs: Arc<dyn SqsApi>) -> Self {
        self.sqs = Some(sqs);
        self
    }

    /// Where `completes = "durable-callback"` bindings report: a fake of
    /// `aws::fake` ([`Worker::connect`] makes the real client). Feature
    /// `test-util`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_durable_callbacks(mut self, target: Arc<dyn CompletionTarget>) -> Self {
        self.durable = Some(target);
        self
    }

    /// The task ledger for bindings with `ledger = true` (a fake of
    /// `aws::fake`; [`Worker::connect`] makes the DynamoDB client from
    /// `[ledger]`). Feature `test-util`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_ledger(mut self, ledger: Arc<dyn LedgerApi>) -> Self {
        self.ledger = Some(ledger);
        self.ledger_on_tokio_clock = true;
        self
    }

    /// The handle that starts shutdown (wire SIGTERM/SIGINT to it).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The health the `/healthz` and `/readyz` endpoints report.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The `workerName` sent with every poll.
    pub fn worker_name(&self) -> &str {
        &self.worker_name
    }

    /// Check the activities exist, run until shut down, then drain.
    /// Returns when every poll has returned and every task has ended.
    pub async fn run(self) -> Result<(), WorkerError> {
        let result = self.run_inner().await;
        self.health.set(HealthState::Stopped);
        result
    }

    async fn run_inner(&self) -> Result<(), WorkerError> {
        if !self.plan.has_bindings() {
            return Err(WorkerError::NothingToServe);
        }
        self.preflight().await?;
        let wc = &self.plan.config.worker;
        // Every call of the process at the pace each operation's quota
        // allows (learned from throttling answers), one pacer for all.
        let pacer = Arc::new(Pacer::new());
        let api: Arc<dyn SfnApi> = Arc::new(Paced {
            pacer: pacer.clone(),
            inner: self.api.clone(),
        });
        let sqs: Option<Arc<dyn SqsApi>> = self.sqs.clone().map(|inner| {
            Arc::new(Paced {
                pacer: pacer.clone(),
                inner,
            }) as Arc<dyn SqsApi>
        });
        // One reporter per completion target: `send_task_rate_per_sec` is a
        // limit on Step Functions' `SendTask*` calls; durable callbacks are
        // Lambda's, with their own quota.
        let step_functions = Arc::new(Reporter::new(
            Arc::new(StepFunctions(api.clone())),
            SendGate::new(wc.send_task_rate_per_sec),
            self.shutdown.giving_up().clone(),
        ));
        let durable = self.durable.clone().map(|inner| {
            Arc::new(
                Reporter::new(
                    Arc::new(Paced {
                        pacer: pacer.clone(),
                        inner,
                    }),
                    SendGate::new(None),
                    self.shutdown.giving_up().clone(),
                )
                .with_health(self.health.clone()),
            )
        });
        let slots: usize = (self.plan.activities.iter().map(|a| &a.binding))
            .chain(self.plan.queues.iter().map(|q| &q.binding))
            .map(|b| b.concurrency)
            .sum();
        let env = Arc::new(Env {
            shutdown: self.shutdown.clone(),
            cancel_grace: Duration::from_secs(wc.cancel_grace_secs),
            saturation: Saturation::worker(slots.min(wc.max_concurrency.get())),
            ledger: self.ledger.clone().map(|api| {
                let config = self
                    .plan
                    .config
                    .ledger
                    .clone()
                    .unwrap_or_else(|| crate::config::LedgerConfig::new("(in code)"));
                let ledger = crate::ledger::Ledger::new(api, &config, &self.worker_name);
                let ledger = if self.ledger_on_tokio_clock {
                    ledger.on_tokio_clock()
                } else {
                    ledger
                };
                Arc::new(ledger)
            }),
        });
        let pollers = TaskTracker::new();
        let tasks = TaskTracker::new();

        let rt = Runtime {
            env,
            global: GlobalSlots::new(wc.max_concurrency.get()),
            tasks: tasks.clone(),
            worker_name: self.worker_name.as_str().into(),
        };
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        for a in &self.plan.activities {
            sources.push(activity::source(
                a,
                api.clone(),
                &rt,
                step_functions.clone(),
            ));
        }
        if let Some(sqs) = &sqs {
            for q in &self.plan.queues {
                let give_up = self.shutdown.giving_up().clone();
                let reporter = match q.completes {
                    Completes::StepFunctions => step_functions.clone(),
                    // Checked at start-up (preflight).
                    Completes::DurableCallback => match &durable {
                        Some(r) => r.clone(),
                        None => return Err(WorkerError::NoDurableClient),
                    },
                };
                sources.push(sqs::source(q, sqs.clone(), &rt, reporter, give_up));
            }
        }
        for source in sources {
            source.start(&pollers);
        }
        pollers.close();
        self.health.set(HealthState::Ready);
        tracing::info!(worker_name = %self.worker_name, activities = self.plan.activities.len(),
            queues = self.plan.queues.len(), "worker ready");

        self.shutdown.draining().cancelled().await;
        self.health.set(HealthState::Draining);
        tracing::info!(
            polls_in_flight = pollers.len(),
            tasks_running = tasks.len(),
            grace_secs = wc.shutdown_grace_secs,
            "shutting down: no new polls; waiting for polls in flight and running tasks"
        );

        let finished = async {
            // Pollers first: a poll in flight may still hand over a task,
            // which is spawned before its poller returns.
            pollers.wait().await;
            tasks.close();
            tasks.wait().await;
        };
        let grace = Duration::from_secs(wc.shutdown_grace_secs);
        let cancel_grace = Duration::from_secs(wc.cancel_grace_secs);
        let timeline = async {
            tokio::time::sleep(grace).await;
            self.shutdown.cancelling().cancel();
            tokio::time::sleep(cancel_grace).await;
            self.shutdown.abandoning().cancel();
            tokio::time::sleep(REPORT_GRACE).await;
            self.shutdown.giving_up().cancel();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            biased;
            _ = self.shutdown.forced().cancelled() => {
                tracing::warn!("second signal: failing running tasks with Worker.ShuttingDown and exiting without waiting for polls");
                tasks.close();
                if tokio::time::timeout(FORCED_EXIT, tasks.wait()).await.is_err() {
                    tracing::error!(tasks = tasks.len(), "tasks still reporting at forced exit");
                }
            }
            _ = finished => {}
            _ = timeline => {}
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Every configured activity and queue must exist. Access denied (a
    /// policy without `states:DescribeActivity` or `sqs:GetQueueAttributes`)
    /// is only a warning: polling will tell.
    async fn preflight(&self) -> Result<(), WorkerError> {
        self.check_ledger().await?;
        for (index, a) in self.plan.activities.iter().enumerate() {
            let found = self
                .checked(a.arn.as_str(), || {
                    self.api.describe_activity(a.arn.as_str())
                })
                .await?;
            if !found {
                return Err(WorkerError::ActivityDoesNotExist {
                    index,
                    binding: a.binding.name.to_string(),
                    arn: a.arn.to_string(),
                });
            }
        }
        if self.plan.queues.is_empty() {
            return Ok(());
        }
        let sqs = self.sqs.as_ref().ok_or(WorkerError::NoSqsClient)?;
        if self.durable.is_none()
            && self
                .plan
                .queues
                .iter()
                .any(|q| q.completes == Completes::DurableCallback)
        {
            return Err(WorkerError::NoDurableClient);
        }
        for (index, q) in self.plan.queues.iter().enumerate() {
            let found = self
                .checked(q.url.as_str(), || sqs.check_queue(q.url.as_str()))
                .await?;
            if !found {
                return Err(WorkerError::QueueDoesNotExist {
                    index,
                    binding: q.binding.name.to_string(),
                    url: q.url.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Bindings that use the ledger need one, and its table the ledger's
    /// shape (key `pk` alone, TTL on `expires_at`).
    async fn check_ledger(&self) -> Result<(), WorkerError> {
        let uses = (self.plan.activities.iter().map(|a| &a.binding))
            .chain(self.plan.queues.iter().map(|q| &q.binding))
            .any(|b| b.ledger.is_some());
        if !uses {
            return Ok(());
        }
        let api = self.ledger.as_ref().ok_or(WorkerError::NoLedgerClient)?;
        let table = self
            .plan
            .config
            .ledger
            .as_ref()
            .map_or_else(|| "(in code)".to_owned(), |l| l.table.clone());
        // What the table is like; `None` once the check found no table.
        let shape = std::sync::OnceLock::new();
        self.checked(&table, || async {
            match api.describe().await {
                Ok(found) => {
                    let _ = shape.set(Some(found));
                }
                Err(e) if e.code == "ResourceNotFoundException" => {
                    let _ = shape.set(None);
                }
                // No dynamodb:DescribeTable (or DescribeTimeToLive) in the
                // policy: not needed to run, so not needed to start.
                Err(e) if e.kind == ApiErrorKind::AccessDenied => {
                    tracing::warn!(table = %table, code = %e.code, error = %e.message,
                        "could not check the ledger table's shape; claims will tell");
                }
                Err(e) => return Err(e),
            }
            Ok(())
        })
        .await?;
        let problem = match shape.into_inner() {
            Some(Some(shape)) => shape.problem(),
            Some(None) => Some(
                "the table does not exist; create it (README: exactly once across workers)"
                    .to_owned(),
            ),
            None => None,
        };
        match problem {
            Some(problem) => Err(WorkerError::LedgerTable { table, problem }),
            None => Ok(()),
        }
    }

    /// Run one existence check, retrying what may pass later for up to
    /// [`START_UP_CHECK_FOR`]: `Ok(false)` if it does not exist.
    async fn checked<F, Fut>(&self, what: &str, check: F) -> Result<bool, WorkerError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), ApiError>>,
    {
        let give_up_at = tokio::time::Instant::now() + START_UP_CHECK_FOR;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            match check().await {
                Ok(()) => return Ok(true),
                Err(e)
                    if matches!(
                        e.kind,
                        ApiErrorKind::ActivityDoesNotExist | ApiErrorKind::QueueDoesNotExist
                    ) =>
                {
                    return Ok(false);
                }
                Err(e)
                    if e.is_retryable()
                        && tokio::time::Instant::now() < give_up_at
                        && !self.shutdown.is_draining() =>
                {
                    tracing::warn!(%what, code = %e.code, error = %e.message, "start-up check failed; retrying");
                    tokio::time::sleep(Duration::from_secs(attempt.min(5))).await;
                }
                Err(e) if e.kind == ApiErrorKind::Rejected => {
                    tracing::warn!(%what, code = %e.code, error = %e.message,
                        "could not check that it exists; polling will tell");
                    return Ok(true);
                }
                Err(source) => {
                    return Err(WorkerError::Unreachable {
                        arn: what.to_owned(),
                        source,
                    });
                }
            }
        }
    }
}

fn default_worker_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut name = format!("{host}-{}", std::process::id());
    if name.chars().count() > MAX_WORKER_NAME_CHARS {
        // Keep the end: the pid tells workers on one host apart.
        name = name
            .chars()
            .rev()
            .take(MAX_WORKER_NAME_CHARS)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
    }
    name
}
