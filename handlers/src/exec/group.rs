//! The command's process group: what cancellation and the end of a task
//! signal, and what is killed if the handler is dropped.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How often a group waiting for its SIGKILL is checked for members.
const GROUP_POLL: Duration = Duration::from_millis(100);

/// The command's process group, killed if the handler's future is dropped
/// before the command was waited for.
pub(super) struct GroupGuard(Option<Pid>);

impl GroupGuard {
    /// The group led by the command whose pid is `pid` (spawned with
    /// `process_group(0)`, so the group's id is that pid).
    pub(super) fn new(pid: Option<u32>) -> Self {
        Self(pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw))
    }

    pub(super) fn signal(&self, sig: Signal) {
        if let Some(group) = self.0 {
            // The group may already be gone; nothing to do then.
            let _ = killpg(group, sig);
        }
    }

    /// Terminate what the command left in its group: SIGTERM now, SIGKILL
    /// after `kill_after`.
    pub(super) fn leftovers(&mut self, kill_after: Duration) {
        let Some(group) = self.0 else { return };
        if killpg(group, Signal::SIGTERM).is_ok() {
            self.kill_at(Instant::now() + kill_after);
        } else {
            // Nobody left.
            self.0 = None;
        }
    }

    /// SIGKILL whatever is still in the group at `deadline`, from a task of
    /// its own, so the handler can return now. The guard hands the group to
    /// that task.
    ///
    /// A group's id is its leader's pid. The kernel does not hand that pid
    /// out again while any member of the group lives, but once the last one
    /// is gone it may, to an unrelated process that leads a group of its
    /// own: a SIGKILL sent blindly at the deadline could hit it. So the
    /// group is checked for members (signal 0) every `GROUP_POLL` and the
    /// watch ends, sending nothing, as soon as it is empty. A wrong SIGKILL
    /// would then take the kernel handing out the very same pid within
    /// `GROUP_POLL` of it being freed, which with pids allocated in turn
    /// means going through all of `pid_max` (32768 by default, 4194304 on
    /// many systems) that fast.
    pub(super) fn kill_at(&mut self, deadline: Instant) {
        let Some(group) = self.0.take() else { return };
        // If the runtime drops the task first (the worker is exiting), the
        // guard's drop kills the group at once rather than never.
        let guard = GroupGuard(Some(group));
        tokio::spawn(async move {
            let mut guard = guard;
            while killpg(group, None).is_ok() {
                if Instant::now() >= deadline {
                    guard.signal(Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep_until(deadline.min(Instant::now() + GROUP_POLL)).await;
            }
            guard.0 = None;
        });
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}
