//! What the fake holds: preloaded tasks and messages, and the accounting that
//! checks every token is completed exactly once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tokio::sync::Notify;

use crate::faults::Faults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Open,
    Done,
}

/// Why a SendTask* call is refused.
pub(crate) enum Refusal {
    /// Already completed: `TaskTimedOut`, counted as a duplicate.
    Closed,
    /// Never handed out: `InvalidToken`, counted as unknown.
    Unknown,
}

pub(crate) struct Message {
    pub id: String,
    pub body: String,
    pub md5: String,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub visible: VecDeque<Message>,
    /// receipt handle -> (message, when it becomes visible again)
    pub in_flight: HashMap<String, (Message, Instant)>,
    pub next_handle: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub polls: AtomicU64,
    pub empty_polls: AtomicU64,
    pub handed_out: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub duplicates: AtomicU64,
    pub unknown_tokens: AtomicU64,
    pub receives: AtomicU64,
    pub deleted: AtomicU64,
    pub visibility_changes: AtomicU64,
    pub batch_calls: AtomicU64,
}

pub(crate) struct Backend {
    pub faults: Faults,
    pub poll_hold: Duration,
    pub tasks: Mutex<VecDeque<(String, String)>>,
    pub queue: Mutex<Queue>,
    tokens: Mutex<HashMap<String, Token>>,
    pub changed: Notify,
    pub counters: Counters,
    activity_total: usize,
    message_total: usize,
    completions: Mutex<(Option<Instant>, Option<Instant>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backend {
    pub fn new(
        activity_tasks: usize,
        messages: usize,
        poll_hold: Duration,
        faults: Faults,
    ) -> Self {
        let mut tokens = HashMap::with_capacity(activity_tasks + messages);
        let mut tasks = VecDeque::with_capacity(activity_tasks);
        for i in 0..activity_tasks {
            let token = format!("act-{i}");
            tokens.insert(token.clone(), Token::Open);
            tasks.push_back((token, format!("{{\"n\":{i}}}")));
        }
        let mut queue = Queue::default();
        for i in 0..messages {
            let token = format!("sqs-{i}");
            tokens.insert(token.clone(), Token::Open);
            let body = format!("{{\"taskToken\":\"{token}\",\"input\":{{\"n\":{i}}}}}");
            let md5 = format!("{:x}", Md5::digest(body.as_bytes()));
            queue.visible.push_back(Message {
                id: format!("msg-{i}"),
                body,
                md5,
            });
        }
        Self {
            faults,
            poll_hold,
            tasks: Mutex::new(tasks),
            queue: Mutex::new(queue),
            tokens: Mutex::new(tokens),
            changed: Notify::new(),
            counters: Counters::default(),
            activity_total: activity_tasks,
            message_total: messages,
            completions: Mutex::new((None, None)),
        }
    }

    /// Close a token (success or failure), exactly once.
    pub fn complete(&self, token: &str, success: bool) -> Result<(), Refusal> {
        let mut tokens = lock(&self.tokens);
        match tokens.get_mut(token) {
            Some(state @ Token::Open) => {
                *state = Token::Done;
                drop(tokens);
                let counter = if success {
                    &self.counters.succeeded
                } else {
                    &self.counters.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let mut c = lock(&self.completions);
                c.0.get_or_insert(now);
                c.1 = Some(now);
                Ok(())
            }
            Some(Token::Done) => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Closed)
            }
            None => {
                self.counters.unknown_tokens.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Unknown)
            }
        }
    }

    pub fn heartbeat(&self, token: &str) -> Result<(), Refusal> {
        match lock(&self.tokens).get(token) {
            Some(Token::Open) => {
                self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Some(Token::Done) => Err(Refusal::Closed),
            None => {
                self.counters.unknown_tokens.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Unknown)
            }
        }
    }

    pub fn stats(&self) -> serde_json::Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (first, last) = *lock(&self.completions);
        let q = lock(&self.queue);
        serde_json::json!({
            "activity_tasks_total": self.activity_total,
            "messages_total": self.message_total,
            "remaining_tasks": lock(&self.tasks).len(),
            "visible_messages": q.visible.len(),
            "in_flight_messages": q.in_flight.len(),
            "polls": get(&c.polls),
            "empty_polls": get(&c.empty_polls),
            "handed_out": get(&c.handed_out),
            "succeeded": get(&c.succeeded),
            "failed": get(&c.failed),
            "completed": get(&c.succeeded) + get(&c.failed),
            "heartbeats": get(&c.heartbeats),
            "duplicates": get(&c.duplicates),
            "unknown_tokens": get(&c.unknown_tokens),
            "receives": get(&c.receives),
            "deleted": get(&c.deleted),
            "visibility_changes": get(&c.visibility_changes),
            "batch_calls": get(&c.batch_calls),
            "first_to_last_completion_secs": match (first, last) {
                (Some(f), Some(l)) => (l - f).as_secs_f64(),
                _ => 0.0,
            },
        })
    }
}
