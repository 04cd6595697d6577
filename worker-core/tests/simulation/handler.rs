//! The handler every simulated worker runs: it looks its task up in the
//! scenario, records each run in the history, and behaves as the seed says.

use std::sync::Arc;
use std::time::Duration;

use sfn_worker_core::{Registry, TaskContext, TaskError};

use crate::scenario::Outcome;
use crate::world::{RunEnd, WorkerId, World};

/// Records how a run ended, also when the worker drops it (abandoned) or
/// it panics.
struct Run {
    world: Arc<World>,
    run: usize,
    how: Option<RunEnd>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(how) = self.how {
            let how = if std::thread::panicking() {
                RunEnd::Panic
            } else {
                how
            };
            self.world.run_ended(self.run, how);
        }
    }
}

/// The marker in the handler's panics, which the simulation's panic hook
/// keeps quiet.
pub const PANIC_MARKER: &str = "sim handler could not handle";

pub fn registry(world: Arc<World>, worker: WorkerId) -> Registry {
    let mut r = Registry::new();
    r.handler("h", move |input: serde_json::Value, ctx: TaskContext| {
        let world = world.clone();
        async move { run(world, worker, input, ctx).await }
    });
    r
}

async fn run(
    world: Arc<World>,
    worker: WorkerId,
    input: serde_json::Value,
    ctx: TaskContext,
) -> Result<serde_json::Value, TaskError> {
    // The whole body (no input_pointer) or just the input.
    let task = input.get("input").unwrap_or(&input);
    let exec = task["exec"].as_u64().unwrap_or(0) as usize;
    let attempt = task["attempt"].as_u64().unwrap_or(0) as u32;
    let spec = world.scenario.tasks[exec].clone();
    if !world.is_alive(worker) {
        // The process is gone: nothing it had in memory starts any more.
        std::future::pending::<()>().await;
    }
    let mut guard = Run {
        run: world.run_started(exec, attempt, worker),
        world: world.clone(),
        how: Some(RunEnd::Dropped),
    };
    let done = tokio::time::sleep(spec.duration);
    tokio::pin!(done);
    loop {
        tokio::select! {
            biased;
            _ = dead(&world, worker) => {
                // The process is gone: the run neither ends nor says so.
                guard.how = None;
                std::future::pending::<()>().await;
            }
            _ = ctx.cancelled(), if spec.respects_cancel => {
                guard.how = Some(RunEnd::Cancelled);
                return Err(TaskError::new("Sim.Cancelled", "stopped: the task was cancelled"));
            }
            _ = &mut done => break,
            _ = tokio::time::sleep(Duration::from_secs(1)), if spec.asks_heartbeats => ctx.heartbeat(),
        }
    }
    match spec.outcome {
        Outcome::Success => {
            guard.how = Some(RunEnd::Ok);
            Ok(serde_json::json!({ "exec": exec, "attempt": attempt }))
        }
        Outcome::Failure { quote } => {
            guard.how = Some(RunEnd::Err);
            let cause = if quote {
                format!("could not handle {input}")
            } else {
                "failed".to_owned()
            };
            Err(TaskError::new("Sim.Failed", cause))
        }
        Outcome::Panic => {
            guard.how = Some(RunEnd::Panic);
            panic!("{PANIC_MARKER} {input}")
        }
    }
}

async fn dead(world: &World, worker: WorkerId) {
    loop {
        let killed = world.killed.notified();
        tokio::pin!(killed);
        killed.as_mut().enable();
        if !world.is_alive(worker) {
            return;
        }
        killed.await;
    }
}
