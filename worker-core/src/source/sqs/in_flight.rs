//! Tokens running in this process, and tokens it settled lately, for
//! at-least-once delivery.
//!
//! SQS may deliver a message twice (or a state may send the same token
//! twice). A second delivery of a token whose handler is running does not
//! start another handler: its receipt handle joins the running task's, so
//! it is kept invisible and deleted with it. A delivery of a token this
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The most settled tokens remembered per queue: about 5 MiB when full.
pub(crate) const SETTLED_CAPACITY: usize = 262_144;

/// One running task's deliveries: (message id, receipt handle) pairs.
#[derive(Debug, Default)]
pub(crate) struct Deliveries(Mutex<Vec<(String, String)>>);

impl Deliveries {
    pub fn handles(&self) -> Vec<String> {
        self.lock().iter().map(|(_, h)| h.clone()).collect()
    }
    fn message_ids(&self) -> Vec<String> {
        self.lock().iter().map(|(id, _)| id.clone()).collect()
    }
    fn push(&self, message_id: &str, handle: &str) {
        self.lock().push((message_id.to_owned(), handle.to_owned()));
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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
    running: HashMap<String, Arc<Deliveries>>,
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

    pub fn claim(&self, token: &str, message_id: &str, receipt_handle: &str) -> Claim {
        let key = self.key(token, message_id);
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = t.running.get(token) {
            existing.push(message_id, receipt_handle);
            return Claim::Joined;
        }
        if t.settled.contains(&key) {
            return Claim::Settled;
        }
        let deliveries = Arc::new(Deliveries::default());
        deliveries.push(message_id, receipt_handle);
        t.running.insert(token.to_owned(), deliveries.clone());
        Claim::New(deliveries)
    }

    /// The task of `token` ended; `settled` if it must never run again here.
    pub fn finish(&self, token: &str, settled: bool) {
        let now = Instant::now();
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let Some(deliveries) = t.running.remove(token) else {
            return;
        };
        if !settled {
            return;
        }
        for message_id in deliveries.message_ids() {
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

    #[test]
    fn a_second_delivery_joins_the_first() {
        let f = in_flight();
        let Claim::New(d) = f.claim("T", "m1", "h1") else {
            panic!("first claim")
        };
        assert!(matches!(f.claim("T", "m2", "h2"), Claim::Joined));
        assert_eq!(d.handles(), ["h1", "h2"]);
        f.finish("T", false);
        assert!(matches!(f.claim("T", "m1", "h3"), Claim::New(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_message_is_dropped_until_forgotten() {
        let f = in_flight();
        assert!(matches!(f.claim("T", "m1", "h1"), Claim::New(_)));
        assert!(matches!(f.claim("T", "m2", "h2"), Claim::Joined));
        f.finish("T", true);
        // Both messages that joined the task come back settled...
        assert!(matches!(f.claim("T", "m1", "h3"), Claim::Settled));
        assert!(matches!(f.claim("T", "m2", "h4"), Claim::Settled));
        // ...but a new message with the token runs (LocalStack's Retry).
        assert!(matches!(f.claim("T", "m3", "h5"), Claim::New(_)));
        f.finish("T", false);
        // Forgotten after `remember`, when another token settles.
        tokio::time::advance(Duration::from_secs(121)).await;
        assert!(matches!(f.claim("U", "m9", "h6"), Claim::New(_)));
        f.finish("U", true);
        assert!(matches!(f.claim("T", "m1", "h7"), Claim::New(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_capacity_settled_tokens_are_kept() {
        let f = in_flight();
        for t in ["a", "b", "c", "d"] {
            assert!(matches!(f.claim(t, "m", "h"), Claim::New(_)));
            f.finish(t, true);
        }
        assert!(
            matches!(f.claim("a", "m", "h"), Claim::New(_)),
            "oldest dropped"
        );
        for t in ["b", "c", "d"] {
            assert!(matches!(f.claim(t, "m", "h"), Claim::Settled), "{t}");
        }
    }
}
