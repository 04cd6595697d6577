//! The `ReceiveMessage` loop of one queue receiver.

use crate::trace::TraceContext;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::QueueShared;
use super::config::{OnMalformed, TokenSource};
use super::in_flight::{Claim, Deliveries};
use super::lease::{Action, MessageLease, settle};
use super::message::{Malformed, extract};
use crate::aws::retry::PollBackoff;
use crate::aws::{Message, Operation, ReceiveRequest, SqsApi};
use crate::events::{DuplicateDelivery, InternalEvent, MalformedMessage, PollFailed};
use crate::limits::{MAX_BATCH_ENTRIES, MAX_RECEIVE_WAIT_SECS, MAX_TASK_TOKEN_CHARS};
use crate::metrics::PollResult;
use crate::runner::{Binding, Env, Task, Turn, run_task};
use crate::slots::{BindingSlots, Slot};
use crate::source::back_off;

pub(crate) struct QueuePoller {
    pub queue: Arc<QueueShared>,
    pub api: Arc<dyn SqsApi>,
    pub slots: BindingSlots,
    pub binding: Arc<Binding>,
    pub env: Arc<Env>,
    pub tasks: TaskTracker,
    pub fifo: bool,
    /// The messages carry durable callback ids, checked for shape.
    pub durable: bool,
    /// Concurrent receives.
    pub receivers: usize,
    /// Surge receivers running now (see [`Receiver::Surge`]).
    pub surging: AtomicUsize,
    /// Where the receivers run (set when the source starts).
    pub pollers: OnceLock<TaskTracker>,
}

/// What kind of receiver a loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    /// One of the binding's `receivers`: runs until shutdown.
    Steady,
    /// One more, started while receives come back full and slots are free
    /// (a backlog the steady receivers do not drain fast enough: with 40%
    /// of receives failing, four receivers take half the messages they
    /// would). It stops at the first receive that is not full, when no slot
    /// is free, or when its receives fail more than the quick retries
    /// cover: an idle queue costs only the steady receivers' long polls.
    Surge,
}

impl QueuePoller {
    /// A full receive with slots left over: start a surge receiver, if the
    /// binding has fewer than its steady receivers' number running.
    fn maybe_surge(self: &Arc<Self>) {
        if self.slots.available() < MAX_BATCH_ENTRIES {
            return;
        }
        let Some(pollers) = self.pollers.get() else {
            return;
        };
        let started = self
            .surging
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.receivers).then_some(n + 1)
            });
        if started.is_ok() {
            pollers.spawn(poll_queue(self.clone(), Receiver::Surge));
        }
    }
}

/// Counts a surge receiver out when its loop ends, however it ends.
struct Surging<'a>(&'a AtomicUsize);

impl Drop for Surging<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Receive until shutdown begins; errors are retried, never fatal (a surge
/// receiver stops instead).
pub(crate) async fn poll_queue(p: Arc<QueuePoller>, kind: Receiver) {
    let _surging = (kind == Receiver::Surge).then(|| Surging(&p.surging));
    let labels = &p.binding.labels;
    let draining = p.env.shutdown.draining();
    let attribute = match &p.queue.token {
        TokenSource::Attribute(a) => Some(a.as_str()),
        TokenSource::Pointer(_) => None,
    };
    let visibility_secs = i32::try_from(p.queue.visibility.as_secs()).unwrap_or(i32::MAX);
    let mut backoff = PollBackoff::new();
    loop {
        // Capacity first: ask for at most as many messages as can start now.
        let first = match kind {
            Receiver::Steady => p.slots.acquire_unless(draining).await,
            Receiver::Surge if draining.is_cancelled() => None,
            Receiver::Surge => p.slots.try_acquire(),
        };
        let Some(first) = first else {
            break;
        };
        let mut slots = vec![first];
        while slots.len() < MAX_BATCH_ENTRIES {
            match p.slots.try_acquire() {
                Some(slot) => slots.push(slot),
                None => break,
            }
        }
        // Not raced against shutdown: messages a receive returns after being
        // dropped would stay invisible for a whole visibility timeout.
        let request = ReceiveRequest {
            queue_url: &p.queue.url,
            max_messages: slots.len() as i32,
            // A surge receiver does not wait on an empty queue (holding
            // slots other bindings could use): it stops.
            wait_secs: match kind {
                Receiver::Steady => MAX_RECEIVE_WAIT_SECS,
                Receiver::Surge => 0,
            },
            visibility_secs,
            attribute,
        };
        match p.api.receive(request).await {
            Ok(messages) => {
                backoff.answered();
                labels.poll(if messages.is_empty() {
                    PollResult::Empty
                } else {
                    PollResult::Task
                });
                if draining.is_cancelled() {
                    // Received but not started: give them back at once.
                    let kept_until = Instant::now() + p.queue.visibility;
                    for m in &messages {
                        release_quietly(&p, m, kept_until);
                    }
                    break;
                }
                let full = messages.len() == MAX_BATCH_ENTRIES;
                let drained = messages.len() < slots.len();
                slots.truncate(messages.len());
                // Their visibility runs from when SQS handed them out: the
                // end of the long poll, a moment before its answer arrived.
                dispatch(&p, messages, slots, Instant::now() + p.queue.visibility);
                if full {
                    p.maybe_surge();
                }
                if kind == Receiver::Surge && drained {
                    break;
                }
            }
            Err(err) => {
                drop(slots);
                let (delay, failures) = backoff.failed();
                PollFailed {
                    labels,
                    operation: Operation::ReceiveMessage,
                    error: &err,
                    retry_in: delay,
                    failures,
                }
                .emit();
                if kind == Receiver::Surge && !delay.is_zero() {
                    // Failing more than now and then: the steady receivers
                    // go on.
                    break;
                }
                if !back_off(delay, draining).await {
                    break;
                }
            }
        }
    }
}

/// A FIFO group's tasks, in order, each with its slot.
type Chain = VecDeque<(Task, Slot)>;

/// Turn received messages into tasks, each with one of the slots; they
/// are invisible until `kept_until` unless renewed.
fn dispatch(p: &Arc<QueuePoller>, messages: Vec<Message>, slots: Vec<Slot>, kept_until: Instant) {
    // FIFO: the messages of one group run one after another, in order.
    let mut groups: Vec<(Option<String>, Chain)> = Vec::new();
    // FIFO groups with a message a task here still holds (received again
    // after its visibility lapsed): what comes after it in the group goes
    // back to the queue, where SQS's lock on the group keeps it until the
    // held one is done. Running it here would break the order.
    let mut held_groups: Vec<Option<String>> = Vec::new();
    for (m, slot) in messages.into_iter().zip(slots) {
        if p.fifo && held_groups.contains(&m.group_id) {
            release_quietly(p, &m, kept_until);
            continue;
        }
        let (token, input) = match extract(&m, &p.queue.token, p.queue.input_pointer.as_deref()) {
            Ok((id, _)) if p.durable && !crate::aws::lambda::is_callback_id(&id) => {
                malformed(p, &m, Malformed::CallbackIdInvalid);
                continue;
            }
            // Step Functions refuses a longer token on every call, so no
            // report could ever be made: running the handler would only
            // repeat, each time the message comes back.
            Ok((token, _)) if !p.durable && token.chars().count() > MAX_TASK_TOKEN_CHARS => {
                malformed(p, &m, Malformed::TokenInvalid);
                continue;
            }
            Ok(found) => found,
            Err(why) => {
                malformed(p, &m, why);
                continue;
            }
        };
        let deliveries = match p.queue.in_flight.claim(
            &token,
            &m.message_id,
            &m.receipt_handle,
            kept_until,
            m.sent_timestamp_ms,
        ) {
            Claim::New(d) => d,
            claim @ (Claim::Joined | Claim::Settled) => {
                let settled = matches!(claim, Claim::Settled);
                if p.fifo && !settled {
                    held_groups.push(m.group_id.clone());
                }
                DuplicateDelivery {
                    labels: &p.binding.labels,
                    message_id: &m.message_id,
                    token: &token,
                    settled,
                }
                .emit();
                if settled {
                    delete_quietly(p, &m, kept_until);
                }
                continue;
            }
        };
        let lease = Arc::new(MessageLease::new(
            p.queue.clone(),
            token.clone(),
            deliveries,
        ));
        let task = Task {
            token,
            input,
            lease: Some(lease),
            trace: m
                .trace_header
                .as_deref()
                .and_then(TraceContext::from_aws_trace_header),
            turn: None,
        };
        if p.fifo {
            match groups.iter_mut().find(|(g, _)| *g == m.group_id) {
                Some((_, chain)) => chain.push_back((task, slot)),
                None => groups.push((m.group_id.clone(), VecDeque::from([(task, slot)]))),
            }
        } else {
            p.tasks
                .spawn(run_task(p.binding.clone(), p.env.clone(), task, slot));
        }
    }
    for (_, chain) in groups {
        run_chain(p, chain);
    }
}

/// Start one FIFO group's tasks at once, each waiting for the one before
/// it: they are all kept alive from receipt (heartbeats and visibility on
/// their own timers), and run one after another, in order. A task that
/// goes back to the queue (released at shutdown, or its report left for
/// later) sends the ones after it back too, so none runs out of order.
fn run_chain(p: &Arc<QueuePoller>, chain: Chain) {
    let mut wait: Option<oneshot::Receiver<bool>> = None;
    let last = chain.len().saturating_sub(1);
    for (i, (mut task, slot)) in chain.into_iter().enumerate() {
        let (next, after) = if i < last {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        task.turn = Some(Turn {
            wait: wait.take(),
            next,
        });
        wait = after;
        p.tasks
            .spawn(run_task(p.binding.clone(), p.env.clone(), task, slot));
    }
}

/// Give a message back (visibility 0), retrying while it is invisible.
fn release_quietly(p: &QueuePoller, m: &Message, kept_until: Instant) {
    let queue = p.queue.clone();
    let (id, handle) = (m.message_id.clone(), m.receipt_handle.clone());
    p.tasks.spawn(async move {
        let d = Deliveries::new(&id, &handle, kept_until, None);
        settle(&queue, &d, vec![handle], Action::Release).await;
    });
}

/// Delete a message that needs no task, retrying while it is invisible
/// (if that fails, the message comes back and is dropped again).
fn delete_quietly(p: &QueuePoller, m: &Message, kept_until: Instant) {
    let queue = p.queue.clone();
    let (id, handle) = (m.message_id.clone(), m.receipt_handle.clone());
    p.tasks.spawn(async move {
        let d = Deliveries::new(&id, &handle, kept_until, None);
        settle(&queue, &d, vec![handle], Action::Delete).await;
    });
}

fn malformed(p: &QueuePoller, m: &Message, why: Malformed) {
    let delete = p.queue.on_malformed == OnMalformed::Delete;
    MalformedMessage {
        labels: &p.binding.labels,
        message_id: &m.message_id,
        reason: why.reason(),
        delete,
    }
    .emit();
    if delete {
        delete_quietly(p, m, Instant::now() + p.queue.visibility);
    }
}
