//! What the fake holds: preloaded tasks and messages, and the accounting that
//! checks every token is completed exactly once.
//!
//! In chaos mode it also plays the state machine around each task: a token
//! that sees no heartbeat or report for `heartbeat_timeout` after it was
//! handed out times out, and (as a `Retry` would) a new token for the same
//! logical task is scheduled, so a task lost by a killed worker is still
//! done in the end. Every token keeps a record (`GET /chaos`) that
//! `bench/chaos.py` checks against what the handlers did.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tokio::sync::Notify;

use crate::congestion::Calls;
use crate::faults::Faults;

/// Why a SendTask* call is refused.
pub(crate) enum Refusal {
    /// Already completed or timed out: `TaskTimedOut`, counted as a duplicate.
    Closed,
    /// Never handed out: `InvalidToken`, counted as unknown.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Activity,
    Sqs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Open,
    Done,
    TimedOut,
}

/// One token's life, for the accounting.
#[derive(Debug)]
struct TokenRec {
    source: Source,
    n: u64,
    attempt: u32,
    state: TokenState,
    /// When it was handed out or last heartbeated (chaos mode's clock).
    last_seen: Option<Instant>,
    /// The accepted report: success, and its output (or error name).
    report: Option<(bool, String)>,
    /// Report calls refused because the token was closed.
    refused: u32,
    /// When it timed out, in milliseconds since the Unix epoch.
    timed_out_at_ms: Option<u128>,
}

#[derive(Clone)]
pub(crate) struct Message {
    pub id: String,
    pub token: String,
    pub body: String,
    pub md5: String,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub visible: VecDeque<Message>,
    /// receipt handle -> (message, when it becomes visible again)
    pub in_flight: HashMap<String, (Message, Instant)>,
    pub next_handle: u64,
    /// In-flight messages whose visibility ran out (nobody renewed it).
    pub lapses: u64,
    /// Copies of handed-out messages, handed out again from when (`--duplicate-rate`).
    pub copies: Vec<(Message, Instant)>,
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
    pub timed_out: AtomicU64,
    pub faults: AtomicU64,
    /// SQS messages handed out a second time (`--duplicate-rate`).
    pub duplicates_injected: AtomicU64,
}

/// Chaos mode's settings.
#[derive(Debug, Clone)]
pub(crate) struct Chaos {
    /// A handed-out token with no heartbeat or report for this long times out.
    pub heartbeat_timeout: Duration,
    /// Mark every task's input `"block": true` (the handler then sits in
    /// `spawn_blocking`): for the second-signal check.
    pub blocking: bool,
}

pub(crate) struct Backend {
    /// Messages carry a durable callback id instead of a task token.
    pub callback_ids: bool,
    /// `FAKE_TRACE=FILE`: every SQS message's and token's events, one line each.
    pub trace: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    pub faults: Faults,
    /// `--bucket`s, and every call counted by operation.
    pub calls: Calls,
    /// DynamoDB's tables (the task ledger's).
    pub tables: crate::dynamodb::Tables,
    pub poll_hold: Duration,
    pub tasks: Mutex<VecDeque<(String, String)>>,
    pub queue: Mutex<Queue>,
    tokens: Mutex<HashMap<String, TokenRec>>,
    pub changed: Notify,
    pub counters: Counters,
    pub chaos: Option<Chaos>,
    activity_total: usize,
    message_total: usize,
    completions: Mutex<(Option<Instant>, Option<Instant>)>,
    next_message: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token as a durable callback id (`[A-Za-z0-9+/]+`): `sqs-7.1` is
/// `sqs+7/1`. The messages carry it instead of the token with
/// `--callback-ids`; the callback routes turn it back.
pub(crate) fn callback_id(token: &str) -> String {
    token.replace('-', "+").replace('.', "/")
}

/// The token a callback id stands for.
pub(crate) fn token_of_callback_id(id: &str) -> String {
    id.replace('+', "-").replace('/', ".")
}

fn token_name(source: Source, n: u64, attempt: u32) -> String {
    let prefix = match source {
        Source::Activity => "act",
        Source::Sqs => "sqs",
    };
    if attempt == 0 {
        format!("{prefix}-{n}")
    } else {
        format!("{prefix}-{n}.{attempt}")
    }
}

impl Backend {
    pub fn new(
        activity_tasks: usize,
        messages: usize,
        preload: bool,
        poll_hold: Duration,
        faults: Faults,
        chaos: Option<Chaos>,
        callback_ids: bool,
    ) -> Self {
        let backend = Self {
            callback_ids,
            calls: Calls::default(),
            tables: Default::default(),
            trace: std::env::var_os("FAKE_TRACE")
                .and_then(|p| std::fs::File::create(p).ok())
                .map(|f| Mutex::new(std::io::BufWriter::new(f))),
            faults,
            poll_hold,
            tasks: Mutex::new(VecDeque::with_capacity(activity_tasks)),
            queue: Mutex::new(Queue::default()),
            tokens: Mutex::new(HashMap::with_capacity(activity_tasks + messages)),
            changed: Notify::new(),
            counters: Counters::default(),
            chaos,
            activity_total: activity_tasks,
            message_total: messages,
            completions: Mutex::new((None, None)),
            next_message: AtomicU64::new(0),
        };
        if preload {
            for n in 0..activity_tasks as u64 {
                backend.schedule(Source::Activity, n, 0);
            }
            for n in 0..messages as u64 {
                backend.schedule(Source::Sqs, n, 0);
            }
        }
        backend
    }

    /// With `--bucket`s (every call is counted either way).
    pub fn with_calls(mut self, calls: Calls) -> Self {
        self.calls = calls;
        self
    }

    /// `--rate-per-sec`: make the tasks and messages available at `rate`
    /// per second each, every 10 ms, from now on.
    pub async fn feed(&self, rate: u32) {
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let (mut activities, mut messages) = (0u64, 0u64);
        let (activity_total, message_total) =
            (self.activity_total as u64, self.message_total as u64);
        while activities < activity_total || messages < message_total {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            while activities < due.min(activity_total) {
                self.schedule(Source::Activity, activities, 0);
                activities += 1;
            }
            while messages < due.min(message_total) {
                self.schedule(Source::Sqs, messages, 0);
                messages += 1;
            }
        }
    }

    /// The input of logical task `n`: `{"n": n}`, and in chaos mode what the
    /// chaos handler does with it (how long it works, whether it fails).
    fn input(&self, source: Source, n: u64, attempt: u32) -> String {
        match &self.chaos {
            None => format!("{{\"n\":{n}}}"),
            Some(c) => {
                let src = match source {
                    Source::Activity => "activity",
                    Source::Sqs => "sqs",
                };
                // Mostly quick; one in a hundred runs 3 s, past a heartbeat
                // interval but far short of the visibility timeout and of
                // the state's heartbeat timeout; one in ten fails by design.
                let sleep_ms = if n % 100 == 7 { 3000 } else { n % 20 };
                let fail = n % 10 == 3;
                format!(
                    "{{\"source\":\"{src}\",\"n\":{n},\"attempt\":{attempt},\"sleep_ms\":{sleep_ms},\"fail\":{fail},\"block\":{}}}",
                    c.blocking
                )
            }
        }
    }

    /// Put a token for logical task `n` where a worker finds it.
    fn schedule(&self, source: Source, n: u64, attempt: u32) {
        let token = token_name(source, n, attempt);
        let input = self.input(source, n, attempt);
        lock(&self.tokens).insert(
            token.clone(),
            TokenRec {
                source,
                n,
                attempt,
                state: TokenState::Open,
                last_seen: None,
                report: None,
                refused: 0,
                timed_out_at_ms: None,
            },
        );
        match source {
            Source::Activity => lock(&self.tasks).push_back((token, input)),
            Source::Sqs => {
                let body = if self.callback_ids {
                    let id = callback_id(&token);
                    format!("{{\"callbackId\":\"{id}\",\"input\":{input}}}")
                } else {
                    format!("{{\"taskToken\":\"{token}\",\"input\":{input}}}")
                };
                let md5 = format!("{:x}", Md5::digest(body.as_bytes()));
                let id = self.next_message.fetch_add(1, Ordering::Relaxed);
                lock(&self.queue).visible.push_back(Message {
                    id: format!("msg-{id}"),
                    token,
                    body,
                    md5,
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// Record an event when tracing (`FAKE_TRACE`).
    pub fn trace(&self, what: std::fmt::Arguments<'_>) {
        if let Some(t) = &self.trace {
            use std::io::Write;
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let mut t = lock(t);
            let _ = writeln!(t, "{ms} {what}");
            let _ = t.flush();
        }
    }

    /// A token was handed to a worker: its heartbeat clock starts.
    pub fn handed_out(&self, token: &str) {
        if self.chaos.is_none() {
            return;
        }
        self.trace(format_args!("handed_out {token}"));
        // Like the state's clock, it starts once: receiving a message again
        // does not keep its task alive, only a heartbeat does.
        if let Some(rec) = lock(&self.tokens).get_mut(token)
            && rec.state == TokenState::Open
            && rec.last_seen.is_none()
        {
            rec.last_seen = Some(Instant::now());
        }
    }

    /// Close a token (success or failure), exactly once. `body` is the output
    /// of a success, the error name of a failure.
    pub fn complete(&self, token: &str, success: bool, body: &str) -> Result<(), Refusal> {
        self.trace(format_args!("report {token} {success}"));
        let mut tokens = lock(&self.tokens);
        match tokens.get_mut(token) {
            Some(rec) if rec.state == TokenState::Open => {
                rec.state = TokenState::Done;
                if self.chaos.is_some() {
                    rec.report = Some((success, body.to_owned()));
                }
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
            Some(rec) => {
                rec.refused += 1;
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
        self.trace(format_args!("heartbeat {token}"));
        match lock(&self.tokens).get_mut(token) {
            Some(rec) if rec.state == TokenState::Open => {
                if rec.last_seen.is_some() {
                    rec.last_seen = Some(Instant::now());
                }
                self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Some(_) => Err(Refusal::Closed),
            None => {
                self.counters.unknown_tokens.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Unknown)
            }
        }
    }

    /// Chaos mode: time out tokens nobody kept alive, and schedule their
    /// retries. Runs until the process ends.
    pub async fn sweep(&self) {
        let Some(chaos) = &self.chaos else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut retries = Vec::new();
            for rec in lock(&self.tokens).values_mut() {
                if rec.state == TokenState::Open
                    && rec
                        .last_seen
                        .is_some_and(|seen| now - seen > chaos.heartbeat_timeout)
                {
                    rec.state = TokenState::TimedOut;
                    rec.timed_out_at_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_millis());
                    retries.push((rec.source, rec.n, rec.attempt + 1));
                }
            }
            for (source, n, attempt) in &retries {
                self.trace(format_args!(
                    "timed_out {source:?} {n} attempt {}",
                    attempt - 1
                ));
            }
            for (source, n, attempt) in retries {
                self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                self.schedule(source, n, attempt);
            }
        }
    }

    /// Every token's record, for `bench/chaos.py`.
    pub fn records(&self) -> serde_json::Value {
        let tokens = lock(&self.tokens);
        let list: Vec<serde_json::Value> = tokens
            .iter()
            .map(|(token, r)| {
                serde_json::json!({
                    "token": token,
                    "source": match r.source { Source::Activity => "activity", Source::Sqs => "sqs" },
                    "n": r.n,
                    "attempt": r.attempt,
                    "state": match r.state {
                        TokenState::Open => "open",
                        TokenState::Done => "done",
                        TokenState::TimedOut => "timed_out",
                    },
                    "success": r.report.as_ref().map(|(ok, _)| *ok),
                    "body": r.report.as_ref().map(|(_, b)| b.as_str()),
                    "refused": r.refused,
                    "timed_out_at_ms": r.timed_out_at_ms.map(|ms| ms as u64),
                })
            })
            .collect();
        serde_json::json!({ "tokens": list })
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
            "lapses": q.lapses,
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
            "timed_out": get(&c.timed_out),
            "faults": get(&c.faults),
            "duplicates_injected": get(&c.duplicates_injected),
            "calls": self.calls.counts(),
            "first_to_last_completion_secs": match (first, last) {
                (Some(f), Some(l)) => (l - f).as_secs_f64(),
                _ => 0.0,
            },
        })
    }
}
