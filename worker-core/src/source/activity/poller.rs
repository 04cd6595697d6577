//! The `GetActivityTask` loop of one poller.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::aws::retry::PollBackoff;
use crate::aws::{Operation, SfnApi};
use crate::events::{InternalEvent, PollFailed};
use crate::metrics::PollResult;
use crate::runner::{Binding, Env, Task, run_task};
use crate::slots::BindingSlots;
use crate::source::back_off;

/// What a poller needs.
pub(crate) struct ActivityPoller {
    pub arn: Arc<str>,
    pub worker_name: Arc<str>,
    pub api: Arc<dyn SfnApi>,
    pub slots: BindingSlots,
    pub binding: Arc<Binding>,
    pub env: Arc<Env>,
    pub tasks: TaskTracker,
    /// Long polls kept open.
    pub pollers: usize,
}

/// Poll until shutdown begins. Never returns early on errors: a poller that
/// dies silently is a worker that serves nothing.
pub(crate) async fn poll_activity(p: Arc<ActivityPoller>) {
    let labels = &p.binding.labels;
    let draining = p.env.shutdown.draining();
    let mut backoff = PollBackoff::new();
    loop {
        // Capacity first: never fetch a task that could not start at once.
        let Some(slot) = p.slots.acquire_unless(draining).await else {
            break;
        };
        // Not raced against shutdown on purpose: aborting a sent poll can lose
        // the task the service assigned to it (it is never redelivered).
        match p.api.get_activity_task(&p.arn, &p.worker_name).await {
            Ok(Some(task)) => {
                labels.poll(PollResult::Task);
                backoff.answered();
                let task = Task {
                    token: task.token,
                    input: task.input,
                    lease: None,
                    trace: None,
                    turn: None,
                };
                p.tasks
                    .spawn(run_task(p.binding.clone(), p.env.clone(), task, slot));
            }
            Ok(None) => {
                labels.poll(PollResult::Empty);
                backoff.answered();
            }
            Err(err) => {
                drop(slot);
                let (delay, failures) = backoff.failed();
                PollFailed {
                    labels,
                    operation: Operation::GetActivityTask,
                    error: &err,
                    retry_in: delay,
                    failures,
                }
                .emit();
                if !back_off(delay, draining).await {
                    break;
                }
            }
        }
    }
}
