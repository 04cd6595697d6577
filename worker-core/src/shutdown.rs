//! Shutdown, in phases.
//!
//! 1. **Draining** (first signal): readiness turns 503, no new poll starts.
//!    Polls already sent are *not* aborted: Step Functions may already have
//!    assigned them a task, which would then sit unseen until its timeout. A
//!    task they return still runs, unless phase 2 has begun, when it is failed
//!    with `Worker.ShuttingDown` at once.
//! 2. **Cancelling** (`shutdown_grace_secs` later): every task's context is
//!    cancelled.
//! 3. **Abandoning** (`cancel_grace_secs` after that): handlers still running
//!    are dropped and their tasks failed with `Worker.ShuttingDown`, so a
//!    state machine `Retry` sends them to another worker.
//! 4. **Giving up** (a few seconds later): reports still being retried stop
//!    retrying.
//!
//! The worker exits when every poll has returned and every task has ended. A
//! second signal runs phases 2-4 at once and does not wait for polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Tokens {
    draining: CancellationToken,
    cancelling: CancellationToken,
    abandoning: CancellationToken,
    giving_up: CancellationToken,
    forced: CancellationToken,
    signals: AtomicUsize,
}

/// Starts the worker's shutdown. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    tokens: Arc<Tokens>,
}

impl ShutdownHandle {
    /// Ask for shutdown, as on SIGTERM: the first call starts a graceful
    /// drain; the second skips the waiting (as on a second SIGTERM or Ctrl-C).
    pub fn shutdown(&self) {
        if self.tokens.signals.fetch_add(1, Ordering::AcqRel) == 0 {
            self.tokens.draining.cancel();
        } else {
            self.force();
        }
    }

    /// Skip the waiting: cancel and abandon everything now.
    pub fn force(&self) {
        let t = &self.tokens;
        t.draining.cancel();
        t.cancelling.cancel();
        t.abandoning.cancel();
        t.giving_up.cancel();
        t.forced.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.tokens.draining.is_cancelled()
    }

    pub(crate) fn draining(&self) -> &CancellationToken {
        &self.tokens.draining
    }
    pub(crate) fn cancelling(&self) -> &CancellationToken {
        &self.tokens.cancelling
    }
    pub(crate) fn abandoning(&self) -> &CancellationToken {
        &self.tokens.abandoning
    }
    pub(crate) fn giving_up(&self) -> &CancellationToken {
        &self.tokens.giving_up
    }
    pub(crate) fn forced(&self) -> &CancellationToken {
        &self.tokens.forced
    }
}
