//! `chaos-worker`: the sfn-worker daemon with the one handler
//! `bench/chaos.py` runs through faults and kills.
//!
//! The handler writes a line for every run it starts to
//! `$CHAOS_RUNS_DIR/runs-<pid>.log` (`source n attempt run-id start-ms`) before it
//! does anything else, and puts its run id in its output, so the chaos
//! command can tell a second run of a task from a report sent twice. It
//! works for `sleep_ms`, fails with `Chaos.Expected` when told to, and
//! with `block` sits in `spawn_blocking` (the second-signal check).

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sfn_worker::{TaskContext, TaskError};

#[derive(Deserialize)]
struct Job {
    source: String,
    n: u64,
    attempt: u32,
    sleep_ms: u64,
    fail: bool,
    #[serde(default)]
    block: bool,
}

#[derive(Serialize)]
struct Done {
    source: String,
    n: u64,
    attempt: u32,
    run: String,
}

/// The error name of a failure by design.
const EXPECTED: &str = "Chaos.Expected";

fn runs_log() -> &'static Mutex<Option<std::fs::File>> {
    static LOG: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let file = std::env::var_os("CHAOS_RUNS_DIR").and_then(|dir| {
            let path = std::path::Path::new(&dir).join(format!("runs-{}.log", std::process::id()));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        Mutex::new(file)
    })
}

/// One line, one write: it is on disk (in the page cache) even if the
/// process is killed the next moment.
fn record(job: &Job, run: &str) {
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let line = format!(
        "{} {} {} {run} {started_ms}\n",
        job.source, job.n, job.attempt
    );
    let mut log = runs_log().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(file) = log.as_mut() {
        let _ = file.write_all(line.as_bytes());
    }
}

async fn chaos(job: Job, _ctx: TaskContext) -> Result<Done, TaskError> {
    let run = format!("{:016x}", rand::random::<u64>());
    record(&job, &run);
    if job.block {
        let _ = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(600))).await;
    }
    tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
    if job.fail {
        return Err(TaskError::new(
            EXPECTED,
            format!("{} {} fails by design", job.source, job.n),
        ));
    }
    Ok(Done {
        source: job.source,
        n: job.n,
        attempt: job.attempt,
        run,
    })
}

fn main() -> std::process::ExitCode {
    sfn_worker::main(|registry| {
        registry.handler("chaos", chaos);
    })
}
