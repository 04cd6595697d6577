//! An in-process ledger with DynamoDB's conditional-write rules, for tests
//! and benchmarks of code built on this crate. Feature `test-util`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Claim, ClaimRequest, KEY, LedgerApi, Stored, TTL_ATTRIBUTE, TableShape};
use crate::aws::{ApiError, ApiErrorKind};

#[derive(Debug, Clone)]
enum Item {
    InProgress { holder: String, lease_ms: u64 },
    Completed { holder: String, outcome: Stored },
}

/// A ledger table in memory. Every write is applied under one lock, as
/// DynamoDB applies a conditional write to one item atomically.
#[derive(Debug, Default)]
pub struct FakeLedger {
    items: Mutex<HashMap<String, Item>>,
    unreachable: AtomicBool,
    calls: AtomicU64,
}

impl FakeLedger {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every call fails as if the table could not be reached
    /// (`true`), or works again (`false`).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::Relaxed);
    }

    /// Calls made so far (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The stored outcome of the task with `key`, once settled.
    pub fn completed(&self, key: &str) -> Option<Stored> {
        match self.lock().get(key)? {
            Item::Completed { outcome, .. } => Some(outcome.clone()),
            Item::InProgress { .. } => None,
        }
    }

    /// Items in the table.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Item>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Item>>, ApiError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.unreachable.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                ApiErrorKind::Transient,
                "ConnectFailure",
                "the fake ledger is unreachable",
            ));
        }
        Ok(self.lock())
    }
}

#[async_trait]
impl LedgerApi for FakeLedger {
    async fn claim(&self, r: &ClaimRequest<'_>) -> Result<Claim, ApiError> {
        let mut items = self.enter()?;
        let took_over = match items.get(r.key) {
            None => false,
            Some(Item::InProgress { holder, .. }) if holder == r.holder => false,
            Some(Item::InProgress { lease_ms, .. }) if *lease_ms < r.now_ms => true,
            Some(Item::InProgress { lease_ms, .. }) => {
                return Ok(Claim::HeldElsewhere {
                    lease_ms: *lease_ms,
                });
            }
            Some(Item::Completed { outcome, .. }) => return Ok(Claim::Completed(outcome.clone())),
        };
        items.insert(
            r.key.to_owned(),
            Item::InProgress {
                holder: r.holder.to_owned(),
                lease_ms: r.lease_ms,
            },
        );
        Ok(Claim::Won { took_over })
    }

    async fn renew(
        &self,
        key: &str,
        holder: &str,
        lease_ms: u64,
        _expires_at: u64,
    ) -> Result<bool, ApiError> {
        let mut items = self.enter()?;
        match items.get_mut(key) {
            Some(Item::InProgress {
                holder: h,
                lease_ms: l,
            }) if h == holder => {
                *l = lease_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn settle(
        &self,
        key: &str,
        holder: &str,
        outcome: &Stored,
        _expires_at: u64,
    ) -> Result<bool, ApiError> {
        let mut items = self.enter()?;
        let mine = match items.get(key) {
            None => true,
            Some(Item::InProgress { holder: h, .. } | Item::Completed { holder: h, .. }) => {
                h == holder
            }
        };
        if mine {
            items.insert(
                key.to_owned(),
                Item::Completed {
                    holder: holder.to_owned(),
                    outcome: outcome.clone(),
                },
            );
        }
        Ok(mine)
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), ApiError> {
        let mut items = self.enter()?;
        if matches!(items.get(key), Some(Item::InProgress { holder: h, .. }) if h == holder) {
            items.remove(key);
        }
        Ok(())
    }

    async fn describe(&self) -> Result<TableShape, ApiError> {
        drop(self.enter()?);
        Ok(TableShape {
            keys: vec![(KEY.into(), "HASH".into(), "S".into())],
            ttl: Some((TTL_ATTRIBUTE.into(), "ENABLED".into())),
        })
    }
}
