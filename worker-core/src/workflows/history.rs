//! Why an execution failed, read from its history: the state it failed in,
//! and the error and cause it ended with.
//!
//! Every history event names the one before it (`previousEventId`). From
//! the event that ended the execution (`ExecutionFailed`, `ExecutionAborted`,
//! `ExecutionTimedOut`) that chain leads back through the failing task
//! (`TaskFailed`, `ActivityFailed`, `LambdaFunctionFailed`, a Parallel's or
//! Map's failure) to the `...StateEntered` event of the state it happened
//! in: the innermost state, for a branch of a Parallel or an iteration of a
//! Map. Where the chain is broken (LocalStack gives an abort no previous
//! event) or passes a state that exited normally (LocalStack points a
//! Parallel's failure at whichever branch wrote last), the state is the
//! latest one entered and not exited before the end.

use std::collections::HashMap;

/// An execution's failure, summarized from its history.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut failure = Failure {
        event: end.kind.clone(),
        state: None,
        error: end.error.clone(),
        cause: end.cause.clone(),
    };
    // Back along the chain, to the state the failure happened in.
    let mut at = end.previous;
    let mut seen = 0;
    while let Some(e) = by_id.get(&at) {
        if failure.error.is_none() && failure.cause.is_none() {
            failure.error.clone_from(&e.error);
            failure.cause.clone_from(&e.cause);
        }
        if e.entered() || (e.kind == "EvaluationFailed" && e.state.is_some()) {
            failure.state.clone_from(&e.state);
            break;
        }
        // A state that ended normally did not fail: this chain is not the
        // failure's path.
        if e.exited() {
            break;
        }
        // A malformed history must not loop for ever.
        seen += 1;
        if e.previous >= e.id || seen > events.len() {
            break;
        }
        at = e.previous;
    }
    if failure.state.is_none() {
        failure.state = open_state(events, end.id);
    }
    Some(failure)
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
