//! The simulated services, with their own rules, and the history of every
//! call they answered.
//!
//! - Step Functions: each task attempt has a token (AWS: a new one per
//!   attempt; LocalStack's `Retry`: the same one again). An open token
//!   times out when no heartbeat came for the state's `HeartbeatSeconds` or
//!   its `TimeoutSeconds` ran out; a closed one answers `TaskTimedOut`. A
//!   token longer than 2,048 characters is refused with
//!   `ValidationException` (quoting it, as AWS does). Failed and timed-out
//!   attempts are retried up to the binding's attempts.
//! - SQS: visibility deadlines (a lapsed message is visible again; only its
//!   newest receipt handle works; a visibility change on a visible message
//!   is `MessageNotInflight`), FIFO group locks (no message of a group with
//!   one in flight is handed out), copies of messages in flight (at least
//!   once), the 12-hour ceiling.
//! - Lambda durable callbacks: the same rules as tokens, with
//!   `CallbackTimeoutException`; `ResourceNotFoundException` for every
//!   call while the worker is "pointed at the wrong region".
//!
//! Everything random comes from the world's one seeded generator, and
//! everything happens on tokio's paused clock: a seed replays exactly.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use sfn_worker_core::aws::fake::FakeLedger;
use sfn_worker_core::aws::{ApiError, ApiErrorKind};

use crate::scenario::{Scenario, Source};

/// Sim time: since the seed started.
pub type Time = Duration;

/// Who did something.
pub type WorkerId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A task attempt began (its token issued, its message sent).
    Scheduled {
        exec: usize,
        attempt: u32,
        token: String,
    },
    /// The task ledger answered a worker's claim of `token`'s task:
    /// `held_elsewhere`, another worker holds it (a message is then hidden
    /// until that claim would end, an activity task left to its holder: the
    /// worker lets it go).
    ClaimAnswered {
        token: String,
        worker: WorkerId,
        held_elsewhere: bool,
    },
    /// A worker got the task: a poll's answer, or a received message.
    Handed {
        exec: usize,
        attempt: u32,
        token: String,
        worker: WorkerId,
        handle: Option<String>,
    },
    /// A receive whose answer was lost: the message is invisible, nobody has it.
    HandedToNobody {
        exec: usize,
        attempt: u32,
    },
    /// A heartbeat call arrived (whatever its answer).
    HeartbeatCall {
        token: String,
        worker: WorkerId,
    },
    HeartbeatAccepted {
        token: String,
        worker: WorkerId,
    },
    /// A call about `token` from `worker` was answered "closed".
    ToldClosed {
        token: String,
        worker: WorkerId,
    },
    /// A report was refused for a reason that is not "closed".
    ReportRefused {
        token: String,
        worker: WorkerId,
        code: String,
    },
    ReportAccepted {
        exec: usize,
        attempt: u32,
        token: String,
        worker: WorkerId,
        success: bool,
        error: String,
        cause: String,
    },
    /// The service closed an attempt by itself.
    TimedOut {
        exec: usize,
        attempt: u32,
        token: String,
        heartbeat: bool,
    },
    /// A visibility change (secs > 0) for `handle` arrived.
    RenewCall {
        handle: String,
        worker: WorkerId,
    },
    /// The worker got the answer that `handle` (of a visibility change,
    /// secs > 0) is not its receipt any more.
    RenewRefused {
        handle: String,
        worker: WorkerId,
    },
    /// A visibility change to 0 for `handle` arrived (whatever its answer).
    ReleaseCall {
        handle: String,
        worker: WorkerId,
    },
    /// A visibility change to 0 for `handle` was carried out.
    Released {
        handle: String,
        worker: WorkerId,
    },
    /// A delete call for `handle` arrived.
    DeleteCall {
        handle: String,
        worker: WorkerId,
    },
    /// The message went: `open` if its task attempt was still open.
    Deleted {
        exec: usize,
        attempt: u32,
        handle: String,
        worker: WorkerId,
        open: bool,
        bogus: bool,
    },
    /// A receipt handle stopped working (its message was received again,
    /// or released, or lapsed while this was a copy).
    Invalidated {
        handle: String,
    },
    /// A message's visibility ran out while `holder` had it.
    Lapsed {
        exec: usize,
        attempt: u32,
        handle: String,
        holder: WorkerId,
    },
    /// A handler began (or ended) a run of a task attempt.
    RunStart {
        run: usize,
        exec: usize,
        attempt: u32,
        worker: WorkerId,
        bogus: bool,
    },
    RunEnd {
        run: usize,
        how: RunEnd,
    },
    Sigterm {
        worker: WorkerId,
    },
    Killed {
        worker: WorkerId,
    },
    Exited {
        worker: WorkerId,
    },
    Started {
        worker: WorkerId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Ok,
    Err,
    Panic,
    Cancelled,
    /// The worker dropped the handler (abandoned at its cancel grace).
    Dropped,
}

#[derive(Debug, Clone)]
struct Token {
    exec: usize,
    attempt: u32,
    open: bool,
    scheduled: Time,
    last_beat: Time,
}

#[derive(Debug, Clone)]
enum MsgState {
    Visible,
    InFlight { until: Time },
    Deleted,
}

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    queue: usize,
    body: String,
    group: Option<u32>,
    exec: usize,
    attempt: u32,
    token: String,
    bogus: bool,
    state: MsgState,
    /// The newest receipt handle, and who got it.
    handle: Option<(String, WorkerId)>,
    /// Copies handed out while in flight: also valid until the message goes.
    copies: Vec<(String, WorkerId)>,
    first_received: Option<Time>,
    /// `SentTimestamp`: milliseconds since the world began.
    sent_ms: u64,
}

#[derive(Debug, Clone)]
struct Execution {
    binding: usize,
    attempt: u32,
    token: String,
    done: bool,
}

pub struct State {
    pub rng: StdRng,
    pub history: Vec<(Time, Event)>,
    tokens: BTreeMap<String, Token>,
    activity_queue: BTreeMap<usize, VecDeque<String>>,
    msgs: Vec<Msg>,
    executions: Vec<Execution>,
    /// Attempts to start: (when, execution).
    pending: Vec<(Time, usize)>,
    next_handle: u64,
    handle_index: BTreeMap<String, usize>,
    next_run: usize,
    pub alive: Vec<bool>,
}

pub struct World {
    state: Mutex<State>,
    pub changed: Notify,
    pub t0: Instant,
    pub scenario: Arc<Scenario>,
    /// Woken when a worker is killed.
    pub killed: Notify,
    /// The fleet's task ledger, one table for every worker of the seed.
    pub ledger: Arc<FakeLedger>,
}

pub const MAX_TOKEN_CHARS: usize = 2048;

impl World {
    pub fn new(scenario: Arc<Scenario>) -> Arc<Self> {
        let executions = scenario
            .tasks
            .iter()
            .map(|t| Execution {
                binding: t.binding,
                attempt: 0,
                token: String::new(),
                done: false,
            })
            .collect();
        let pending = scenario
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.arrival, i))
            .collect();
        Arc::new(World {
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(scenario.seed),
                history: Vec::new(),
                tokens: BTreeMap::new(),
                activity_queue: BTreeMap::new(),
                msgs: Vec::new(),
                executions,
                pending,
                next_handle: 0,
                handle_index: BTreeMap::new(),
                next_run: 0,
                alive: Vec::new(),
            }),
            changed: Notify::new(),
            t0: Instant::now(),
            scenario,
            killed: Notify::new(),
            ledger: Arc::new(FakeLedger::new()),
        })
    }

    pub fn now(&self) -> Time {
        Instant::now() - self.t0
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, s: &mut State, e: Event) {
        s.history.push((self.now(), e));
    }

    pub fn is_alive(&self, w: WorkerId) -> bool {
        self.lock().alive.get(w).copied().unwrap_or(false)
    }

    /// Let time pass for the services (the ticker).
    pub fn tick(&self) {
        let mut s = self.lock();
        self.sweep(&mut s);
    }

    pub fn all_done(&self) -> bool {
        let s = self.lock();
        s.pending.is_empty() && s.executions.iter().all(|e| e.done)
    }

    /// Time passes: start attempts that are due, time tokens out, let
    /// messages lapse. Called on every call and by the ticker.
    pub fn sweep(&self, s: &mut State) {
        let now = self.now();
        let sc = &self.scenario;
        // Tokens.
        let mut closed = Vec::new();
        for (token, t) in s.tokens.iter_mut().filter(|(_, t)| t.open) {
            let b = &sc.bindings[sc.tasks[t.exec].binding];
            let beat = b.state_heartbeat.map(|h| (t.last_beat + h, true));
            let whole = b.state_timeout.map(|d| (t.scheduled + d, false));
            let due = [beat, whole]
                .into_iter()
                .flatten()
                .min_by_key(|(at, _)| *at);
            if let Some((at, heartbeat)) = due
                && at <= now
            {
                t.open = false;
                closed.push((at, token.clone(), t.exec, t.attempt, heartbeat));
            }
        }
        closed.sort();
        for (at, token, exec, attempt, heartbeat) in closed {
            s.history.push((
                at,
                Event::TimedOut {
                    exec,
                    attempt,
                    token,
                    heartbeat,
                },
            ));
            self.retry_or_end(s, exec, at);
        }
        // Messages.
        let mut lapsed = Vec::new();
        let mut invalid = Vec::new();
        for m in s.msgs.iter_mut() {
            if let MsgState::InFlight { until } = m.state
                && until <= now
            {
                m.state = MsgState::Visible;
                for (h, _) in m.copies.drain(..) {
                    invalid.push((until, h));
                }
                if let Some((h, w)) = &m.handle {
                    lapsed.push((until, m.exec, m.attempt, h.clone(), *w));
                }
            }
        }
        for (at, exec, attempt, handle, holder) in lapsed {
            s.history.push((
                at,
                Event::Lapsed {
                    exec,
                    attempt,
                    handle,
                    holder,
                },
            ));
        }
        for (at, handle) in invalid {
            s.history.push((at, Event::Invalidated { handle }));
        }
        // Attempts due.
        let mut due: Vec<(Time, usize)> = Vec::new();
        s.pending.retain(|&(at, exec)| {
            if at <= now {
                due.push((at, exec));
                false
            } else {
                true
            }
        });
        due.sort();
        for (_, exec) in due {
            self.start_attempt(s, exec);
        }
    }

    /// The attempt of `exec` ended without success at `at`: retry or end.
    fn retry_or_end(&self, s: &mut State, exec: usize, at: Time) {
        let sc = &self.scenario;
        let e = &s.executions[exec];
        if e.attempt >= sc.bindings[e.binding].max_attempts {
            s.executions[exec].done = true;
        } else {
            s.pending.push((at + Duration::from_secs(1), exec));
        }
    }

    fn start_attempt(&self, s: &mut State, exec: usize) {
        let sc = self.scenario.clone();
        let spec = &sc.tasks[exec];
        let b = &sc.bindings[spec.binding];
        s.executions[exec].attempt += 1;
        let attempt = s.executions[exec].attempt;
        let previous = s.executions[exec].token.clone();
        // LocalStack resends a `waitForTaskToken` state's token on Retry;
        // activities and durable callbacks get a new one.
        let reuse = sc.same_token_on_retry
            && matches!(b.source, Source::Queue { .. })
            && !previous.is_empty();
        let token = if reuse {
            previous
        } else if b.source == Source::Durable {
            // The base64 alphabet, 1 to 1,024 characters.
            format!(
                "Q2FsbGJhY2s{:08}x{exec}x{attempt}AAAA+/{}==",
                sc.seed % 100_000_000,
                s.rng.random::<u32>()
            )
        } else if spec.bogus_token {
            format!("BOGUS{exec}x{attempt}{}", "A".repeat(MAX_TOKEN_CHARS))
        } else {
            format!(
                "AAAAKgAAAAIAAAAAAAAAAf{exec}x{attempt}x{:016x}+secret/TOKEN=material{:08x}",
                s.rng.random::<u64>(),
                s.rng.random::<u32>()
            )
        };
        s.executions[exec].token = token.clone();
        let now = self.now();
        if !spec.bogus_token {
            s.tokens.insert(
                token.clone(),
                Token {
                    exec,
                    attempt,
                    open: true,
                    scheduled: now,
                    last_beat: now,
                },
            );
        }
        self.record(
            s,
            Event::Scheduled {
                exec,
                attempt,
                token: token.clone(),
            },
        );
        let input = serde_json::json!({ "exec": exec, "attempt": attempt });
        match b.source {
            Source::Activity => {
                s.activity_queue
                    .entry(spec.binding)
                    .or_default()
                    .push_back(token);
            }
            Source::Queue { fifo } => {
                let body = serde_json::json!({ "taskToken": token, "input": input }).to_string();
                let id = format!("m{}", s.msgs.len());
                s.msgs.push(Msg {
                    id,
                    queue: spec.binding,
                    body,
                    group: fifo.then_some(spec.group),
                    exec,
                    attempt,
                    token,
                    bogus: spec.bogus_token,
                    state: MsgState::Visible,
                    handle: None,
                    copies: Vec::new(),
                    first_received: None,
                    sent_ms: now.as_millis() as u64,
                });
            }
            Source::Durable => {
                let body = serde_json::json!({ "callbackId": token, "input": input }).to_string();
                let id = format!("m{}", s.msgs.len());
                s.msgs.push(Msg {
                    id,
                    queue: spec.binding,
                    body,
                    group: None,
                    exec,
                    attempt,
                    token,
                    bogus: false,
                    state: MsgState::Visible,
                    handle: None,
                    copies: Vec::new(),
                    first_received: None,
                    sent_ms: now.as_millis() as u64,
                });
            }
        }
        if spec.bogus_token {
            // Nothing the service knows can end it: it ends with the run of
            // the seed (its message is deleted or left as malformed).
            s.executions[exec].done = true;
        }
        self.changed.notify_waiters();
    }

    // ---- Step Functions and Lambda ----

    /// Take the next activity task of `binding`, if any.
    pub fn take_activity_task(&self, binding: usize) -> Option<(String, String)> {
        let mut s = self.lock();
        self.sweep(&mut s);
        let token = s.activity_queue.get_mut(&binding)?.pop_front()?;
        let t = s.tokens.get(&token)?;
        let input = serde_json::json!({ "exec": t.exec, "attempt": t.attempt }).to_string();
        Some((token, input))
    }

    pub fn handed_activity(&self, token: &str, worker: Option<WorkerId>) {
        let mut s = self.lock();
        let Some(t) = s.tokens.get(token).cloned() else {
            return;
        };
        let e = match worker {
            Some(worker) => Event::Handed {
                exec: t.exec,
                attempt: t.attempt,
                token: token.to_owned(),
                worker,
                handle: None,
            },
            None => Event::HandedToNobody {
                exec: t.exec,
                attempt: t.attempt,
            },
        };
        self.record(&mut s, e);
    }

    /// What the service makes of a call about `token`, before it acts:
    /// refused for its shape, unknown, or closed.
    fn check_token(
        &self,
        s: &mut State,
        token: &str,
        worker: WorkerId,
        durable: bool,
    ) -> Result<(), ApiError> {
        if durable {
            if let Some(until) = self.scenario.lambda_misdirected_until
                && self.now() < until
            {
                return Err(ApiError::new(
                    ApiErrorKind::CallbackNotFound,
                    "ResourceNotFoundException",
                    "Callback not found",
                ));
            }
        } else if token.chars().count() > MAX_TOKEN_CHARS {
            // As AWS words it: the value itself is in the message.
            return Err(ApiError::service(
                "ValidationException",
                400,
                format!(
                    "1 validation error detected: Value '{token}' at 'taskToken' failed to satisfy constraint: Member must have length less than or equal to 2048"
                ),
            ));
        }
        match s.tokens.get(token) {
            None => Err(ApiError::service("InvalidToken", 400, "Invalid Token")),
            Some(t) if !t.open => {
                self.record(
                    s,
                    Event::ToldClosed {
                        token: token.to_owned(),
                        worker,
                    },
                );
                Err(if durable {
                    ApiError::service("CallbackTimeoutException", 400, "callback timed out")
                } else {
                    ApiError::service("TaskTimedOut", 400, "Task Timed Out")
                })
            }
            Some(_) => Ok(()),
        }
    }

    pub fn heartbeat(&self, token: &str, worker: WorkerId, durable: bool) -> Result<(), ApiError> {
        let mut s = self.lock();
        self.sweep(&mut s);
        self.check_token(&mut s, token, worker, durable)?;
        let now = self.now();
        if let Some(t) = s.tokens.get_mut(token) {
            t.last_beat = now;
        }
        self.record(
            &mut s,
            Event::HeartbeatAccepted {
                token: token.to_owned(),
                worker,
            },
        );
        Ok(())
    }

    pub fn report(
        &self,
        token: &str,
        worker: WorkerId,
        durable: bool,
        success: bool,
        error: &str,
        cause: &str,
    ) -> Result<(), ApiError> {
        let mut s = self.lock();
        self.sweep(&mut s);
        let refused = |s: &mut State, e: ApiError| {
            s.history.push((
                self.now(),
                Event::ReportRefused {
                    token: token.to_owned(),
                    worker,
                    code: e.code.clone(),
                },
            ));
            Err(e)
        };
        match self.check_token(&mut s, token, worker, durable) {
            Err(e) if e.kind == ApiErrorKind::TaskClosed => return Err(e),
            Err(e) => return refused(&mut s, e),
            Ok(()) => {}
        }
        if let Some(until) = self.scenario.kms_refuses_until
            && !durable
            && self.now() < until
            && (success || !(error.is_empty() && cause.is_empty()))
        {
            return refused(
                &mut s,
                ApiError::service("KmsAccessDeniedException", 400, "the key refuses"),
            );
        }
        let Some(t) = s.tokens.get_mut(token) else {
            return Err(ApiError::service("InvalidToken", 400, "Invalid Token"));
        };
        t.open = false;
        let (exec, attempt) = (t.exec, t.attempt);
        self.record(
            &mut s,
            Event::ReportAccepted {
                exec,
                attempt,
                token: token.to_owned(),
                worker,
                success,
                error: error.to_owned(),
                cause: cause.to_owned(),
            },
        );
        if success {
            s.executions[exec].done = true;
        } else {
            let now = self.now();
            self.retry_or_end(&mut s, exec, now);
        }
        self.changed.notify_waiters();
        Ok(())
    }

    // ---- SQS ----

    /// Hand out up to `max` messages of queue `q` (`worker`: who gets the
    /// answer; `None`: the answer is lost).
    pub fn receive(
        &self,
        q: usize,
        max: usize,
        visibility: u64,
        worker: Option<WorkerId>,
    ) -> Vec<(String, String, String, Option<String>, u64)> {
        let mut s = self.lock();
        self.sweep(&mut s);
        let now = self.now();
        let fifo = matches!(
            self.scenario.bindings[q].source,
            Source::Queue { fifo: true }
        );
        let dup = self.scenario.faults.duplicate;
        let mut out = Vec::new();
        let locked: Vec<u32> = s
            .msgs
            .iter()
            .filter(|m| m.queue == q && matches!(m.state, MsgState::InFlight { .. }))
            .filter_map(|m| m.group)
            .collect();
        // A copy of a message in flight (standard queues: at least once).
        if !fifo && dup > 0.0 && s.rng.random_bool(dup) {
            let in_flight: Vec<usize> = (0..s.msgs.len())
                .filter(|&i| {
                    s.msgs[i].queue == q && matches!(s.msgs[i].state, MsgState::InFlight { .. })
                })
                .collect();
            if !in_flight.is_empty() {
                let i = in_flight[s.rng.random_range(0..in_flight.len())];
                s.next_handle += 1;
                let handle = format!("rh{}-{}-copy", s.next_handle, s.msgs[i].id);
                s.handle_index.insert(handle.clone(), i);
                if let Some(w) = worker {
                    s.msgs[i].copies.push((handle.clone(), w));
                }
                let m = &s.msgs[i];
                out.push((
                    m.id.clone(),
                    handle,
                    m.body.clone(),
                    m.group.map(|g| g.to_string()),
                    m.sent_ms,
                ));
            }
        }
        for i in 0..s.msgs.len() {
            if out.len() >= max {
                break;
            }
            let m = &s.msgs[i];
            if m.queue != q || !matches!(m.state, MsgState::Visible) {
                continue;
            }
            // A group with a message in flight hands out nothing; several
            // visible ones of a free group go out together, in order.
            if m.group.is_some_and(|g| locked.contains(&g)) {
                continue;
            }
            s.next_handle += 1;
            let handle = format!("rh{}-{}", s.next_handle, s.msgs[i].id);
            s.handle_index.insert(handle.clone(), i);
            let m = &mut s.msgs[i];
            m.state = MsgState::InFlight {
                until: now + Duration::from_secs(visibility),
            };
            let mut stale: Vec<String> = m.copies.drain(..).map(|(h, _)| h).collect();
            stale.extend(m.handle.take().map(|(h, _)| h));
            for h in stale {
                s.history.push((now, Event::Invalidated { handle: h }));
            }
            let m = &mut s.msgs[i];
            m.first_received.get_or_insert(now);
            m.handle = worker.map(|w| (handle.clone(), w));
            out.push((
                m.id.clone(),
                handle,
                m.body.clone(),
                m.group.map(|g| g.to_string()),
                m.sent_ms,
            ));
        }
        if worker.is_none() {
            let lost: Vec<(usize, u32)> = out
                .iter()
                .filter_map(|(id, _, _, _, _)| {
                    s.msgs
                        .iter()
                        .find(|m| &m.id == id)
                        .map(|m| (m.exec, m.attempt))
                })
                .collect();
            for (exec, attempt) in lost {
                self.record(&mut s, Event::HandedToNobody { exec, attempt });
            }
        }
        out
    }

    /// The message a receipt handle belongs to, and whether the handle
    /// still works (the newest, or a copy handed out since).
    fn find_handle<'a>(s: &'a mut State, handle: &str) -> Option<(&'a mut Msg, bool)> {
        let i = *s.handle_index.get(handle)?;
        let m = &mut s.msgs[i];
        let current = m.handle.as_ref().is_some_and(|(h, _)| h == handle)
            || m.copies.iter().any(|(h, _)| h == handle);
        Some((m, current))
    }

    /// The answer of a receive reached `worker` (maybe late): it holds
    /// these messages from now on.
    pub fn handed(&self, handles: &[String], worker: WorkerId) {
        let mut s = self.lock();
        for h in handles {
            let Some(&i) = s.handle_index.get(h) else {
                continue;
            };
            let m = &s.msgs[i];
            let e = Event::Handed {
                exec: m.exec,
                attempt: m.attempt,
                token: m.token.clone(),
                worker,
                handle: Some(h.clone()),
            };
            self.record(&mut s, e);
        }
    }

    /// `ChangeMessageVisibility` of one entry.
    pub fn change_visibility(
        &self,
        handle: &str,
        secs: u64,
        worker: WorkerId,
    ) -> Result<(), ApiError> {
        let mut s = self.lock();
        self.sweep(&mut s);
        let now = self.now();
        let release = Event::Released {
            handle: handle.to_owned(),
            worker,
        };
        let invalid = || {
            Err(ApiError::new(
                ApiErrorKind::Rejected,
                "ReceiptHandleIsInvalid",
                "The receipt handle is not valid",
            ))
        };
        let Some((m, current)) = Self::find_handle(&mut s, handle) else {
            return invalid();
        };
        let result = match m.state {
            MsgState::Deleted => invalid(),
            _ if !current => invalid(),
            MsgState::Visible => Err(ApiError::new(
                ApiErrorKind::Rejected,
                "MessageNotInflight",
                "Message does not exist or is not available for visibility timeout change",
            )),
            MsgState::InFlight { .. } if secs == 0 => {
                m.state = MsgState::Visible;
                // Whoever held it through another receipt holds it no more.
                let mut copies: Vec<String> = m
                    .copies
                    .drain(..)
                    .map(|(h, _)| h)
                    .filter(|h| h != handle)
                    .collect();
                copies.extend(
                    m.handle
                        .as_ref()
                        .map(|(h, _)| h.clone())
                        .filter(|h| h != handle),
                );
                s.history.push((now, release));
                for h in copies {
                    s.history.push((now, Event::Invalidated { handle: h }));
                }
                Ok(())
            }
            MsgState::InFlight { .. } => {
                let ceiling = m.first_received.unwrap_or(now) + Duration::from_secs(12 * 3600);
                m.state = MsgState::InFlight {
                    until: (now + Duration::from_secs(secs)).min(ceiling),
                };
                Ok(())
            }
        };
        self.changed.notify_waiters();
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{now:?} change_visibility {handle} {secs} by {worker}: {result:?}");
        }
        result
    }

    /// A call arrived at the service (whatever becomes of it): what the
    /// worker tried, for the checks of its timing.
    pub fn arrived(&self, e: Event) {
        let mut s = self.lock();
        self.record(&mut s, e);
    }

    pub fn delete(&self, handle: &str, worker: WorkerId) -> Result<(), ApiError> {
        let mut s = self.lock();
        self.sweep(&mut s);
        let invalid = || {
            Err(ApiError::new(
                ApiErrorKind::Rejected,
                "ReceiptHandleIsInvalid",
                "The receipt handle is not valid",
            ))
        };
        let Some((m, current)) = Self::find_handle(&mut s, handle) else {
            return invalid();
        };
        if matches!(m.state, MsgState::Deleted) {
            return invalid();
        }
        if !current {
            // AWS: an older receipt handle "succeeds", and deletes nothing.
            return Ok(());
        }
        m.state = MsgState::Deleted;
        let gone: Vec<String> = m
            .copies
            .drain(..)
            .map(|(h, _)| h)
            .chain(m.handle.as_ref().map(|(h, _)| h.clone()))
            .collect();
        let (exec, attempt, token, bogus, id) =
            (m.exec, m.attempt, m.token.clone(), m.bogus, m.id.clone());
        let now = self.now();
        for h in gone {
            s.history.push((now, Event::Invalidated { handle: h }));
        }
        let _ = id;
        let open = s
            .tokens
            .get(&token)
            .is_some_and(|t| t.open && t.attempt == attempt);
        self.record(
            &mut s,
            Event::Deleted {
                exec,
                attempt,
                handle: handle.to_owned(),
                worker,
                open,
                bogus,
            },
        );
        self.changed.notify_waiters();
        Ok(())
    }

    // ---- the handler's side ----

    pub fn run_started(&self, exec: usize, attempt: u32, worker: WorkerId) -> usize {
        let mut s = self.lock();
        let run = s.next_run;
        s.next_run += 1;
        let bogus = self.scenario.tasks[exec].bogus_token;
        self.record(
            &mut s,
            Event::RunStart {
                run,
                exec,
                attempt,
                worker,
                bogus,
            },
        );
        run
    }

    pub fn run_ended(&self, run: usize, how: RunEnd) {
        let mut s = self.lock();
        self.record(&mut s, Event::RunEnd { run, how });
    }

    /// Records the ledger's answer to a claim of the task keyed `key` (the
    /// ledger sees only the hash of a token: found by hashing each token
    /// handed out so far).
    pub fn claim_answered(&self, key: &str, worker: WorkerId, held_elsewhere: bool) {
        use sha2::{Digest, Sha256};
        let mut s = self.lock();
        let token = s.history.iter().find_map(|(_, e)| match e {
            Event::Scheduled { token, .. } => {
                let digest = Sha256::digest(token.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                (hex == key).then(|| token.clone())
            }
            _ => None,
        });
        if let Some(token) = token {
            self.record(
                &mut s,
                Event::ClaimAnswered {
                    token,
                    worker,
                    held_elsewhere,
                },
            );
        }
    }

    pub fn worker_event(&self, e: Event) {
        let mut s = self.lock();
        match &e {
            Event::Started { worker } => {
                if s.alive.len() <= *worker {
                    s.alive.resize(*worker + 1, false);
                }
                s.alive[*worker] = true;
            }
            // An exited process makes no more calls either (a forced exit
            // leaves its polls open; the process is gone all the same).
            Event::Killed { worker } | Event::Exited { worker } => s.alive[*worker] = false,
            _ => {}
        }
        let killed = matches!(e, Event::Killed { .. } | Event::Exited { .. });
        self.record(&mut s, e);
        drop(s);
        if killed {
            self.killed.notify_waiters();
        }
    }

    /// A fault drawn from the seed, for a call of kind `keepalive` (a
    /// heartbeat or visibility change) or any other.
    pub fn draw(&self, keepalive: bool) -> Fault {
        let f = &self.scenario.faults;
        if keepalive && f.calm_keepalive {
            return Fault::None;
        }
        let mut s = self.lock();
        let x: f64 = s.rng.random();
        let mut edge = 0.0;
        let mut next = |p: f64| {
            edge += p;
            x < edge
        };
        if next(f.server_error) {
            Fault::Before(ApiError::service("InternalFailure", 500, "injected"))
        } else if next(f.throttle) {
            Fault::Before(ApiError::service(
                "ThrottlingException",
                400,
                "Rate exceeded",
            ))
        } else if next(f.expired_credentials) {
            Fault::Before(ApiError::service(
                "ExpiredTokenException",
                400,
                "The security token included in the request is expired",
            ))
        } else if next(f.lost_answer) {
            Fault::Lost(Duration::from_millis(s.rng.random_range(1..2_000)))
        } else if next(f.late) {
            Fault::Late(Duration::from_millis(s.rng.random_range(200..3_000)))
        } else if next(f.hung) {
            Fault::Hung
        } else {
            Fault::None
        }
    }

    /// How long a call stalls on its way to the service, if it does.
    pub fn send_delay(&self, keepalive: bool) -> Option<Duration> {
        let f = &self.scenario.faults;
        if f.slow_send <= 0.0 || (keepalive && f.calm_keepalive) {
            return None;
        }
        let mut s = self.lock();
        s.rng
            .random_bool(f.slow_send)
            .then(|| Duration::from_millis(s.rng.random_range(50..900)))
    }

    pub fn entry_fails(&self) -> bool {
        let p = self.scenario.faults.entry;
        p > 0.0 && self.lock().rng.random_bool(p)
    }

    pub fn history(&self) -> Vec<(Time, Event)> {
        self.lock().history.clone()
    }
}

/// What happens to one call.
#[derive(Debug, Clone)]
pub enum Fault {
    None,
    /// Refused before it was carried out.
    Before(ApiError),
    /// Carried out; the answer is lost after this long (a reset).
    Lost(Duration),
    /// Carried out; answered this late.
    Late(Duration),
    /// Not carried out; no answer until the client's 15 s timeout.
    Hung,
}
