//! One module per subcommand.

pub(crate) mod check;
pub(crate) mod handlers;
pub(crate) mod healthcheck;
pub(crate) mod invoke;
pub(crate) mod run;
pub(crate) mod workflows;

use std::io::Read;
use std::path::Path;

/// The text of `--input FILE` (`-`: stdin), checked to be JSON; an error
/// names the file.
pub(crate) fn read_json_input(input: &Path) -> Result<String, String> {
    let text = if input == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("--input -: cannot read stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(input).map_err(|e| format!("--input {}: {e}", input.display()))?
    };
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| format!("--input {}: not JSON: {e}", input.display()))?;
    Ok(text)
}

/// A tokio runtime for a command, or a message saying why there is none.
/// `threads` is `worker.threads`: 0 means one per CPU core.
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// How long blocking work may hold up the process's exit once the command is
/// done (a handler still inside `spawn_blocking` after shutdown).
pub(crate) const EXIT_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Shut a command's runtime down without waiting more than [`EXIT_BOUND`]
/// for blocking tasks: dropping a runtime waits for them forever.
pub(crate) fn finish(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(EXIT_BOUND);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_does_not_wait_for_blocking_work_at_exit() {
        let rt = runtime(1).unwrap();
        rt.block_on(async {
            tokio::task::spawn_blocking(|| std::thread::sleep(std::time::Duration::from_secs(60)));
        });
        let start = std::time::Instant::now();
        finish(rt);
        let took = start.elapsed();
        assert!(
            took < EXIT_BOUND + std::time::Duration::from_secs(1),
            "{took:?}"
        );
    }
}
