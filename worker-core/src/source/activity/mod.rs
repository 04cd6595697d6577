//! Step Functions activities: `GetActivityTask` long polls, each holding a
//! slot taken before it is sent. The token is all a task needs: no lease.

pub(crate) mod config;
mod poller;

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use super::{Runtime, Source};
use crate::aws::SfnApi;
use crate::completion::Reporter;
use crate::config::ActivityPlan;
use crate::handler::TaskSource;
use crate::runner::Binding;
use crate::slots::BindingSlots;
pub(crate) use poller::ActivityPoller;

/// The source of one `[[activity]]` binding.
pub(crate) fn source(
    plan: &ActivityPlan,
    api: Arc<dyn SfnApi>,
    rt: &Runtime,
    reporter: Arc<Reporter>,
) -> Arc<ActivityPoller> {
    let arn: Arc<str> = plan.arn.as_str().into();
    let binding = Arc::new(Binding::new(
        &plan.binding,
        TaskSource::Activity { arn: arn.clone() },
        reporter,
    ));
    Arc::new(ActivityPoller {
        arn,
        worker_name: rt.worker_name.clone(),
        api,
        slots: BindingSlots::new(plan.binding.concurrency, &rt.global, binding.labels.clone()),
        binding,
        env: rt.env.clone(),
        tasks: rt.tasks.clone(),
        pollers: plan.pollers,
    })
}

impl Source for ActivityPoller {
    fn start(self: Arc<Self>, pollers: &TaskTracker) {
        for _ in 0..self.pollers {
            pollers.spawn(poller::poll_activity(self.clone()));
        }
    }
}
