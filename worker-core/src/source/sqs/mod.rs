//! SQS callbacks: `[[queue]]` bindings.
//!
//! A `sqs:sendMessage.waitForTaskToken` state puts the task token and a
//! payload into a message. A receiver (`receiver.rs`) takes slots, then
//! receives at most that many messages; `message.rs` finds the token and
//! input; `in_flight.rs` joins duplicates and drops settled messages that
//! come back. From there it is a task like any other, run by the shared
//! runner, with a [`lease::MessageLease`] that keeps the message invisible
//! while the task lives (through `batcher.rs`, which coalesces visibility
//! changes and deletes into batch calls) and deletes it once it is settled.

pub(crate) mod batcher;
pub(crate) mod config;
pub(crate) mod in_flight;
pub(crate) mod lease;
pub(crate) mod message;
mod receiver;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Runtime, Source};
use crate::aws::SqsApi;
use crate::completion::Reporter;
use crate::config::{Completes, QueuePlan};
use crate::handler::TaskSource;
use crate::runner::Binding;
use crate::slots::BindingSlots;
use in_flight::{InFlight, SETTLED_CAPACITY};
pub(crate) use receiver::QueuePoller;
use receiver::Receiver;

use config::{OnMalformed, OnShutdown, TokenSource};

/// Per queue binding, shared by its receivers and tasks.
pub(crate) struct QueueShared {
    pub url: Arc<str>,
    pub batcher: batcher::Batcher,
    pub visibility: Duration,
    pub token: TokenSource,
    pub input_pointer: Option<String>,
    pub on_malformed: OnMalformed,
    pub on_shutdown: OnShutdown,
    pub in_flight: in_flight::InFlight,
    /// Shutdown's last phase: deletes stop retrying.
    pub give_up: CancellationToken,
    /// Deletes answered (every task's): whether a failed delete failed
    /// alone (`lease::settle`, [`crate::aws::retry::Retries`]).
    pub deletes: crate::aws::retry::Answers,
}

/// The source of one `[[queue]]` binding. Its batcher lives as long as the
/// binding's receivers and tasks hold it.
pub(crate) fn source(
    plan: &QueuePlan,
    api: Arc<dyn SqsApi>,
    rt: &Runtime,
    reporter: Arc<Reporter>,
    give_up: CancellationToken,
) -> Arc<QueuePoller> {
    let url: Arc<str> = plan.url.as_str().into();
    let shared = Arc::new(QueueShared {
        url: url.clone(),
        batcher: batcher::Batcher::spawn(api.clone(), url.clone()),
        visibility: plan.visibility,
        token: plan.token.clone(),
        input_pointer: plan.input_pointer.clone(),
        on_malformed: plan.on_malformed,
        on_shutdown: plan.on_shutdown,
        deletes: crate::aws::retry::Answers::default(),
        in_flight: InFlight::new(settled_memory(plan.visibility), SETTLED_CAPACITY),
        give_up,
    });
    let source = match plan.completes {
        Completes::StepFunctions => TaskSource::Queue { url },
        Completes::DurableCallback => TaskSource::DurableCallback { url },
    };
    let binding = Arc::new(Binding::new(&plan.binding, source, reporter));
    Arc::new(QueuePoller {
        queue: shared,
        api,
        slots: BindingSlots::new(plan.binding.concurrency, &rt.global, binding.labels.clone()),
        binding,
        env: rt.env.clone(),
        tasks: rt.tasks.clone(),
        fifo: plan.url.is_fifo(),
        durable: plan.completes == Completes::DurableCallback,
        receivers: plan.receivers,
        surging: Default::default(),
        pollers: Default::default(),
    })
}

impl Source for QueuePoller {
    fn start(self: Arc<Self>, pollers: &TaskTracker) {
        let _ = self.pollers.set(pollers.clone());
        for _ in 0..self.receivers {
            pollers.spawn(receiver::poll_queue(self.clone(), Receiver::Steady));
        }
    }
}

/// How long a queue remembers the messages it settled. A message whose
/// delete could not be made comes back within one visibility timeout of its
/// lapse, but a busy queue may hand it out much later than that, so at
/// least 15 minutes (the capacity bounds the memory either way).
fn settled_memory(visibility: Duration) -> Duration {
    (visibility * 2).max(Duration::from_secs(15 * 60))
}
