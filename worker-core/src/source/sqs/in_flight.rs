//! Tokens running in this process, and tokens it settled lately, for
//! at-least-once delivery.
//!
//! SQS may deliver a message twice (or a state may send the same token
//! twice). A second delivery of a token whose handler is running (its
//! report not sent yet) does not start another handler: its receipt handle
//! joins the running task's, so it is kept invisible and deleted with it.
//! Once the report is on its way, only the task's own messages join it; a
//! new message with the token is new work (LocalStack's `Retry` sends the
//! failed attempt's token again, right after that report). A delivery of a token this
//! process already settled (its report accepted, or the task found closed)
//! is dropped without running the handler when it is the *same message*
//! (same `MessageId`) coming back: that happens when a delete could not be
//! made before the message's visibility lapsed, or when SQS delivers a copy.
//!
//! A *new* message carrying a settled token runs: a state that sends its
//! token twice asked for two runs, and LocalStack sends a `Retry` attempt
//! of a `waitForTaskToken` state with the token of the failed attempt (AWS
//! issues a new token per attempt), so dropping it would time the retry out.
//!
//! Settled deliveries are remembered as 64-bit keyed hashes of token and
//! message id (not the tokens), for at least twice the visibility timeout
//! (a lapsed message is back within one), and at most [`SETTLED_CAPACITY`]
//! of them per queue.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The most settled tokens remembered per queue: about 5 MiB when full.
pub(crate) const SETTLED_CAPACITY: usize = 262_144;

/// One receipt of a message: its handle, until when it is known to be
/// invisible, and whether SQS said it is no longer ours.
#[derive(Debug)]
struct Receipt {
    message_id: String,
    handle: String,
    kept_until: Instant,
    /// Answered `ReceiptHandleIsInvalid` / `MessageNotInflight`: the message
    /// lapsed (and may have gone to another worker) or was deleted. Never
    /// renewed again.
    lost: bool,
}

/// One task's receipts: the message it came in, and any delivery of the
/// same token or message that joined it.
#[derive(Debug)]
pub(crate) struct Deliveries {
    receipts: Mutex<Vec<Receipt>>,
    /// A new message with the token arrived while this task's report was on
    /// its way: the service has moved on to a new attempt with the same
    /// token (LocalStack's `Retry`), so this task's attempt is closed, and a
    /// retry of its report would land on the new attempt.
    superseded: AtomicBool,
    /// The newest `SentTimestamp` of its messages (0: not known).
    newest_sent: AtomicU64,
}

impl Deliveries {
    pub fn new(message_id: &str, handle: &str, kept_until: Instant, sent: Option<u64>) -> Self {
        let d = Self {
            receipts: Mutex::new(Vec::new()),
            superseded: AtomicBool::new(false),
            newest_sent: AtomicU64::new(0),
        };
        d.push(message_id, handle, kept_until, sent);
        d
    }

    /// Whether a newer attempt with the same token arrived (see the field).
    pub fn superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    /// The handles still held (not answered as lost).
    pub fn held(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|r| !r.lost)
            .map(|r| r.handle.clone())
            .collect()
    }

    /// Whether any handle is still held.
    pub fn any_held(&self) -> bool {
        self.lock().iter().any(|r| !r.lost)
    }

    /// A change of `handle`'s visibility to end at `until` was accepted.
    pub fn kept(&self, handle: &str, until: Instant) {
        if let Some(r) = self.lock().iter_mut().find(|r| r.handle == handle) {
            r.kept_until = r.kept_until.max(until);
        }
    }

    /// SQS said `handle` is not ours any more; `true` the first time.
    pub fn lose(&self, handle: &str) -> bool {
        match self.lock().iter_mut().find(|r| r.handle == handle) {
            Some(r) if !r.lost => {
                r.lost = true;
                true
            }
            _ => false,
        }
    }

    /// Until when `handle` is known to be invisible.
    pub fn kept_until(&self, handle: &str) -> Option<Instant> {
        self.lock()
            .iter()
            .find(|r| r.handle == handle)
            .map(|r| r.kept_until)
    }

    fn message_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().iter().map(|r| r.message_id.clone()).collect();
        ids.dedup();
        ids
    }

    fn push(&self, message_id: &str, handle: &str, kept_until: Instant, sent: Option<u64>) {
        if let Some(sent) = sent {
            self.newest_sent.fetch_max(sent, Ordering::AcqRel);
        }
        self.lock().push(Receipt {
            message_id: message_id.to_owned(),
            handle: handle.to_owned(),
            kept_until,
            lost: false,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Receipt>> {
        self.receipts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) enum Claim {
    /// First delivery: run it.
    New(Arc<Deliveries>),
    /// Already running here: the handle was attached to the running task.
    Joined,
    /// This message was settled here lately: drop (delete) it, run nothing.
    Settled,
}

#[derive(Debug, Default)]
struct Tokens {
    /// Tasks whose report has not been sent yet, by token: another message
    /// with the token joins them (the same work, delivered twice).
    joinable: HashMap<String, Arc<Deliveries>>,
    /// Tasks whose report is on its way, by token.
    reporting: HashMap<String, Arc<Deliveries>>,
    /// Every task still holding its messages, by message id: the same
    /// message received again joins the task that holds it, whatever the
    /// task is doing (its new receipt handle is the one that deletes it).
    /// Keyed like `settled`: by a keyed hash of token and message id.
    by_message: HashMap<u64, Arc<Deliveries>>,
    settled: HashSet<u64>,
    /// Settled keys, oldest first, with when they may be forgotten.
    order: VecDeque<(Instant, u64)>,
}

#[derive(Debug)]
pub(crate) struct InFlight {
    tokens: Mutex<Tokens>,
    hasher: RandomState,
    remember: Duration,
    capacity: usize,
}

impl InFlight {
    /// Settled tokens are remembered for `remember`, at most `capacity` of them.
    pub fn new(remember: Duration, capacity: usize) -> Self {
        Self {
            tokens: Mutex::default(),
            hasher: RandomState::new(),
            remember,
            capacity,
        }
    }

    /// A message arrived with `token`; its receipt is invisible until `kept_until`.
    pub fn claim(
        &self,
        token: &str,
        message_id: &str,
        receipt_handle: &str,
        kept_until: Instant,
        sent: Option<u64>,
    ) -> Claim {
        let key = self.key(token, message_id);
        let mut t = self.lock();
        if let Some(existing) = t.by_message.get(&key) {
            existing.push(message_id, receipt_handle, kept_until, sent);
            return Claim::Joined;
        }
        if t.settled.contains(&key) {
            return Claim::Settled;
        }
        if let Some(existing) = t.joinable.get(token).cloned() {
            existing.push(message_id, receipt_handle, kept_until, sent);
            t.by_message.insert(key, existing);
            return Claim::Joined;
        }
        if let Some(reporting) = t.reporting.get(token).cloned() {
            // Only a message sent after the task's own is a newer attempt's:
            // an older one of the token coming back (kept after a refused
            // report, say) is the same work, and joins the task (the
            // simulation found a task deleted while open when it superseded
            // it instead; running it would run the token twice here).
            // Without timestamps, any other message is taken as newer.
            let newest = reporting.newest_sent.load(Ordering::Acquire);
            let newer = match sent {
                Some(sent) if newest > 0 => sent > newest,
                _ => true,
            };
            if !newer {
                reporting.push(message_id, receipt_handle, kept_until, sent);
                t.by_message.insert(key, reporting);
                return Claim::Joined;
            }
            reporting.superseded.store(true, Ordering::Release);
        }
        let deliveries = Arc::new(Deliveries::new(
            message_id,
            receipt_handle,
            kept_until,
            sent,
        ));
        t.joinable.insert(token.to_owned(), deliveries.clone());
        t.by_message.insert(key, deliveries.clone());
        Claim::New(deliveries)
    }

    /// The task of `deliveries` is about to report: from now on a new
    /// message with its token is new work (a state that sent its token
    /// again after this report, as LocalStack's `Retry` does), not a copy
    /// of this one. Redeliveries of its own messages still join it.
    pub fn reporting(&self, token: &str, deliveries: &Arc<Deliveries>) {
        let mut t = self.lock();
        if t.joinable
            .get(token)
            .is_some_and(|d| Arc::ptr_eq(d, deliveries))
        {
            t.joinable.remove(token);
        }
        t.reporting.insert(token.to_owned(), deliveries.clone());
    }

    /// The task of `deliveries` ended; `settled` if its messages must never
    /// run again here.
    pub fn finish(&self, token: &str, deliveries: &Arc<Deliveries>, settled: bool) {
        let now = Instant::now();
        let mut guard = self.lock();
        let t = &mut *guard;
        for map in [&mut t.joinable, &mut t.reporting] {
            if map.get(token).is_some_and(|d| Arc::ptr_eq(d, deliveries)) {
                map.remove(token);
            }
        }
        let ids = deliveries.message_ids();
        for message_id in &ids {
            let key = self.key(token, message_id);
            if t.by_message
                .get(&key)
                .is_some_and(|d| Arc::ptr_eq(d, deliveries))
            {
                t.by_message.remove(&key);
            }
        }
        if !settled {
            return;
        }
        for message_id in ids {
            while let Some(&(until, old)) = t.order.front() {
                if until > now && t.order.len() < self.capacity {
                    break;
                }
                t.order.pop_front();
                t.settled.remove(&old);
            }
            let key = self.key(token, &message_id);
            if t.settled.insert(key) {
                t.order.push_back((now + self.remember, key));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, token: &str, message_id: &str) -> u64 {
        self.hasher.hash_one((token, message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight() -> InFlight {
        InFlight::new(Duration::from_secs(120), 3)
    }

    fn claim(f: &InFlight, token: &str, id: &str, handle: &str) -> Claim {
        f.claim(
            token,
            id,
            handle,
            Instant::now() + Duration::from_secs(30),
            None,
        )
    }

    fn new(c: Claim) -> Arc<Deliveries> {
        match c {
            Claim::New(d) => d,
            _ => panic!("expected a new task"),
        }
    }

    #[test]
    fn a_second_delivery_joins_the_first() {
        let f = in_flight();
        let d = new(claim(&f, "T", "m1", "h1"));
        assert!(matches!(claim(&f, "T", "m2", "h2"), Claim::Joined));
        assert_eq!(d.held(), ["h1", "h2"]);
        f.finish("T", &d, false);
        assert!(matches!(claim(&f, "T", "m1", "h3"), Claim::New(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_message_is_dropped_until_forgotten() {
        let f = in_flight();
        let d = new(claim(&f, "T", "m1", "h1"));
        assert!(matches!(claim(&f, "T", "m2", "h2"), Claim::Joined));
        f.finish("T", &d, true);
        // Both messages that joined the task come back settled...
        assert!(matches!(claim(&f, "T", "m1", "h3"), Claim::Settled));
        assert!(matches!(claim(&f, "T", "m2", "h4"), Claim::Settled));
        // ...but a new message with the token runs (LocalStack's Retry).
        let again = new(claim(&f, "T", "m3", "h5"));
        f.finish("T", &again, false);
        // Forgotten after `remember`, when another token settles.
        tokio::time::advance(Duration::from_secs(121)).await;
        let u = new(claim(&f, "U", "m9", "h6"));
        f.finish("U", &u, true);
        assert!(matches!(claim(&f, "T", "m1", "h7"), Claim::New(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_capacity_settled_tokens_are_kept() {
        let f = in_flight();
        for t in ["a", "b", "c", "d"] {
            let d = new(claim(&f, t, "m", "h"));
            f.finish(t, &d, true);
        }
        assert!(
            matches!(claim(&f, "a", "m", "h"), Claim::New(_)),
            "oldest dropped"
        );
        for t in ["b", "c", "d"] {
            assert!(matches!(claim(&f, t, "m", "h"), Claim::Settled), "{t}");
        }
    }

    /// Issue 21, item 13: a message with the token that arrives once the
    /// report is on its way is new work (LocalStack's Retry), not a copy to
    /// be deleted with the reported task; the task's own message coming
    /// back still joins it.
    #[test]
    fn after_the_report_a_new_message_with_the_token_is_new_work() {
        let f = in_flight();
        let first = new(claim(&f, "T", "m1", "h1"));
        f.reporting("T", &first);
        assert!(!first.superseded());
        let second = new(claim(&f, "T", "m2", "h2"));
        assert!(first.superseded(), "the first task's attempt is over");
        assert!(matches!(claim(&f, "T", "m1", "h1b"), Claim::Joined));
        assert_eq!(first.held(), ["h1", "h1b"]);
        assert_eq!(second.held(), ["h2"]);
        // The first task's end leaves the second alone.
        f.finish("T", &first, true);
        assert!(matches!(claim(&f, "T", "m2", "h2b"), Claim::Joined));
        assert_eq!(second.held(), ["h2", "h2b"]);
    }

    /// Found by the simulation (issue 21 review): the task reporting holds
    /// the newer attempt's message; the older attempt's message, kept after
    /// a refused report, comes back. That is no newer attempt, and the
    /// reporting task must not stop retrying and delete its message.
    #[test]
    fn an_older_message_with_the_token_does_not_supersede_the_task() {
        let at = |s| Instant::now() + Duration::from_secs(s);
        let f = in_flight();
        let newer = new(f.claim("T", "m2", "h2", at(30), Some(2_000)));
        f.reporting("T", &newer);
        assert!(matches!(
            f.claim("T", "m1", "h1", at(30), Some(1_000)),
            Claim::Joined
        ));
        assert!(!newer.superseded(), "an older message superseded the task");
        assert_eq!(
            newer.held(),
            ["h2", "h1"],
            "the older message joins the task"
        );
        // The control: a message sent after the task's is a newer attempt.
        let _newest = new(f.claim("T", "m3", "h3", at(30), Some(3_000)));
        assert!(newer.superseded());
    }

    #[test]
    fn lost_handles_are_not_held() {
        let d = Deliveries::new("m1", "h1", Instant::now(), None);
        d.push("m1", "h2", Instant::now(), None);
        assert!(d.lose("h1"));
        assert!(!d.lose("h1"), "said once");
        assert_eq!(d.held(), ["h2"]);
        assert!(d.any_held());
        assert!(d.lose("h2"));
        assert!(!d.any_held());
    }
}
