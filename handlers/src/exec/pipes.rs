//! Reading the command's stdout and stderr, while it runs and after it
//! exited.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// After the command exited, its pipes are read until nothing arrives for
/// this long (something it left behind may keep them open forever).
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// What a reader kept of one pipe.
#[derive(Default)]
pub(super) struct Captured {
    pub(super) bytes: Vec<u8>,
    /// More was written than was kept.
    pub(super) overflow: bool,
}

/// Read all of `r` into `into`, keeping the first `max` bytes; the rest is
/// drained so the writer never blocks. `progress` counts bytes read.
pub(super) async fn read_bounded(
    r: Option<impl AsyncRead + Unpin>,
    max: usize,
    into: &mut Captured,
    progress: &AtomicUsize,
) {
    let Some(mut r) = r else { return };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                progress.fetch_add(n, Ordering::Relaxed);
                let room = max.saturating_sub(into.bytes.len());
                into.bytes.extend_from_slice(&buf[..n.min(room)]);
                into.overflow |= n > room;
            }
        }
    }
}

/// Read all of `r` into `into`, keeping the last `max` bytes.
pub(super) async fn read_tail(
    r: Option<impl AsyncRead + Unpin>,
    max: usize,
    into: &mut Captured,
    progress: &AtomicUsize,
) {
    let Some(mut r) = r else { return };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                progress.fetch_add(n, Ordering::Relaxed);
                into.bytes.extend_from_slice(&buf[..n]);
                if into.bytes.len() > max {
                    let excess = into.bytes.len() - max;
                    into.bytes.drain(..excess);
                }
            }
        }
    }
}

/// The command exited but something it started still holds its pipes.
/// What the command wrote is in them: read until they go quiet, then stop
/// waiting for end-of-file.
pub(super) async fn drain(mut io: Pin<&mut impl Future<Output = ()>>, progress: &AtomicUsize) {
    loop {
        let before = progress.load(Ordering::Relaxed);
        if tokio::time::timeout(DRAIN_QUIET, &mut io).await.is_ok()
            || progress.load(Ordering::Relaxed) == before
        {
            break;
        }
    }
}
