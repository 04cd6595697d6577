//! The command's process group: what cancellation and the end of a task
//! signal, and what is killed if the handler is dropped.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The command's process group, killed if the handler's future is dropped
/// before the command was waited for.
pub(super) struct GroupGuard(pub(super) Option<u32>);

impl GroupGuard {
    pub(super) fn signal(&self, sig: Signal) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // The group may already be gone; nothing to do then.
            let _ = killpg(Pid::from_raw(pid), sig);
        }
    }

    /// The command was waited for: nothing to kill on drop.
    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }

    /// Terminate what the command left in its group: SIGTERM now, SIGKILL
    /// after `kill_after`. (The group's id is the command's pid, which the
    /// kernel does not hand out again while any member of the group lives.)
    pub(super) fn leftovers(&mut self, kill_after: Duration) {
        let Some(pid) = self.0.take().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        if killpg(group, Signal::SIGTERM).is_ok() {
            tokio::spawn(async move {
                tokio::time::sleep(kill_after).await;
                let _ = killpg(group, Signal::SIGKILL);
            });
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}
