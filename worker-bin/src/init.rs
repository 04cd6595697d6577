//! PID 1 duties.
//!
//! In a container without an init (the image is `FROM scratch`; Kubernetes
//! and ECS start no init unless asked), the worker is process 1. Every
//! process orphaned in the container (what an `exec` command left behind)
//! is then the worker's child, and nothing else reaps it: zombies pile up
//! until the process table is full.
//!
//! So as PID 1 the binary splits in two, like `tini`: this tiny init starts
//! the real command again as its child, forwards termination signals to it,
//! reaps every child it gets, and exits with the command's status. The
//! worker's own runtime is never asked to reap what it did not start.
//!
//! `SFN_WORKER_INIT=0` turns this off (an image that brings its own init, or
//! `docker run --init`); `SFN_WORKER_INIT=1` turns it on when not PID 1, and
//! then the init makes itself a child subreaper so orphans still come to it.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

/// The switch; the child always gets `0`, so it does not start another init.
pub(crate) const VARIABLE: &str = "SFN_WORKER_INIT";

/// Whether this process should be the init.
pub(crate) fn wanted() -> bool {
    match std::env::var(VARIABLE).as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => std::process::id() == 1,
    }
}

/// Run the command again as a child and supervise it; its exit status.
pub(crate) fn run() -> ExitCode {
    if std::process::id() != 1
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        eprintln!("sfn-worker init: cannot become a child subreaper ({e}); orphans go elsewhere");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sfn-worker init: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(supervise())
}

async fn supervise() -> ExitCode {
    // Handlers before the child exists: nothing it does can be missed.
    let streams = (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    );
    let (Ok(mut children), Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = streams else {
        eprintln!("sfn-worker init: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("sfn-worker init: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    // std's Command, not tokio's: tokio would reap the child itself, and the
    // init reaps everything with waitpid(-1).
    let child = match std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VARIABLE, "0")
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("sfn-worker init: cannot start the worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(raw) = i32::try_from(child.id()) else {
        return ExitCode::FAILURE;
    };
    let worker = Pid::from_raw(raw);
    loop {
        let forward = tokio::select! {
            _ = children.recv() => {
                if let Some(code) = reap(worker) {
                    return ExitCode::from(code);
                }
                continue;
            }
            _ = term.recv() => Signal::SIGTERM,
            _ = int.recv() => Signal::SIGINT,
            _ = hup.recv() => Signal::SIGHUP,
            _ = quit.recv() => Signal::SIGQUIT,
        };
        // The worker may have just ended; its status is reaped above.
        let _ = kill(worker, forward);
    }
}

/// Reap every child that has ended; the worker's exit code once it has.
fn reap(worker: Pid) -> Option<u8> {
    let mut status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == worker => {
                status = Some(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == worker => {
                status = Some(128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0)));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return status,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("sfn-worker init: waitpid failed: {e}");
                return status;
            }
        }
    }
}
