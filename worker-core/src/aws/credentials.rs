//! The direct clients' credentials: fetched from the SDK's provider chain,
//! cached, and refreshed in the background before they expire.
//!
//! The hot path (every signed call) only reads the cache. Credentials
//! within [`REFRESH_BEFORE_EXPIRY`] of their expiry are still used while
//! one background task fetches new ones (at most one every
//! [`MIN_REFRESH_GAP`]: a provider that keeps handing out the same
//! soon-expiring credentials is not asked on every call). Only credentials
//! about to expire ([`STILL_USABLE_FOR`]), or none at all, make a call wait
//! for the provider, one fetch at a time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::aws::{ApiError, ApiErrorKind};

/// A background refresh starts this long before the credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials closer than this to their expiry are not signed with: a
/// request may take that long to reach the service.
const STILL_USABLE_FOR: Duration = Duration::from_secs(15);
/// The shortest time between two background refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(10);

/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub(crate) struct CredentialCache(Arc<Inner>);

struct Inner {
    provider: Option<SharedCredentialsProvider>,
    cached: RwLock<Option<Credentials>>,
    /// One foreground fetch at a time; the others wait and take its result.
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// When the last background refresh started.
    last_refresh: Mutex<Option<tokio::time::Instant>>,
    /// Bumped when the service refuses the cached credentials: a background
    /// refresh started before that may bring back the refused ones, so its
    /// result is not cached.
    refused: AtomicU64,
}

impl CredentialCache {
    pub fn new(provider: Option<SharedCredentialsProvider>) -> Self {
        Self(Arc::new(Inner {
            provider,
            cached: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            last_refresh: Mutex::new(None),
            refused: AtomicU64::new(0),
        }))
    }

    /// Credentials to sign with now.
    pub async fn get(&self) -> Result<Credentials, ApiError> {
        if let Some(c) = self.usable() {
            return Ok(c);
        }
        let _fetching = self.0.fetching.lock().await;
        if let Some(c) = self.usable() {
            return Ok(c);
        }
        let refused = self.0.refused.load(Ordering::Acquire);
        let c = fetch(self.0.provider.as_ref()).await?;
        let mut cached = self.0.cached.write().unwrap_or_else(|e| e.into_inner());
        // Refused while they were fetched: used for this call (they are the
        // provider's newest), but not kept for the next.
        if self.0.refused.load(Ordering::Acquire) == refused {
            *cached = Some(c.clone());
        }
        Ok(c)
    }

    /// The service refused them: the next call fetches anew.
    pub fn drop_cached(&self) {
        self.0.refused.fetch_add(1, Ordering::AcqRel);
        *self.0.cached.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The cached credentials if they can still be signed with, starting a
    /// background refresh when they expire soon.
    fn usable(&self) -> Option<Credentials> {
        let cached = self
            .0
            .cached
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let Some(expiry) = cached.expiry() else {
            return Some(cached);
        };
        let now = SystemTime::now();
        if now + REFRESH_BEFORE_EXPIRY >= expiry {
            self.refresh_in_background();
        }
        (now + STILL_USABLE_FOR < expiry).then_some(cached)
    }

    fn refresh_in_background(&self) {
        {
            let mut last = self
                .0
                .last_refresh
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now < at + MIN_REFRESH_GAP)
                || self.0.refreshing.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(now);
        }
        let cache = self.clone();
        let refused = self.0.refused.load(Ordering::Acquire);
        tokio::spawn(async move {
            match fetch(cache.0.provider.as_ref()).await {
                Ok(c) => {
                    let mut cached = cache.0.cached.write().unwrap_or_else(|e| e.into_inner());
                    if cache.0.refused.load(Ordering::Acquire) == refused {
                        *cached = Some(c);
                    }
                }
                Err(e) => {
                    tracing::warn!(code = %e.code, error = %e.message,
                        "refreshing credentials before they expire failed; retrying soon");
                }
            }
            cache.0.refreshing.store(false, Ordering::Release);
        });
    }
}

async fn fetch(provider: Option<&SharedCredentialsProvider>) -> Result<Credentials, ApiError> {
    let provider = provider.ok_or_else(|| {
        ApiError::new(
            ApiErrorKind::Rejected,
            "NoCredentials",
            "no credentials provider is configured",
        )
    })?;
    provider.provide_credentials().await.map_err(|e| {
        ApiError::new(
            ApiErrorKind::Transient,
            "CredentialsError",
            aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::AtomicUsize;

    /// Hands out credentials expiring `lifetime` from now, counting calls.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn cache(lifetime: Duration) -> (CredentialCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            calls: calls.clone(),
            lifetime,
        };
        (
            CredentialCache::new(Some(SharedCredentialsProvider::new(provider))),
            calls,
        )
    }

    /// Issue 21, item 14: credentials with under 5 minutes left used to be
    /// fetched anew by every call, one at a time behind a mutex.
    #[tokio::test]
    async fn credentials_close_to_expiry_are_used_while_they_refresh_in_the_background() {
        let (c, calls) = cache(Duration::from_secs(120));
        let all = futures::future::join_all((0..100).map(|_| c.get())).await;
        assert!(all.iter().all(Result::is_ok));
        tokio::task::yield_now().await;
        // One foreground fetch, then at most one background refresh per gap.
        assert!(calls.load(Ordering::SeqCst) <= 2, "{calls:?}");
        for _ in 0..100 {
            c.get().await.unwrap();
        }
        assert!(calls.load(Ordering::SeqCst) <= 2, "{calls:?}");
    }

    #[tokio::test]
    async fn long_lived_credentials_are_fetched_once_and_expired_ones_again() {
        let (c, calls) = cache(Duration::from_secs(3600));
        for _ in 0..10 {
            c.get().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The control: credentials that cannot be used any more are fetched
        // before the call goes out.
        let (c, calls) = cache(Duration::from_secs(5));
        c.get().await.unwrap();
        c.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        c.drop_cached();
    }

    /// Review of issue 21: a background refresh started before the service
    /// refused the credentials may fetch the refused ones again; it must not
    /// put them back in the cache the refusal emptied.
    #[tokio::test]
    async fn a_refresh_started_before_a_refusal_does_not_refill_the_cache() {
        let (c, calls) = cache(Duration::from_secs(120));
        c.get().await.unwrap();
        // Close to expiry: this starts a background refresh (not run yet).
        c.get().await.unwrap();
        c.drop_cached();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the refresh ran");
        // Fetched anew in the foreground, not the refresh's result.
        assert_eq!(c.get().await.unwrap().access_key_id(), "AKID2");
    }
}
