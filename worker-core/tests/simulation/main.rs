//! A deterministic simulation of the worker (issue 21): the real `Worker`,
//! all three sources (FIFO included), against in-process services that keep
//! the real services' rules, under tokio's paused clock, with everything
//! random drawn from one seed: arrivals, FIFO groups, handler durations and
//! outcomes, copies of messages, answers lost, late, hung, throttled, 5xx,
//! expired credentials, KMS refusals, a wrong Lambda region, SIGTERM and
//! SIGKILL at any moment. After each seed the invariants of `check.rs` are
//! checked over the whole history.
//!
//! ```text
//! cargo test -p sfn-worker-core --test simulation              # SIM_SEEDS seeds (default 6000) from SIM_FIRST (0)
//! SIM_SEED=1234 cargo test -p sfn-worker-core --test simulation -- --nocapture   # replay one, with its scenario and history
//! SIM_SEEDS=1000000 cargo test --release -p sfn-worker-core --test simulation    # the long mode
//! python3 scripts/sim-controls.py      # each fixed defect put back (defects/*.patch) must be found
//! ```
//!
//! `SIM_LOGS=1` (with `SIM_SEED`) prints the workers' log lines too, each
//! with its simulated time; `SIM_STOP_AT_FIRST=1` stops at the first failing
//! seed.
#![allow(clippy::unwrap_used)]

mod check;
mod clients;
mod handler;
mod logs;
mod scenario;
mod world;

use std::sync::Arc;
use std::time::Duration;

use sfn_worker_core::{Config, Plan, ShutdownHandle, Worker};
use tokio::task::JoinHandle;

use scenario::{Scenario, Source};
use world::{Event, WorkerId, World};

/// The longest a seed runs (virtual time) before the workers are stopped.
const LIMIT: Duration = Duration::from_secs(30 * 60);
/// Seeds per run unless `SIM_SEEDS` says otherwise: what CI runs (about two
/// minutes on a debug build), and the budget within which every defect in
/// `defects/` not marked `Search: long` must be found (`scripts/sim-controls.py`).
const DEFAULT_SEEDS: u64 = 6000;
/// At most this many workers per seed (replacements included).
const MAX_WORKERS: usize = 4;

fn config(sc: &Scenario, worker: WorkerId) -> Config {
    let mut activities = Vec::new();
    let mut queues = Vec::new();
    for (i, b) in sc.bindings.iter().enumerate() {
        let name = format!("b{i}");
        match b.source {
            Source::Activity => activities.push(serde_json::json!({
                "name": name,
                "arn": format!("arn:aws:states:us-east-1:000000000000:activity:{name}"),
                "handler": "h",
                "pollers": b.pollers,
                "concurrency": b.concurrency,
                "heartbeat_secs": b.heartbeat_secs.unwrap_or(0),
                "ledger": b.ledger,
            })),
            Source::Queue { .. } | Source::Durable => {
                let fifo = if b.source == (Source::Queue { fifo: true }) {
                    ".fifo"
                } else {
                    ""
                };
                let mut q = serde_json::json!({
                    "name": name,
                    "url": format!("https://sqs.us-east-1.amazonaws.com/000000000000/{name}{fifo}"),
                    "handler": "h",
                    "concurrency": b.concurrency,
                    "receivers": b.pollers,
                    "visibility_timeout_secs": b.visibility_secs,
                    "on_shutdown": if b.on_shutdown_fail { "fail" } else { "release" },
                    "ledger": b.ledger,
                });
                if let Some(hb) = b.heartbeat_secs {
                    q["heartbeat_secs"] = hb.into();
                }
                if b.input_pointer {
                    q["input_pointer"] = "/input".into();
                }
                if b.source == Source::Durable {
                    q["completes"] = "durable-callback".into();
                }
                queues.push(q);
            }
        }
    }
    let mut config = serde_json::json!({
        "worker": {
            "shutdown_grace_secs": sc.shutdown_grace_secs,
            "cancel_grace_secs": sc.cancel_grace_secs,
            "worker_name": format!("sim-{worker}"),
        },
        "activity": activities,
        "queue": queues,
    });
    if sc.bindings.iter().any(|b| b.ledger) {
        config["ledger"] =
            serde_json::json!({ "table": "sim", "lease_secs": sc.ledger_lease_secs });
    }
    serde_json::from_value(config).unwrap()
}

struct Running {
    shutdown: ShutdownHandle,
    run: JoinHandle<()>,
}

fn start_worker(world: &Arc<World>, worker: WorkerId) -> Running {
    let sc = &world.scenario;
    let registry = handler::registry(world.clone(), worker);
    let plan = Plan::build(config(sc, worker), &registry).unwrap();
    let (client, lambda) = clients::clients(world, worker);
    let w = Worker::new(plan, client.clone())
        .with_sqs(client)
        .with_durable_callbacks(lambda)
        .with_ledger(Arc::new(clients::Ledger(clients::Client {
            world: world.clone(),
            worker,
        })));
    world.worker_event(Event::Started { worker });
    let shutdown = w.shutdown_handle();
    let world = world.clone();
    let run = tokio::spawn(async move {
        let _ = w.run().await;
        if world.is_alive(worker) {
            world.worker_event(Event::Exited { worker });
        }
    });
    Running { shutdown, run }
}

/// What one seed did.
pub struct Outcome {
    pub violations: Vec<String>,
    pub runs: usize,
    pub events: usize,
    pub history: Vec<(Duration, Event)>,
    pub logs: String,
}

async fn simulate(seed: u64, logs: &logs::Logs) -> Outcome {
    let sc = Arc::new(Scenario::generate(seed));
    let world = World::new(sc.clone());
    {
        let world = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                world.tick();
                world.changed.notify_waiters();
            }
        });
    }
    let mut workers: Vec<Running> = (0..sc.workers).map(|w| start_worker(&world, w)).collect();
    let mut violations = Vec::new();
    let mut sigterm_at = sc.sigterm_at;
    let mut second_at = sc
        .second_signal_after
        .zip(sc.sigterm_at)
        .map(|(d, t)| t + d);
    let mut kill_at = sc.kill_at;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = world.now();
        if sigterm_at.is_some_and(|t| now >= t) {
            sigterm_at = None;
            world.worker_event(Event::Sigterm { worker: 0 });
            workers[0].shutdown.shutdown();
        }
        if second_at.is_some_and(|t| now >= t) {
            second_at = None;
            world.worker_event(Event::Sigterm { worker: 0 });
            workers[0].shutdown.shutdown();
        }
        if kill_at.is_some_and(|t| now >= t) {
            kill_at = None;
            let last = workers.len() - 1;
            if world.is_alive(last) {
                world.worker_event(Event::Killed { worker: last });
            }
        }
        let serving =
            (0..workers.len()).any(|w| world.is_alive(w) && !workers[w].shutdown.is_draining());
        if !serving && !world.all_done() && workers.len() < MAX_WORKERS {
            let w = workers.len();
            workers.push(start_worker(&world, w));
        }
        if world.all_done() || now >= LIMIT {
            break;
        }
    }
    // Stop every worker still alive, as an orchestrator would, and wait
    // no longer than the README promises.
    let bound = Duration::from_secs(sc.shutdown_grace_secs + sc.cancel_grace_secs + 10 + 65 + 25);
    for (w, running) in workers.iter_mut().enumerate() {
        if !world.is_alive(w) {
            continue;
        }
        if !running.shutdown.is_draining() {
            world.worker_event(Event::Sigterm { worker: w });
            running.shutdown.shutdown();
        }
    }
    for (w, running) in workers.iter_mut().enumerate() {
        if !world.is_alive(w) {
            continue;
        }
        if tokio::time::timeout(bound, &mut running.run).await.is_err() {
            violations.push(format!(
                "[shutdown-hang] worker {w} did not exit within {bound:?} of its SIGTERM"
            ));
        }
    }
    let end = world.now();
    let mut history = world.history();
    history.sort_by_key(|(t, _)| *t);
    let logs = logs.text();
    let checked = check::check(&sc, &history, &logs, end);
    violations.extend(checked.violations);
    Outcome {
        violations,
        runs: checked.runs,
        events: checked.events,
        history,
        logs,
    }
}

fn run_seed(seed: u64) -> Outcome {
    // backon's jitter draws from fastrand's thread-local generator.
    fastrand::seed(seed);
    let logs = logs::Logs::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let _guard = logs.capture(tokio::time::Instant::now());
        simulate(seed, &logs).await
    });
    // Workers killed mid-call are left pending; dropping the runtime ends them.
    drop(rt);
    outcome
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The handler's own panics (a simulated outcome) are expected: keep them
/// out of the output; anything else panics as usual.
fn quiet_handler_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !message.starts_with(handler::PANIC_MARKER) {
            default(info);
        }
    }));
}

#[test]
fn simulation() {
    quiet_handler_panics();
    if let Some(seed) = env_u64("SIM_SEED") {
        let sc = Scenario::generate(seed);
        eprintln!("{sc:#?}");
        let out = run_seed(seed);
        for (t, e) in &out.history {
            eprintln!("{t:>12.3?} {e:?}");
        }
        if std::env::var_os("SIM_LOGS").is_some() {
            eprintln!("{}", out.logs);
        }
        assert!(
            out.violations.is_empty(),
            "seed {seed}:\n{}",
            out.violations.join("\n")
        );
        return;
    }
    let first = env_u64("SIM_FIRST").unwrap_or(0);
    let seeds = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let started = std::time::Instant::now();
    let (mut failed, mut runs, mut events) = (Vec::new(), 0, 0);
    for seed in first..first + seeds {
        let out = run_seed(seed);
        runs += out.runs;
        events += out.events;
        if !out.violations.is_empty() {
            eprintln!(
                "seed {seed}: {}\n  replay: SIM_SEED={seed} cargo test -p sfn-worker-core --test simulation -- --nocapture",
                out.violations.join("\n  ")
            );
            failed.push(seed);
            let enough = if std::env::var_os("SIM_STOP_AT_FIRST").is_some() {
                1
            } else {
                10
            };
            if failed.len() >= enough {
                break;
            }
        }
    }
    eprintln!(
        "simulation: {seeds} seeds from {first} in {:.1?}: {runs} handler runs, {events} service events, {} failing",
        started.elapsed(),
        failed.len()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

/// The same seed twice gives the same history, call for call: a failing
/// seed replays exactly.
#[test]
fn a_seed_replays_exactly() {
    quiet_handler_panics();
    for seed in [1u64, 7, 42, 1234, 99_999] {
        let a = run_seed(seed).history;
        let b = run_seed(seed).history;
        assert_eq!(a.len(), b.len(), "seed {seed}");
        assert!(a == b, "seed {seed}: the histories differ");
    }
}
