//! Tokens running in this process, for at-least-once delivery.
//!
//! SQS may deliver a message twice (or a state may send the same token
//! twice). A second delivery of a token whose handler is running does not
//! start another handler: its receipt handle joins the running task's, so
//! it is kept invisible and deleted with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The receipt handles of one running task's deliveries.
#[derive(Debug, Default)]
pub(crate) struct Deliveries(Mutex<Vec<String>>);

impl Deliveries {
    pub fn handles(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn push(&self, handle: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle.to_owned());
    }
}

pub(crate) enum Claim {
    /// First delivery: run it.
    New(Arc<Deliveries>),
    /// Already running here: the handle was attached to the running task.
    Duplicate,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight(Mutex<HashMap<String, Arc<Deliveries>>>);

impl InFlight {
    pub fn claim(&self, token: &str, receipt_handle: &str) -> Claim {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(token) {
            existing.push(receipt_handle);
            return Claim::Duplicate;
        }
        let deliveries = Arc::new(Deliveries::default());
        deliveries.push(receipt_handle);
        map.insert(token.to_owned(), deliveries.clone());
        Claim::New(deliveries)
    }

    pub fn finish(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_delivery_joins_the_first() {
        let f = InFlight::default();
        let Claim::New(d) = f.claim("T", "h1") else {
            panic!("first claim")
        };
        assert!(matches!(f.claim("T", "h2"), Claim::Duplicate));
        assert_eq!(d.handles(), ["h1", "h2"]);
        f.finish("T");
        assert!(matches!(f.claim("T", "h3"), Claim::New(_)));
    }
}
