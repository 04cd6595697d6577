//! Concurrency slots: a task may only be fetched when it can start.
//!
//! A slot is two semaphore permits, the binding's and the process-wide one
//! (`worker.max_concurrency`). A poller takes a slot *before* it polls; the
//! slot then travels with the task and is released when the task has been
//! reported (dropping it). So no task ever waits for capacity after it was
//! handed out, with its heartbeat and timeout clocks already running.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, BindingLabels};

/// The process-wide limit.
#[derive(Debug, Clone)]
pub(crate) struct GlobalSlots {
    sem: Arc<Semaphore>,
}

impl GlobalSlots {
    pub fn new(max: usize) -> Self {
        metrics::global_slots_available(max);
        Self {
            sem: Arc::new(Semaphore::new(max)),
        }
    }
}

/// One binding's slots, under the global limit.
#[derive(Debug, Clone)]
pub(crate) struct BindingSlots {
    own: Arc<Semaphore>,
    global: Arc<Semaphore>,
    labels: BindingLabels,
}

impl BindingSlots {
    pub fn new(concurrency: usize, global: &GlobalSlots, labels: BindingLabels) -> Self {
        labels.slots_available(concurrency);
        Self {
            own: Arc::new(Semaphore::new(concurrency)),
            global: global.sem.clone(),
            labels,
        }
    }

    /// Wait for a free slot. Cancel-safe: dropping the future takes nothing.
    pub async fn acquire(&self) -> Slot {
        // The binding's permit first, so a binding at its own limit does not
        // sit on global permits that other bindings could use.
        let own = self.own.clone().acquire_owned().await;
        let global = self.global.clone().acquire_owned().await;
        let (Ok(own), Ok(global)) = (own, global) else {
            // The semaphores are never closed; this is unreachable.
            unreachable!("slot semaphores are never closed");
        };
        self.publish();
        Slot {
            _own: own,
            _global: global,
            owner: self.clone(),
        }
    }

    /// Capacity first, for a poller: a slot, or `None` once `stop` is
    /// cancelled (also when the slot came as shutdown began: a poll must not
    /// be sent after it).
    pub async fn acquire_unless(&self, stop: &CancellationToken) -> Option<Slot> {
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            slot = self.acquire() => slot,
        };
        (!stop.is_cancelled()).then_some(slot)
    }

    /// A slot if one is free right now.
    pub fn try_acquire(&self) -> Option<Slot> {
        let own = self.own.clone().try_acquire_owned().ok()?;
        let global = self.global.clone().try_acquire_owned().ok()?;
        self.publish();
        Some(Slot {
            _own: own,
            _global: global,
            owner: self.clone(),
        })
    }

    fn publish(&self) {
        self.labels.slots_available(self.own.available_permits());
        metrics::global_slots_available(self.global.available_permits());
    }

    /// Slots free now, under both limits.
    pub fn available(&self) -> usize {
        self.own
            .available_permits()
            .min(self.global.available_permits())
    }
}

/// A held slot. Dropping it frees the capacity.
#[derive(Debug)]
pub(crate) struct Slot {
    _own: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    owner: BindingSlots,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permits are released after this body; publish what they will be.
        self.owner
            .labels
            .slots_available(self.owner.own.available_permits() + 1);
        metrics::global_slots_available(self.owner.global.available_permits() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> BindingLabels {
        BindingLabels::new("activity", name.into(), 2)
    }

    #[tokio::test]
    async fn global_limit_caps_every_binding() {
        let global = GlobalSlots::new(3);
        let a = BindingSlots::new(2, &global, labels("a"));
        let b = BindingSlots::new(2, &global, labels("b"));
        let _a1 = a.acquire().await;
        let _a2 = a.acquire().await;
        let _b1 = b.acquire().await;
        assert_eq!(a.available(), 0);
        assert_eq!(b.available(), 0, "global limit of 3 reached");
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), b.acquire());
        assert!(pending.await.is_err());
        drop(_a1);
        assert_eq!(b.available(), 1);
    }
}
