//! Why an execution failed, read from its history: the state it failed in,
//! and the error and cause it ended with.
//!
//! Every history event names the one before it (`previousEventId`). From
//! the event that ended the execution (`ExecutionFailed`, `ExecutionAborted`,
//! `ExecutionTimedOut`) that chain leads back through the failing task
//! (`TaskFailed`, `ActivityFailed`, `LambdaFunctionFailed`, a Parallel's or
//! Map's failure) to the `...StateEntered` event of the state it happened
//! in: the innermost state, for a branch of a Parallel or an iteration of a
//! Map. LocalStack breaks that chain in places: an abort names no previous
//! event, and a Parallel's failure points at whichever branch wrote last
//! (entered, or even exited normally). Then the state is, for a failed
//! execution, the latest Fail state or failing task before the end (with
//! the same error, if it has one); for an abort or a timeout, or when there
//! is none, the latest state entered and not exited before the end.

use std::collections::HashMap;

/// An execution's failure, summarized from its history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The event that ended the execution: `ExecutionFailed`,
    /// `ExecutionAborted` or `ExecutionTimedOut`.
    pub event: String,
    /// The state it failed in, if the history shows one.
    pub state: Option<String>,
    /// The error: the ending event's, else the failing task's.
    pub error: Option<String>,
    /// The cause: the ending event's, else the failing task's.
    pub cause: Option<String>,
}

/// What the summary needs of one history event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Event {
    pub id: i64,
    pub previous: i64,
    /// The event type: `TaskStateEntered`, `ActivityFailed`, ...
    pub kind: String,
    /// The state's name, for `...StateEntered` and `...StateExited` events
    /// (and `EvaluationFailed`, which names its state).
    pub state: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Event {
    fn entered(&self) -> bool {
        self.kind.ends_with("StateEntered")
    }
    fn exited(&self) -> bool {
        self.kind.ends_with("StateExited")
    }
}

const ENDINGS: [&str; 3] = ["ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"];

/// The failure that ended the execution, from its events in any order;
/// `None` if it has not ended, or its last end was a success (a redriven
/// execution may have failed before).
pub(crate) fn summarize(events: &[Event]) -> Option<Failure> {
    let end = events
        .iter()
        .filter(|e| ENDINGS.contains(&e.kind.as_str()) || e.kind == "ExecutionSucceeded")
        .max_by_key(|e| e.id)?;
    if end.kind == "ExecutionSucceeded" {
        return None;
    }
    let by_id: HashMap<i64, &Event> = events.iter().map(|e| (e.id, e)).collect();
    let walk = chain(&by_id, end);
    let (mut error, mut cause) = (end.error.clone(), end.cause.clone());
    if error.is_none()
        && cause.is_none()
        && let Some(e) = walk
            .events
            .iter()
            .find(|e| e.error.is_some() || e.cause.is_some())
    {
        error.clone_from(&e.error);
        cause.clone_from(&e.cause);
    }
    let state = match walk.ended {
        Ended::InState(state) => Some(state),
        // Fan-in: which branch failed is the failure event's to say.
        Ended::FanIn(at) => {
            leaf(events, &by_id, at, error.as_deref()).or_else(|| open_state(events, at))
        }
        // An execution that failed: the latest failing state that could
        // have ended it; an abort or a timeout: the state it was in.
        Ended::Lost if end.kind == "ExecutionFailed" => {
            leaf(events, &by_id, end.id, error.as_deref()).or_else(|| open_state(events, end.id))
        }
        Ended::Lost => open_state(events, end.id),
    };
    Some(Failure {
        event: end.kind.clone(),
        state,
        error,
        cause,
    })
}

/// Where following `previousEventId` back from an event led.
struct Walk<'a> {
    /// The events passed, newest first.
    events: Vec<&'a Event>,
    ended: Ended,
}

enum Ended {
    /// At this state's `...StateEntered` (or an `EvaluationFailed` naming it).
    InState(String),
    /// At a `Parallel`'s or `Map`'s failure (event id): its previous event is
    /// whichever branch wrote last on LocalStack, not the one that failed.
    FanIn(i64),
    /// Nowhere useful: the chain broke, or passed a state that ended
    /// normally (so it is not the failure's path).
    Lost,
}

fn chain<'a>(by_id: &HashMap<i64, &'a Event>, from: &Event) -> Walk<'a> {
    let mut walk = Walk {
        events: Vec::new(),
        ended: Ended::Lost,
    };
    let mut at = from.previous;
    while let Some(e) = by_id.get(&at) {
        walk.events.push(e);
        if e.entered() || (e.kind == "EvaluationFailed" && e.state.is_some()) {
            walk.ended = Ended::InState(e.state.clone().unwrap_or_default());
            break;
        }
        if e.kind == "ParallelStateFailed" || e.kind == "MapStateFailed" {
            walk.ended = Ended::FanIn(e.id);
            break;
        }
        // A malformed history must not loop for ever.
        if e.exited() || e.previous >= e.id || walk.events.len() > by_id.len() {
            break;
        }
        at = e.previous;
    }
    walk
}

/// The kinds of event a state fails with (a Fail state, by being entered).
const LEAF_FAILURES: [&str; 14] = [
    "FailStateEntered",
    "ActivityFailed",
    "ActivityScheduleFailed",
    "ActivityTimedOut",
    "TaskFailed",
    "TaskStartFailed",
    "TaskSubmitFailed",
    "TaskTimedOut",
    "LambdaFunctionFailed",
    "LambdaFunctionScheduleFailed",
    "LambdaFunctionStartFailed",
    "LambdaFunctionTimedOut",
    "MapRunFailed",
    "EvaluationFailed",
];

/// The state of the latest failure before event `before` that could be
/// the one that ended the execution: a Fail state, or a failure with the
/// same error.
fn leaf(
    events: &[Event],
    by_id: &HashMap<i64, &Event>,
    before: i64,
    error: Option<&str>,
) -> Option<String> {
    let mut failures: Vec<&Event> = events
        .iter()
        .filter(|e| e.id < before && LEAF_FAILURES.contains(&e.kind.as_str()))
        .filter(|e| e.kind == "FailStateEntered" || error.is_none() || e.error.as_deref() == error)
        .collect();
    failures.sort_by_key(|e| std::cmp::Reverse(e.id));
    failures.into_iter().find_map(|e| {
        if e.entered() || e.state.is_some() {
            return e.state.clone();
        }
        // Within one state a task's events chain reliably to its entry.
        match chain(by_id, e).ended {
            Ended::InState(state) => Some(state),
            _ => None,
        }
    })
}

/// The latest state entered before event `before` and not exited since.
fn open_state(events: &[Event], before: i64) -> Option<String> {
    let mut earlier: Vec<&Event> = events.iter().filter(|e| e.id < before).collect();
    earlier.sort_by_key(|e| std::cmp::Reverse(e.id));
    let mut exits: HashMap<&str, usize> = HashMap::new();
    for e in earlier {
        let Some(name) = e.state.as_deref() else {
            continue;
        };
        if e.exited() {
            *exits.entry(name).or_default() += 1;
        } else if e.entered() {
            match exits.get_mut(name) {
                Some(n) if *n > 0 => *n -= 1,
                _ => return Some(name.to_owned()),
            }
        }
    }
    None
}

/// The event as the summary needs it.
pub(crate) fn event(e: &aws_sdk_sfn::types::HistoryEvent) -> Event {
    // Every kind of details that carries an error and a cause.
    macro_rules! error_and_cause {
        ($($details:ident),* $(,)?) => {
            None$(.or_else(|| e.$details.as_ref().map(|d| (d.error.clone(), d.cause.clone()))))*
        };
    }
    let (error, cause) = error_and_cause!(
        execution_failed_event_details,
        execution_aborted_event_details,
        execution_timed_out_event_details,
        activity_failed_event_details,
        activity_schedule_failed_event_details,
        activity_timed_out_event_details,
        task_failed_event_details,
        task_start_failed_event_details,
        task_submit_failed_event_details,
        task_timed_out_event_details,
        lambda_function_failed_event_details,
        lambda_function_schedule_failed_event_details,
        lambda_function_start_failed_event_details,
        lambda_function_timed_out_event_details,
        map_run_failed_event_details,
        evaluation_failed_event_details,
    )
    .unwrap_or_default();
    let state = e
        .state_entered_event_details
        .as_ref()
        .map(|d| d.name.clone())
        .or_else(|| {
            e.state_exited_event_details
                .as_ref()
                .map(|d| d.name.clone())
        })
        .or_else(|| {
            e.evaluation_failed_event_details
                .as_ref()
                .map(|d| d.state.clone())
        });
    Event {
        id: e.id,
        previous: e.previous_event_id,
        kind: e.r#type.as_str().to_owned(),
        state,
        error,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, previous: i64, kind: &str, state: Option<&str>) -> Event {
        Event {
            id,
            previous,
            kind: kind.into(),
            state: state.map(Into::into),
            ..Event::default()
        }
    }

    fn failed(mut e: Event, error: &str, cause: &str) -> Event {
        e.error = Some(error.into());
        e.cause = Some(cause.into());
        e
    }

    /// An activity's failure, as LocalStack wrote it (probe of 2026-11-30).
    fn activity_failure() -> Vec<Event> {
        vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "PassStateEntered", Some("Prep")),
            ev(3, 2, "PassStateExited", Some("Prep")),
            ev(4, 3, "TaskStateEntered", Some("Charge")),
            ev(5, 4, "ActivityScheduled", None),
            ev(6, 5, "ActivityStarted", None),
            failed(
                ev(7, 6, "ActivityFailed", None),
                "Payments.Declined",
                "card expired",
            ),
            failed(
                ev(8, 7, "ExecutionFailed", None),
                "Payments.Declined",
                "card expired",
            ),
        ]
    }

    #[test]
    fn the_chain_leads_to_the_failing_state() {
        let mut events = activity_failure();
        events.reverse(); // the order does not matter
        assert_eq!(
            summarize(&events),
            Some(Failure {
                event: "ExecutionFailed".into(),
                state: Some("Charge".into()),
                error: Some("Payments.Declined".into()),
                cause: Some("card expired".into()),
            })
        );
    }

    #[test]
    fn the_innermost_state_of_a_parallel_is_named() {
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "ParallelStateEntered", Some("Par")),
            ev(3, 2, "ParallelStateStarted", None),
            ev(4, 3, "PassStateEntered", Some("Ok")),
            ev(5, 3, "FailStateEntered", Some("Bad")),
            ev(6, 5, "ParallelStateFailed", None),
            failed(ev(7, 6, "ExecutionFailed", None), "Inner.Bad", "inner"),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(f.state.as_deref(), Some("Bad"));
        // LocalStack, when the other branch wrote last: the Parallel's
        // failure points at the Pass state's exit (seen in a test run).
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "ParallelStateEntered", Some("Par")),
            ev(3, 2, "ParallelStateStarted", None),
            ev(4, 3, "PassStateEntered", Some("Ok")),
            ev(5, 3, "FailStateEntered", Some("Bad")),
            ev(6, 4, "PassStateExited", Some("Ok")),
            ev(7, 6, "ParallelStateFailed", None),
            failed(ev(8, 7, "ExecutionFailed", None), "Inner.Bad", "inner"),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(f.state.as_deref(), Some("Bad"));
        // ... or at the Pass state's entry, the Pass state never exited.
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "ParallelStateEntered", Some("Par")),
            ev(3, 2, "ParallelStateStarted", None),
            ev(4, 3, "FailStateEntered", Some("Bad")),
            ev(5, 3, "PassStateEntered", Some("Ok")),
            ev(6, 5, "ParallelStateFailed", None),
            failed(ev(7, 6, "ExecutionFailed", None), "Inner.Bad", "inner"),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(f.state.as_deref(), Some("Bad"));
    }

    #[test]
    fn a_failure_caught_earlier_is_not_the_one_that_ended_it() {
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "TaskStateEntered", Some("Charge")),
            failed(ev(3, 2, "TaskFailed", None), "Payments.Declined", "x"),
            ev(4, 3, "TaskStateExited", Some("Charge")),
            ev(5, 4, "PassStateEntered", Some("Format")),
            failed(
                ev(6, 5, "ExecutionFailed", None),
                "States.Runtime",
                "bad path",
            ),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(f.state.as_deref(), Some("Format"));
        // Without the chain (LocalStack-like), the caught failure's error
        // differs from the end's, so it is not taken either.
        let mut broken = events.clone();
        broken[5].previous = 0;
        assert_eq!(summarize(&broken).unwrap().state.as_deref(), Some("Format"));
        // The control: a failure with the end's error is taken.
        broken[5].error = Some("Payments.Declined".into());
        assert_eq!(summarize(&broken).unwrap().state.as_deref(), Some("Charge"));
    }

    #[test]
    fn without_a_chain_the_open_state_is_named() {
        // LocalStack's abort: no previous event.
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "PassStateEntered", Some("A")),
            ev(3, 2, "PassStateExited", Some("A")),
            ev(4, 3, "WaitStateEntered", Some("W")),
            failed(
                ev(5, 0, "ExecutionAborted", None),
                "Ops.Cancelled",
                "operator",
            ),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(
            (f.event.as_str(), f.state.as_deref(), f.error.as_deref()),
            ("ExecutionAborted", Some("W"), Some("Ops.Cancelled"))
        );
        // The control: with the Wait state exited, no state is open.
        let mut closed = events[..4].to_vec();
        closed.push(ev(5, 4, "WaitStateExited", Some("W")));
        closed.push(failed(ev(6, 0, "ExecutionAborted", None), "E", "C"));
        assert_eq!(summarize(&closed).unwrap().state, None);
    }

    #[test]
    fn an_ending_without_details_takes_the_tasks() {
        let events = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "TaskStateEntered", Some("Call")),
            failed(ev(3, 2, "TaskTimedOut", None), "States.Timeout", "late"),
            ev(4, 3, "ExecutionTimedOut", None),
        ];
        let f = summarize(&events).unwrap();
        assert_eq!(
            (f.state.as_deref(), f.error.as_deref(), f.cause.as_deref()),
            (Some("Call"), Some("States.Timeout"), Some("late"))
        );
    }

    #[test]
    fn running_and_succeeded_executions_have_no_failure() {
        let mut events = activity_failure();
        events.truncate(6);
        assert_eq!(summarize(&events), None, "running");
        // Redriven after the failure, then succeeded.
        let mut events = activity_failure();
        events.push(ev(9, 8, "ExecutionRedriven", None));
        events.push(ev(10, 9, "ExecutionSucceeded", None));
        assert_eq!(summarize(&events), None, "succeeded at last");
        // The control: the same history without the success is a failure.
        events.pop();
        assert!(summarize(&events).is_some());
    }

    #[test]
    fn a_looping_chain_ends() {
        let events = vec![
            ev(2, 3, "TaskFailed", None),
            ev(3, 2, "TaskFailed", None),
            ev(4, 3, "ExecutionFailed", None),
        ];
        assert_eq!(summarize(&events).unwrap().state, None);
    }
}
