//! An in-process fake of SQS for unit tests and benchmarks: queues with real
//! visibility semantics on tokio's clock, every batch call recorded, and
//! per-entry failures scriptable.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{BatchEntry, EntryResult, Message, ReceiveRequest, SqsApi};
use crate::aws::{ApiError, ApiErrorKind, Operation};

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    group_id: Option<String>,
    attribute: Option<String>,
    trace_header: Option<String>,
    /// Stands in for `SentTimestamp`: the send order, so a later message is newer.
    sent: u64,
}

#[derive(Default)]
struct Queue {
    visible: VecDeque<Stored>,
    /// receipt handle -> (message, when it becomes visible again)
    in_flight: HashMap<String, (Stored, Instant)>,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Queue>,
    scripted: HashMap<Operation, VecDeque<ApiError>>,
    /// message id -> how many times it was received
    received: HashMap<String, usize>,
    next_id: u64,
    visibility_calls: Vec<Vec<BatchEntry>>,
    delete_calls: Vec<Vec<BatchEntry>>,
    deleted: Vec<String>,
    fail_entries: HashMap<String, ApiError>,
    /// Calls that hang this long, then time out (as a client would).
    hangs: HashMap<Operation, VecDeque<Duration>>,
    receives: usize,
}

/// The fake. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct FakeSqs {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl FakeSqs {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a message; returns its id.
    pub fn send(&self, queue_url: &str, body: &str) -> String {
        self.send_with(queue_url, body, None, None)
    }

    /// Send a message with a FIFO group and/or a token attribute.
    pub fn send_with(
        &self,
        queue_url: &str,
        body: &str,
        group_id: Option<&str>,
        attribute: Option<&str>,
    ) -> String {
        let mut s = self.state();
        s.next_id += 1;
        let id = format!("m-{}", s.next_id);
        let sent = s.next_id;
        s.queues
            .entry(queue_url.to_owned())
            .or_default()
            .visible
            .push_back(Stored {
                id: id.clone(),
                body: body.to_owned(),
                group_id: group_id.map(str::to_owned),
                attribute: attribute.map(str::to_owned),
                trace_header: None,
                sent,
            });
        drop(s);
        self.changed.notify_waiters();
        id
    }

    /// Send a message with an `AWSTraceHeader` system attribute; returns its id.
    pub fn send_traced(&self, queue_url: &str, body: &str, trace_header: &str) -> String {
        let id = self.send(queue_url, body);
        let mut s = self.state();
        if let Some(m) = s
            .queues
            .get_mut(queue_url)
            .and_then(|q| q.visible.iter_mut().find(|m| m.id == id))
        {
            m.trace_header = Some(trace_header.to_owned());
        }
        id
    }

    /// Answer the next batch entry for `receipt_handle` with `err`.
    pub fn fail_entry(&self, receipt_handle: &str, err: ApiError) {
        self.state()
            .fail_entries
            .insert(receipt_handle.to_owned(), err);
    }

    /// Answer the next call of `op` with `err` (queued; one per call).
    pub fn fail_next(&self, op: Operation, err: ApiError) {
        self.state().scripted.entry(op).or_default().push_back(err);
    }

    /// The next call of `op` gets no answer for `after`, then fails with
    /// `Timeout`, as a client whose call hung would see it. The call is not
    /// carried out.
    pub fn hang_next(&self, op: Operation, after: Duration) {
        self.state().hangs.entry(op).or_default().push_back(after);
    }

    /// Make the message `id` visible again now, as if its visibility had
    /// lapsed: the receipt handles given out for it stop working.
    pub fn lapse(&self, queue_url: &str, id: &str) {
        let mut s = self.state();
        let q = s.queues.entry(queue_url.to_owned()).or_default();
        let handles: Vec<String> = q
            .in_flight
            .iter()
            .filter(|(_, (m, _))| m.id == id)
            .map(|(h, _)| h.clone())
            .collect();
        for h in handles {
            if let Some((m, _)) = q.in_flight.remove(&h) {
                q.visible.push_front(m);
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// The receipt handles of the messages in flight now.
    pub fn in_flight_handles(&self, queue_url: &str) -> Vec<String> {
        let mut s = self.state();
        let q = s.queues.entry(queue_url.to_owned()).or_default();
        expire(q, Instant::now());
        q.in_flight.keys().cloned().collect()
    }

    /// Receive what is visible now, as another worker would (no wait).
    pub async fn receive_now(&self, queue_url: &str, visibility_secs: i32) -> Vec<Message> {
        self.receive(ReceiveRequest {
            queue_url,
            max_messages: 10,
            wait_secs: 0,
            visibility_secs,
            attribute: None,
        })
        .await
        .unwrap_or_default()
    }

    async fn hang(&self, op: Operation) -> Result<(), ApiError> {
        let after = self
            .state()
            .hangs
            .get_mut(&op)
            .and_then(VecDeque::pop_front);
        match after {
            Some(after) => {
                tokio::time::sleep(after).await;
                Err(ApiError::new(
                    ApiErrorKind::Transient,
                    "Timeout",
                    "no answer (the fake hung this call)",
                ))
            }
            None => Ok(()),
        }
    }

    /// How many times the message `id` was received.
    pub fn times_received(&self, id: &str) -> usize {
        self.state().received.get(id).copied().unwrap_or(0)
    }

    fn scripted(&self, op: Operation) -> Result<(), ApiError> {
        match self
            .state()
            .scripted
            .get_mut(&op)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Ids of deleted messages, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }

    /// Every `ChangeMessageVisibilityBatch` call's entries (failed calls too).
    pub fn visibility_calls(&self) -> Vec<Vec<BatchEntry>> {
        self.state().visibility_calls.clone()
    }

    /// Every `DeleteMessageBatch` call's entries (failed calls too).
    pub fn delete_calls(&self) -> Vec<Vec<BatchEntry>> {
        self.state().delete_calls.clone()
    }

    /// `ReceiveMessage` calls so far.
    pub fn receives(&self) -> usize {
        self.state().receives
    }

    /// Messages visible now (after expiring visibility timeouts).
    pub fn visible(&self, queue_url: &str) -> usize {
        let mut s = self.state();
        let q = s.queues.entry(queue_url.to_owned()).or_default();
        expire(q, Instant::now());
        q.visible.len()
    }

    /// Messages received and not yet visible again or deleted.
    pub fn in_flight(&self, queue_url: &str) -> usize {
        let mut s = self.state();
        let q = s.queues.entry(queue_url.to_owned()).or_default();
        expire(q, Instant::now());
        q.in_flight.len()
    }

    /// Wait until `cond` holds (checked after every change).
    pub async fn wait_until(&self, mut cond: impl FnMut(&FakeSqs) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            tokio::select! {
                _ = notified => {}
                // Visibility timeouts expire with time, not with calls.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    fn batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
        delete: bool,
    ) -> Result<Vec<EntryResult>, ApiError> {
        let now = Instant::now();
        {
            let mut s = self.state();
            if delete {
                s.delete_calls.push(entries.to_vec());
            } else {
                s.visibility_calls.push(entries.to_vec());
            }
        }
        self.scripted(if delete {
            Operation::DeleteMessageBatch
        } else {
            Operation::ChangeMessageVisibilityBatch
        })?;
        let mut s = self.state();
        let mut results = Vec::new();
        for e in entries {
            if let Some(err) = s.fail_entries.remove(&e.receipt_handle) {
                results.push(EntryResult {
                    id: e.id.clone(),
                    error: Some(err),
                });
                continue;
            }
            let q = s.queues.entry(queue_url.to_owned()).or_default();
            expire(q, now);
            let error = match q.in_flight.remove(&e.receipt_handle) {
                None => Some(ApiError::new(
                    ApiErrorKind::Rejected,
                    "ReceiptHandleIsInvalid",
                    "not in flight",
                )),
                Some((m, _)) if delete => {
                    s.deleted.push(m.id);
                    None
                }
                Some((m, _)) if e.visibility_secs == 0 => {
                    q.visible.push_front(m);
                    None
                }
                Some((m, _)) => {
                    let again = now + Duration::from_secs(e.visibility_secs as u64);
                    q.in_flight.insert(e.receipt_handle.clone(), (m, again));
                    None
                }
            };
            results.push(EntryResult {
                id: e.id.clone(),
                error,
            });
        }
        drop(s);
        self.changed.notify_waiters();
        Ok(results)
    }
}

fn expire(q: &mut Queue, now: Instant) {
    let expired: Vec<String> = q
        .in_flight
        .iter()
        .filter(|(_, (_, at))| *at <= now)
        .map(|(h, _)| h.clone())
        .collect();
    for h in expired {
        if let Some((m, _)) = q.in_flight.remove(&h) {
            q.visible.push_back(m);
        }
    }
}

#[async_trait]
impl SqsApi for FakeSqs {
    async fn receive(&self, r: ReceiveRequest<'_>) -> Result<Vec<Message>, ApiError> {
        self.state().receives += 1;
        self.hang(Operation::ReceiveMessage).await?;
        self.scripted(Operation::ReceiveMessage)?;
        let deadline = Instant::now() + Duration::from_secs(r.wait_secs.max(0) as u64);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (out, next_expiry) = {
                let mut s = self.state();
                s.next_id += 1;
                let receipt = s.next_id;
                let q = s.queues.entry(r.queue_url.to_owned()).or_default();
                expire(q, now);
                let mut out = Vec::new();
                while out.len() < r.max_messages.max(1) as usize {
                    let Some(m) = q.visible.pop_front() else {
                        break;
                    };
                    let handle = format!("rh-{receipt}-{}", out.len());
                    let again = now + Duration::from_secs(r.visibility_secs.max(0) as u64);
                    out.push(Message {
                        message_id: m.id.clone(),
                        receipt_handle: handle.clone(),
                        body: m.body.clone(),
                        group_id: m.group_id.clone(),
                        attribute: r.attribute.and(m.attribute.clone()),
                        trace_header: m.trace_header.clone(),
                        sent_timestamp_ms: Some(m.sent),
                    });
                    q.in_flight.insert(handle, (m, again));
                }
                let next_expiry = q.in_flight.values().map(|(_, at)| *at).min();
                for m in &out {
                    *s.received.entry(m.message_id.clone()).or_default() += 1;
                }
                (out, next_expiry)
            };
            if !out.is_empty() {
                self.changed.notify_waiters();
                return Ok(out);
            }
            if now >= deadline {
                return Ok(out);
            }
            let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        self.hang(Operation::ChangeMessageVisibilityBatch).await?;
        self.batch(queue_url, entries, false)
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        entries: &[BatchEntry],
    ) -> Result<Vec<EntryResult>, ApiError> {
        self.hang(Operation::DeleteMessageBatch).await?;
        self.batch(queue_url, entries, true)
    }

    async fn check_queue(&self, _queue_url: &str) -> Result<(), ApiError> {
        Ok(())
    }
}
