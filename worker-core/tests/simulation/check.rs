//! The invariants, checked over one seed's whole history. Each violation
//! names its invariant (the words in brackets), so a failing seed says
//! what broke.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::scenario::{Scenario, Source};
use crate::world::{Event, RunEnd, Time, WorkerId};

/// Refusals an operator can fix: the task is kept for a later try, so
/// another run of it is expected.
fn heals(code: &str) -> bool {
    code.starts_with("AccessDenied")
        || code.starts_with("Kms")
        || code.starts_with("KMS")
        || code == "ResourceNotFoundException"
}

struct Life {
    started: Time,
    killed: Option<Time>,
    exited: Option<Time>,
    /// When shutdown stopped retrying (the last phase of its timeline, or
    /// a second signal): what it still held from then on it gave up.
    gave_up: Option<Time>,
    /// A second signal: exit at once, without waiting for open polls.
    forced: Option<Time>,
}

impl Life {
    fn alive_at(&self, t: Time) -> bool {
        self.started <= t && self.killed.is_none_or(|k| t < k)
    }
}

/// One worker holding one task: from the hand-over until it let go.
struct Hold {
    exec: usize,
    attempt: u32,
    token: String,
    worker: WorkerId,
    handle: Option<String>,
    from: Time,
    /// When it let go (or was cut off).
    until: Time,
    /// It ended by something the worker or the service did (not by the
    /// worker's death or exit, or the end of the seed).
    let_go: bool,
    /// It ended by the worker releasing or deleting the message: the task
    /// decided that up to a second before (it first waits for renewals in
    /// flight, sending no more heartbeats).
    by_letting_go: bool,
}

pub struct Checked {
    pub violations: Vec<String>,
    pub runs: usize,
    pub events: usize,
}

pub fn check(sc: &Scenario, history: &[(Time, Event)], logs: &str, end: Time) -> Checked {
    let mut v: Vec<String> = Vec::new();
    let mut lives: BTreeMap<WorkerId, Life> = BTreeMap::new();
    for (t, e) in history {
        match e {
            Event::Started { worker } => {
                lives.insert(
                    *worker,
                    Life {
                        started: *t,
                        killed: None,
                        exited: None,
                        gave_up: None,
                        forced: None,
                    },
                );
            }
            Event::Killed { worker } => {
                if let Some(l) = lives.get_mut(worker) {
                    l.killed = Some(*t);
                }
            }
            Event::Exited { worker } => {
                if let Some(l) = lives.get_mut(worker) {
                    l.exited = Some(*t);
                }
            }
            Event::Sigterm { worker } => {
                if let Some(l) = lives.get_mut(worker) {
                    // The first: grace, cancel grace, then 10 s of last
                    // reports; a second: at once.
                    let timeline =
                        Duration::from_secs(sc.shutdown_grace_secs + sc.cancel_grace_secs + 10);
                    l.gave_up = Some(match l.gave_up {
                        None => *t + timeline,
                        Some(at) => {
                            l.forced.get_or_insert(*t);
                            at.min(*t)
                        }
                    });
                }
            }
            _ => {}
        }
    }
    let alive = |w: WorkerId, t: Time| lives.get(&w).is_some_and(|l| l.alive_at(t));
    let binding = |exec: usize| &sc.bindings[sc.tasks[exec].binding];

    // Which message (exec, attempt) a receipt handle belongs to.
    let mut handle_of: BTreeMap<String, (usize, u32)> = BTreeMap::new();
    for (_, e) in history {
        if let Event::Handed {
            exec,
            attempt,
            handle: Some(h),
            ..
        } = e
        {
            handle_of.insert(h.clone(), (*exec, *attempt));
        }
    }

    // When each handle stopped working (a late answer may hand out one
    // that already has).
    let mut invalidated: BTreeMap<&str, Time> = BTreeMap::new();
    for (t, e) in history {
        if let Event::Invalidated { handle } = e {
            invalidated.entry(handle.as_str()).or_insert(*t);
        }
    }

    // Holds, and when each ended.
    let mut holds: Vec<Hold> = Vec::new();
    for (i, (t, e)) in history.iter().enumerate() {
        let Event::Handed {
            exec,
            attempt,
            token,
            worker,
            handle,
        } = e
        else {
            continue;
        };
        if sc.tasks[*exec].bogus_token {
            continue;
        }
        let mut until = end;
        let mut let_go = false;
        let mut by_letting_go = false;
        let life = &lives[worker];
        for c in [life.killed, life.exited, life.gave_up]
            .into_iter()
            .flatten()
        {
            // Handed over after the worker stopped retrying anything: one
            // attempt at most, nothing to keep alive.
            until = until.min(c.max(*t));
        }
        // A delivery that joined a task just as it gave its message up (a
        // report refused for now: the message is left to come back) is
        // left with it: the task's end waits up to a second for renewals
        // in flight before it lets go.
        let left = history[..i].iter().rev().take_while(|(t0, _)| *t + Duration::from_secs(2) >= *t0).any(|(_, e0)| {
            matches!(e0, Event::ReportRefused { token: tk, worker: w, .. } if tk == token && w == worker)
        });
        let stale = handle
            .as_deref()
            .and_then(|h| invalidated.get(h))
            .is_some_and(|at| at <= t);
        if left || stale {
            until = *t;
            let_go = true;
        }
        for (t2, e2) in history[i + 1..].iter().filter(|_| !let_go) {
            if *t2 > until {
                break;
            }
            let ends = match e2 {
                Event::ReportAccepted {
                    token: tk,
                    worker: w,
                    ..
                }
                | Event::ToldClosed {
                    token: tk,
                    worker: w,
                }
                | Event::ReportRefused {
                    token: tk,
                    worker: w,
                    ..
                } => tk == token && w == worker,
                Event::TimedOut {
                    exec: x,
                    attempt: a,
                    ..
                } => x == exec && a == attempt,
                // Another worker holds the task's ledger claim: this one
                // lets it go (a message hidden until that claim would end).
                Event::ClaimAnswered {
                    token: tk,
                    worker: w,
                    held_elsewhere: true,
                } => tk == token && w == worker,
                // The task let its message go (all its receipts at once:
                // the copies it joined too).
                Event::ReleaseCall {
                    handle: h,
                    worker: w,
                }
                | Event::DeleteCall {
                    handle: h,
                    worker: w,
                } => {
                    w == worker
                        && (Some(h) == handle.as_ref()
                            || handle_of.get(h) == Some(&(*exec, *attempt)))
                }
                Event::Lapsed { handle: h, .. } | Event::Invalidated { handle: h } => {
                    Some(h) == handle.as_ref()
                }
                Event::Deleted {
                    exec: x,
                    attempt: a,
                    ..
                } => x == exec && a == attempt,
                _ => false,
            };
            if ends {
                until = *t2;
                let_go = true;
                by_letting_go = matches!(e2, Event::ReleaseCall { .. } | Event::DeleteCall { .. });
                break;
            }
        }
        holds.push(Hold {
            exec: *exec,
            attempt: *attempt,
            token: token.clone(),
            worker: *worker,
            handle: handle.clone(),
            from: *t,
            until,
            let_go,
            by_letting_go,
        });
    }

    // [heartbeat-gap], [renew-gap]: a living worker keeps trying to keep
    // what it holds alive, at its interval, whatever the answers.
    let mut beats: BTreeMap<(&str, WorkerId), Vec<Time>> = BTreeMap::new();
    let mut renews: BTreeMap<(&str, WorkerId), Vec<Time>> = BTreeMap::new();
    for (t, e) in history {
        match e {
            Event::HeartbeatCall { token, worker } => {
                beats.entry((token, *worker)).or_default().push(*t)
            }
            Event::RenewCall { handle, worker } => {
                renews.entry((handle, *worker)).or_default().push(*t)
            }
            _ => {}
        }
    }
    let gaps = |calls: Option<&Vec<Time>>, h: &Hold, bound: Duration| -> Option<(Time, Time)> {
        let calls = calls.map(Vec::as_slice).unwrap_or(&[]);
        let mut last = h.from;
        for &c in calls.iter().filter(|&&c| c >= h.from && c <= h.until) {
            if c - last > bound {
                return Some((last, c));
            }
            last = c;
        }
        // The wait for renewals in flight before a release or delete.
        let end = if h.by_letting_go {
            bound + Duration::from_secs(1)
        } else {
            bound
        };
        (h.until - last > end).then_some((last, h.until))
    };
    // When a worker learned a token needs no more heartbeats: its report
    // was accepted, or the service said the task is closed.
    let mut done_with: BTreeMap<(&str, WorkerId), Time> = BTreeMap::new();
    for (t, e) in history {
        if let Event::ReportAccepted { token, worker, .. } | Event::ToldClosed { token, worker } = e
        {
            done_with.entry((token.as_str(), *worker)).or_insert(*t);
        }
    }
    for h in &holds {
        let b = binding(h.exec);
        let done = done_with
            .get(&(h.token.as_str(), h.worker))
            .is_some_and(|t| *t <= h.from);
        if let Some(hb) = b.heartbeat_secs.filter(|_| !done) {
            let hb = Duration::from_secs(hb);
            // The interval, plus what may delay a heartbeat on its way: the
            // send gate's yield to waiting reports (at most half the
            // interval, capped at 5 s; never triggered here, since no
            // scenario sets `send_task_rate_per_sec`) or a stalled
            // connection (`slow_send`, under 0.9 s). One slack covers both:
            // scenarios' intervals are 2 s or more, so half of one is never
            // shorter than the stall.
            let bound = hb.max(Duration::from_secs(2))
                + (hb / 2).min(Duration::from_secs(5))
                + Duration::from_millis(250);
            if let Some((from, to)) = gaps(beats.get(&(h.token.as_str(), h.worker)), h, bound) {
                v.push(format!(
                    "[heartbeat-gap] worker {} held exec {} attempt {} ({:?} to {:?}) and sent no heartbeat from {from:?} to {to:?} (bound {bound:?})",
                    h.worker, h.exec, h.attempt, h.from, h.until
                ));
            }
        }
        if let Some(handle) = &h.handle {
            let every = Duration::from_secs(b.visibility_secs) / 3;
            let bound = every.max(Duration::from_secs(1)) + Duration::from_secs(1);
            if let Some((from, to)) = gaps(renews.get(&(handle.as_str(), h.worker)), h, bound) {
                v.push(format!(
                    "[renew-gap] worker {} held {handle} (exec {} attempt {}, {:?} to {:?}) and renewed nothing from {from:?} to {to:?} (bound {bound:?})",
                    h.worker, h.exec, h.attempt, h.from, h.until
                ));
            }
        }
    }

    // [renew-lost-receipt]: a receipt SQS said is not the worker's any
    // more is not renewed again and again (a call or two already on their
    // way may still arrive).
    let mut refused_at: BTreeMap<(&str, WorkerId), Time> = BTreeMap::new();
    for (t, e) in history {
        if let Event::RenewRefused { handle, worker } = e {
            refused_at.entry((handle.as_str(), *worker)).or_insert(*t);
        }
    }
    for ((handle, worker), at) in &refused_at {
        let again = history
            .iter()
            .filter(|(t, e)| {
                *t > *at + Duration::from_secs(3)
                    && matches!(e, Event::RenewCall { handle: h, worker: w } if h == handle && w == worker)
            })
            .count();
        if again > 0 {
            v.push(format!(
                "[renew-lost-receipt] worker {worker} was told at {at:?} that {handle} is not its receipt any more, and renewed it {again} more time(s)"
            ));
        }
    }

    // [timeout-while-held], [lapse-while-held]: with no faults on the
    // keep-alive calls, the service never closes or shows again what a
    // living worker holds.
    if sc.faults.calm_keepalive {
        for (t, e) in history {
            match e {
                Event::TimedOut {
                    exec,
                    attempt,
                    heartbeat: true,
                    ..
                } => {
                    let Some(beat) = binding(*exec).state_heartbeat else {
                        continue;
                    };
                    let window = t.saturating_sub(beat);
                    // Lambda refused to know the callback (the wrong region):
                    // no heartbeat could land, whatever the worker did.
                    if binding(*exec).source == Source::Durable
                        && sc
                            .lambda_misdirected_until
                            .is_some_and(|until| until > window)
                    {
                        continue;
                    }
                    if let Some(h) = holds.iter().find(|h| {
                        h.exec == *exec
                            && h.attempt == *attempt
                            && h.from <= window
                            && h.until >= *t
                            && alive(h.worker, *t)
                    }) {
                        v.push(format!(
                            "[timeout-while-held] exec {exec} attempt {attempt} timed out at {t:?} (HeartbeatSeconds {beat:?}) while worker {} held it since {:?}",
                            h.worker, h.from
                        ));
                    }
                }
                Event::Lapsed {
                    exec,
                    attempt,
                    handle,
                    holder,
                } if holds.iter().any(|h| {
                    h.handle.as_ref() == Some(handle)
                        && h.worker == *holder
                        && h.until >= *t
                        && alive(*holder, *t)
                }) =>
                {
                    v.push(format!(
                        "[lapse-while-held] {handle} (exec {exec} attempt {attempt}) became visible at {t:?} while worker {holder} held it"
                    ));
                }
                _ => {}
            }
        }
    }

    // [second-run]: one run per task attempt, unless the one before was
    // given back (released, kept after a refusal that may heal, its
    // worker killed, its lease lost) or SQS handed a copy to another worker.
    // (exec, attempt) -> its runs: (started, run id, worker).
    type Runs = BTreeMap<(usize, u32), Vec<(Time, usize, WorkerId)>>;
    let mut runs: Runs = BTreeMap::new();
    let mut run_end: BTreeMap<usize, (Time, RunEnd)> = BTreeMap::new();
    let mut bogus_runs = Vec::new();
    for (t, e) in history {
        match e {
            Event::RunStart {
                run,
                exec,
                attempt,
                worker,
                bogus,
            } => {
                runs.entry((*exec, *attempt))
                    .or_default()
                    .push((*t, *run, *worker));
                if *bogus {
                    bogus_runs.push((*exec, *worker, *t));
                }
            }
            Event::RunEnd { run, how } => {
                run_end.insert(*run, (*t, *how));
            }
            _ => {}
        }
    }
    for (exec, worker, t) in &bogus_runs {
        v.push(format!(
            "[ran-unreportable] worker {worker} ran exec {exec} at {t:?}: its token is longer than Step Functions accepts, so no report can ever be made"
        ));
    }
    let total_runs = runs.values().map(Vec::len).sum();
    for ((exec, attempt), list) in &runs {
        for pair in list.windows(2) {
            let ((t1, r1, w1), (t2, _r2, w2)) = (pair[0], pair[1]);
            let token = history.iter().find_map(|(_, e)| match e {
                Event::Scheduled {
                    exec: x,
                    attempt: a,
                    token,
                } if x == exec && a == attempt => Some(token.clone()),
                _ => None,
            });
            let between = |e: &Event| -> bool {
                match e {
                    // The message went back to the queue: released, lapsed,
                    // or a receipt of it stopped working.
                    Event::Released { handle, .. }
                    | Event::Lapsed { handle, .. }
                    | Event::Invalidated { handle } => {
                        handle_of.get(handle) == Some(&(*exec, *attempt))
                    }
                    Event::ReportRefused {
                        token: tk,
                        worker,
                        code,
                    } => Some(tk) == token.as_ref() && *worker == w1 && heals(code),
                    Event::Killed { worker } => *worker == w1,
                    // SQS told the first worker its receipt is gone (its
                    // lease is lost: it stops, reporting nothing).
                    Event::RenewRefused { handle, worker } => {
                        *worker == w1 && handle_of.get(handle) == Some(&(*exec, *attempt))
                    }
                    _ => false,
                }
            };
            // SQS handed one of the two a copy of the message (at least
            // once): two workers may each run it, unless the binding claims
            // its tasks in the ledger, which is there to stop exactly that.
            let ledger = binding(*exec).ledger;
            let copy = |e: &Event| {
                !ledger
                    && matches!(e, Event::Handed { exec: x, attempt: a, worker, handle: Some(h), .. }
                    if x == exec && a == attempt && (*worker == w1 || *worker == w2) && h.ends_with("-copy"))
            };
            let excused = history.iter().any(|(t, e)| {
                (*t >= t1 && *t <= t2 && between(e)) || (w1 != w2 && *t <= t2 && copy(e))
            });
            if !excused {
                let first = run_end
                    .get(&r1)
                    .map(|(t, how)| format!("{how:?} at {t:?}"))
                    .unwrap_or_else(|| "still running".into());
                v.push(format!(
                    "[second-run] exec {exec} attempt {attempt} ran on worker {w1} at {t1:?} (ended {first}) and again on worker {w2} at {t2:?}"
                ));
            }
        }
    }

    // [fifo-overlap]: with no lapse in the group, two of its tasks never
    // run at once.
    for (g_exec, (t1, r1)) in runs
        .iter()
        .flat_map(|((e, _), l)| l.iter().map(move |(t, r, _)| (*e, (*t, *r))))
    {
        let spec = &sc.tasks[g_exec];
        if !matches!(
            sc.bindings[spec.binding].source,
            Source::Queue { fifo: true }
        ) {
            continue;
        }
        let end1 = run_end.get(&r1).map_or(end, |(t, _)| *t);
        for (o_exec, list) in runs.iter().filter(|((e, _), _)| *e != g_exec) {
            let o = &sc.tasks[o_exec.0];
            if o.binding != spec.binding || o.group != spec.group {
                continue;
            }
            for (t2, _, w2) in list {
                let lapsed = history.iter().any(|(t, e)| {
                    *t <= *t2
                        && matches!(e, Event::Lapsed { exec, .. } if sc.tasks[*exec].binding == spec.binding && sc.tasks[*exec].group == spec.group)
                });
                if *t2 > t1 && *t2 < end1 && alive(*w2, *t2) && !lapsed {
                    v.push(format!(
                        "[fifo-overlap] exec {g_exec} and exec {} of one FIFO group ran at once ({t1:?}..{end1:?} and from {t2:?})",
                        o_exec.0
                    ));
                }
            }
        }
    }

    // [deleted-while-open]: a message goes only once its task is over. (A
    // task LocalStack resent the token of may still be completed by
    // another message carrying it: the harm is a task left to time out.)
    for (i, (t, e)) in history.iter().enumerate() {
        if let Event::Deleted {
            exec,
            attempt,
            worker,
            open: true,
            bogus: false,
            ..
        } = e
        {
            let reported = history[i..].iter().any(|(_, e2)| {
                matches!(e2, Event::ReportAccepted { exec: x, attempt: a, .. } if x == exec && a == attempt)
            });
            if !reported {
                v.push(format!(
                    "[deleted-while-open] worker {worker} deleted the message of exec {exec} attempt {attempt} at {t:?} while its task was open, and nothing completed the task after: the only copy of its token"
                ));
            }
        }
    }

    // [success-became-failure]: a handler's success is never sent as a
    // failure without a name.
    for (t, e) in history {
        if let Event::ReportAccepted {
            exec,
            attempt,
            worker,
            success: false,
            error,
            ..
        } = e
            && error.is_empty()
        {
            let last_run = runs.get(&(*exec, *attempt)).and_then(|l| {
                l.iter()
                    .rev()
                    .find(|(t1, _, w)| t1 <= t && w == worker)
                    .map(|(_, r, _)| *r)
            });
            if last_run
                .and_then(|r| run_end.get(&r))
                .is_some_and(|(_, how)| *how == RunEnd::Ok)
            {
                v.push(format!(
                    "[success-became-failure] exec {exec} attempt {attempt}: its handler succeeded on worker {worker}, and a failure with no name was reported at {t:?}"
                ));
            }
        }
    }

    // [token-leak]: no token in any log line or any cause sent.
    let tokens: BTreeSet<&str> = history
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Scheduled { token, .. } => Some(token.as_str()),
            _ => None,
        })
        .collect();
    for token in &tokens {
        // The whole token, or all of it but one end (a text cut there).
        let pieces = [&token[..], &token[1..], &token[..token.len() - 1]];
        if let Some(piece) = pieces.iter().find(|p| logs.contains(**p)) {
            let line = logs.lines().find(|l| l.contains(piece)).unwrap_or("");
            let short: String = line.chars().take(300).collect();
            v.push(format!("[token-leak] a token is in the log: {short}..."));
        }
    }
    for (_, e) in history {
        if let Event::ReportAccepted {
            error, cause, exec, ..
        } = e
            && tokens
                .iter()
                .any(|tk| error.contains(tk) || cause.contains(tk))
        {
            v.push(format!(
                "[token-leak] the failure reported for exec {exec} carries a full token"
            ));
        }
    }

    // [outcome-mismatch]: a task whose report the service accepted is not
    // counted as cancelled (by a worker that lived to say so).
    let mut ended: BTreeMap<String, usize> = BTreeMap::new();
    for line in logs.lines().filter(|l| l.contains("\"task ended\"")) {
        let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let outcome = j["fields"]["outcome"].as_str().unwrap_or("");
        // `report_failed` too: shutdown gave up on a report one of whose
        // attempts got no answer (it may have landed); that is not "closed".
        if matches!(
            outcome,
            "succeeded" | "failed" | "shutting_down" | "report_failed"
        ) && let Some(fp) = j["span"]["token"].as_str()
        {
            *ended.entry(fp.to_owned()).or_default() += 1;
        }
    }
    // A token LocalStack sent again for a retry is left out: a retry of the
    // first attempt's report whose answer was lost can land on the second
    // attempt before the worker has seen it, and nothing can tell them apart.
    let mut attempts_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, e) in history {
        if let Event::Scheduled { token, .. } = e {
            *attempts_of.entry(token.as_str()).or_default() += 1;
        }
    }
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in history {
        if let Event::ReportAccepted { token, worker, .. } = e
            && attempts_of.get(token.as_str()).copied().unwrap_or(0) <= 1
            && lives
                .get(worker)
                .is_some_and(|l| l.exited.is_some() && l.killed.is_none())
        {
            *accepted
                .entry(sfn_worker_core::fingerprint(token))
                .or_default() += 1;
        }
    }
    for (fp, n) in &accepted {
        let said = ended.get(fp).copied().unwrap_or(0);
        if said < *n {
            v.push(format!(
                "[outcome-mismatch] token {fp}: the service accepted {n} report(s), the worker counted {said} as reported"
            ));
        }
    }

    // [unreleased-at-exit]: a worker that shut down holds no message of an
    // open task.
    for h in &holds {
        let Some(life) = lives.get(&h.worker) else {
            continue;
        };
        let (Some(exited), None) = (life.exited, life.killed) else {
            continue;
        };
        // Handed over after a second signal, which exits without waiting
        // for the polls still open: what their answers carry comes back
        // after its visibility timeout.
        let handed_when_forced = life.forced.is_some_and(|f| h.from >= f);
        if h.handle.is_some()
            && !h.let_go
            && !handed_when_forced
            && h.until >= exited
            && h.from <= exited
        {
            let open = !history.iter().any(|(t, e)| {
                *t <= exited
                    && match e {
                        Event::ReportAccepted { exec, attempt, .. }
                        | Event::TimedOut { exec, attempt, .. } => {
                            *exec == h.exec && *attempt == h.attempt
                        }
                        Event::ReportRefused {
                            token,
                            worker,
                            code,
                        } => *token == h.token && *worker == h.worker && heals(code),
                        _ => false,
                    }
            });
            if open {
                v.push(format!(
                    "[unreleased-at-exit] worker {} exited at {exited:?} still holding {} (exec {} attempt {}, open)",
                    h.worker,
                    h.handle.as_deref().unwrap_or(""),
                    h.exec,
                    h.attempt
                ));
            }
        }
    }

    v.sort();
    v.dedup();
    Checked {
        violations: v,
        runs: total_runs,
        events: history.len(),
    }
}
