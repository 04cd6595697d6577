//! Reading the command's stdout and stderr, while it runs and after it
//! exited.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// After the command exited, its pipes are read until nothing arrives for
/// this long (something it left behind may keep them open forever).
const DRAIN_QUIET: Duration = Duration::from_millis(50);
/// ... and for this long at most in all, for what it left behind may also
/// write for ever (`yes &`). What the command itself wrote before it exited
/// is already in the pipes' buffers (64 KiB each on Linux), which are read
/// in well under a millisecond: half a second leaves room for a loaded
/// machine, and is short next to a task's own time.
const DRAIN_MAX: Duration = Duration::from_millis(500);

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
/// What the command wrote is in them: read until they close or go quiet,
/// for `DRAIN_MAX` at most, and stop at once if `cancelled` ends (the
/// command's result is then made of what was read by then).
pub(super) async fn drain(
    mut io: Pin<&mut impl Future<Output = ()>>,
    progress: &AtomicUsize,
    cancelled: impl Future,
) {
    let deadline = Instant::now() + DRAIN_MAX;
    let mut cancelled = pin!(cancelled);
    loop {
        let before = progress.load(Ordering::Relaxed);
        let quiet = deadline.min(Instant::now() + DRAIN_QUIET);
        tokio::select! {
            // `timeout_at` polls the pipes before its clock, so what
            // arrived last is read before a stop for quiet.
            read = tokio::time::timeout_at(quiet, &mut io) => {
                if read.is_ok() || quiet == deadline || progress.load(Ordering::Relaxed) == before {
                    return;
                }
            }
            _ = &mut cancelled => {
                // Cancelled as the command exited, what it wrote may not
                // have been read yet: take what the pipes hold now, without
                // waiting for more.
                let _ = tokio::time::timeout(Duration::ZERO, &mut io).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pipes held open by something that writes every 10 ms, forever.
    async fn chatty(progress: &AtomicUsize) {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_ends_even_if_something_keeps_writing() {
        let progress = AtomicUsize::new(0);
        let start = Instant::now();
        let drained = tokio::time::timeout(
            Duration::from_secs(3600),
            drain(
                pin!(chatty(&progress)),
                &progress,
                std::future::pending::<()>(),
            ),
        )
        .await;
        assert!(drained.is_ok(), "still draining after an hour");
        assert_eq!(start.elapsed(), DRAIN_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_stops_when_the_task_is_cancelled() {
        let progress = AtomicUsize::new(0);
        let start = Instant::now();
        let cancelled = tokio::time::sleep(Duration::from_millis(120));
        drain(pin!(chatty(&progress)), &progress, cancelled).await;
        assert_eq!(start.elapsed(), Duration::from_millis(120));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_as_the_command_exits_the_drain_still_reads_what_is_buffered() {
        let progress = AtomicUsize::new(0);
        let buffered = async {
            progress.fetch_add(2, Ordering::Relaxed);
            std::future::pending::<()>().await;
        };
        drain(pin!(buffered), &progress, std::future::ready(())).await;
        assert_eq!(progress.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_ends_when_the_pipes_go_quiet() {
        let progress = AtomicUsize::new(0);
        let start = Instant::now();
        let held_open = std::future::pending::<()>();
        drain(pin!(held_open), &progress, std::future::pending::<()>()).await;
        assert_eq!(start.elapsed(), DRAIN_QUIET);
    }
}
