//! One seed's world: the bindings, the workload, the faults and the
//! signals, every choice drawn from the seed.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What kind of task source a binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Activity,
    Queue { fifo: bool },
    Durable,
}

#[derive(Debug, Clone)]
pub struct BindingSpec {
    pub source: Source,
    pub concurrency: usize,
    /// Pollers (activities) or receivers (queues).
    pub pollers: usize,
    pub heartbeat_secs: Option<u64>,
    pub visibility_secs: u64,
    /// `input_pointer = "/input"`; without it the input is the whole body,
    /// token included.
    pub input_pointer: bool,
    pub on_shutdown_fail: bool,
    /// The state's `HeartbeatSeconds` (or the callback's heartbeat timeout).
    pub state_heartbeat: Option<Duration>,
    /// The state's `TimeoutSeconds`.
    pub state_timeout: Option<Duration>,
    /// Attempts of a task (`Retry`'s `MaxAttempts` + 1).
    pub max_attempts: u32,
    /// `ledger = true`: the binding claims its tasks in the fleet's task
    /// ledger (one table shared by every worker of the seed), so a copy of
    /// a message never runs twice.
    pub ledger: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Fails; `quote` puts the handler's whole input in the cause.
    Failure {
        quote: bool,
    },
    /// Panics with its input in the message.
    Panic,
}

#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub binding: usize,
    pub arrival: Duration,
    pub duration: Duration,
    pub outcome: Outcome,
    /// Returns promptly when cancelled (otherwise runs on, and is abandoned).
    pub respects_cancel: bool,
    /// Calls `ctx.heartbeat()` as it goes.
    pub asks_heartbeats: bool,
    /// FIFO message group.
    pub group: u32,
    /// Carries a token longer than Step Functions accepts: no report for it
    /// can ever be made, so its handler must never run.
    pub bogus_token: bool,
}

/// Per-call fault rates (each in 0..1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// No faults on heartbeats and visibility changes: then a timed-out or
    /// lapsed task that a living worker held is a defect whatever else
    /// happened (see `check.rs`).
    pub calm_keepalive: bool,
    pub server_error: f64,
    pub throttle: f64,
    pub expired_credentials: f64,
    /// Carried out, but the answer is lost (the client sees a reset).
    pub lost_answer: f64,
    /// Carried out, answered late (up to 3 s).
    pub late: f64,
    /// No answer at all: the client times out after its 15 s.
    pub hung: f64,
    /// A `SendTask*` (or Lambda callback) request stalls before it reaches
    /// the service (a connection being set up), for under a second.
    pub slow_send: f64,
    /// One entry of a batch call fails (transiently).
    pub entry: f64,
    /// A standard queue hands out a copy of a message in flight.
    pub duplicate: f64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub bindings: Vec<BindingSpec>,
    pub tasks: Vec<TaskSpec>,
    pub faults: Faults,
    /// Workers that start at once (a replacement starts when none is alive).
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub cancel_grace_secs: u64,
    /// SIGTERM to worker 0 at this time.
    pub sigterm_at: Option<Duration>,
    /// ... and a second one this long after it.
    pub second_signal_after: Option<Duration>,
    /// SIGKILL of the last worker started at this time.
    pub kill_at: Option<Duration>,
    /// LocalStack's `Retry`: a retried attempt gets the failed attempt's
    /// token again (AWS gives a new one).
    pub same_token_on_retry: bool,
    /// Lambda answers `ResourceNotFoundException` to every durable call
    /// until this time (a worker pointed at the wrong region, fixed later).
    pub lambda_misdirected_until: Option<Duration>,
    /// The executions' KMS key refuses the worker until this time.
    pub kms_refuses_until: Option<Duration>,
    /// `[ledger] lease_secs`, when a binding uses the ledger.
    pub ledger_lease_secs: u64,
}

/// Picks with a probability.
fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.random_bool(p.clamp(0.0, 1.0))
}

impl Scenario {
    pub fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5f3759df_u64.rotate_left(17));
        let n_bindings = rng.random_range(1..=3);
        let mut bindings = Vec::new();
        for _ in 0..n_bindings {
            let source = match rng.random_range(0..8) {
                0 | 1 => Source::Activity,
                2..=4 => Source::Queue { fifo: false },
                5 | 6 => Source::Queue { fifo: true },
                _ => Source::Durable,
            };
            let concurrency = rng.random_range(1..=6);
            let heartbeat_secs = if source == Source::Activity || chance(&mut rng, 0.8) {
                Some(*[2u64, 3, 5, 8].get(rng.random_range(0..4)).unwrap_or(&3))
            } else {
                None
            };
            let visibility_secs = *[10u64, 12, 15, 20, 30, 45]
                .get(rng.random_range(0..6))
                .unwrap_or(&20);
            let state_heartbeat = heartbeat_secs.map(|hb| {
                let dark = if source == Source::Activity {
                    0
                } else {
                    visibility_secs
                };
                Duration::from_secs((3 * hb + 3).max(dark + hb + 3))
            });
            bindings.push(BindingSpec {
                source,
                concurrency,
                pollers: rng.random_range(1..=concurrency.min(2)),
                heartbeat_secs,
                visibility_secs,
                input_pointer: chance(&mut rng, 0.5),
                on_shutdown_fail: chance(&mut rng, 0.25),
                state_heartbeat,
                state_timeout: chance(&mut rng, 0.2)
                    .then(|| Duration::from_secs(rng.random_range(20..120))),
                max_attempts: rng.random_range(1..=3),
                ledger: false,
            });
        }
        let n_tasks = rng.random_range(3..=16);
        let mut tasks = Vec::new();
        for _ in 0..n_tasks {
            let binding = rng.random_range(0..bindings.len());
            let b = &bindings[binding];
            let fifo = b.source == (Source::Queue { fifo: true });
            let longest = (b.visibility_secs * 2).max(10) * 1000;
            let duration = Duration::from_millis(match rng.random_range(0..4) {
                0 => rng.random_range(0..500),
                1 | 2 => rng.random_range(500..5_000),
                _ => rng.random_range(5_000..longest),
            });
            let outcome = match rng.random_range(0..20) {
                0..=13 => Outcome::Success,
                14..=15 => Outcome::Failure { quote: false },
                16..=18 => Outcome::Failure { quote: true },
                _ => Outcome::Panic,
            };
            tasks.push(TaskSpec {
                binding,
                arrival: Duration::from_millis(rng.random_range(0..30_000)),
                duration,
                outcome,
                respects_cancel: chance(&mut rng, 0.85),
                asks_heartbeats: chance(&mut rng, 0.2),
                group: if fifo { rng.random_range(0..2) } else { 0 },
                bogus_token: matches!(b.source, Source::Queue { .. }) && chance(&mut rng, 0.05),
            });
        }
        let faults = match rng.random_range(0..4) {
            0 => Faults {
                calm_keepalive: true,
                ..Faults::default()
            },
            level => {
                let x = f64::from(level) / 3.0;
                let calm_keepalive = chance(&mut rng, 0.3);
                Faults {
                    calm_keepalive,
                    server_error: 0.08 * x,
                    throttle: 0.15 * x,
                    expired_credentials: 0.02 * x,
                    lost_answer: 0.03 * x,
                    late: 0.05 * x,
                    hung: 0.02 * x,
                    slow_send: 0.1 * x,
                    entry: 0.05 * x,
                    duplicate: 0.05 * x,
                }
            }
        };
        let workers = rng.random_range(1..=2);
        let sigterm_at =
            chance(&mut rng, 0.4).then(|| Duration::from_millis(rng.random_range(0..60_000)));
        let second_signal_after = (sigterm_at.is_some() && chance(&mut rng, 0.15))
            .then(|| Duration::from_millis(rng.random_range(0..20_000)));
        let kill_at =
            chance(&mut rng, 0.25).then(|| Duration::from_millis(rng.random_range(0..60_000)));
        let has_durable = bindings.iter().any(|b| b.source == Source::Durable);
        // Drawn in the order they always were: a seed's world stays the same.
        let shutdown_grace_secs = *[2u64, 5, 15].get(rng.random_range(0..3)).unwrap_or(&5);
        let cancel_grace_secs = rng.random_range(1..=3);
        let same_token_on_retry = chance(&mut rng, 0.3);
        let lambda_misdirected_until = (has_durable && chance(&mut rng, 0.3))
            .then(|| Duration::from_millis(rng.random_range(5_000..90_000)));
        let kms_refuses_until =
            chance(&mut rng, 0.1).then(|| Duration::from_millis(rng.random_range(5_000..60_000)));
        // The ledger from a generator of its own, so that every other choice
        // of a seed stays what it was before the ledger was simulated. Not
        // with LocalStack's same-token Retry: the ledger answers such a retry
        // with the stored outcome (the README says so), which AWS never asks.
        let mut ledger_rng = StdRng::seed_from_u64(seed ^ 0x1ed6e2_u64.rotate_left(29));
        if !same_token_on_retry {
            for b in &mut bindings {
                b.ledger = chance(&mut ledger_rng, 0.3);
            }
        }
        let ledger_lease_secs = *[10u64, 15, 30, 60]
            .get(ledger_rng.random_range(0..4))
            .unwrap_or(&30);
        Scenario {
            seed,
            bindings,
            tasks,
            faults,
            workers,
            shutdown_grace_secs,
            cancel_grace_secs,
            sigterm_at,
            second_signal_after,
            kill_at,
            same_token_on_retry,
            lambda_misdirected_until,
            kms_refuses_until,
            ledger_lease_secs,
        }
    }
}
