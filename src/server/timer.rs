//! The timer hyper's HTTP/1 server uses for `limits.header_read_timeout`.
//!
//! hyper arms that timeout for every request head it waits for and drops it once the head
//! has been parsed, so on a keep-alive connection each request costs one timer: with
//! `hyper_util::rt::TokioTimer` an allocation, an insert into tokio's timer wheel, its removal,
//! and the wheel's bookkeeping on every park of the runtime, about 4 % of the user-space
//! instructions of a proxied request (measured with `BENCH_CALLGRIND=1 bench/run.sh`). The
//! deadline is seconds away and being late by a fraction of a second changes nothing, which no
//! timer crate trades for: here a pending sleep is one entry in a shared slab, and one thread
//! wakes the entries past their deadline every [`TICK`]. A sleep that is never polled (the head
//! arrived whole with the first read) never touches the slab.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How late a sleep may fire at most (plus scheduling delay).
pub(super) const TICK: Duration = Duration::from_millis(100);

/// A `hyper::rt::Timer` with [`TICK`] resolution. Sleeps may be created, polled and dropped on
/// any thread and runtime.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CoarseTimer;

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep::new(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<CoarseSleep>() {
            Some(sleep) => sleep.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A future that is ready once `deadline` has passed (noticed within [`TICK`]).
#[derive(Debug)]
pub(super) struct CoarseSleep {
    deadline: Instant,
    /// Its entry in the registry, once it has been polled before its deadline.
    key: Option<usize>,
}

impl CoarseSleep {
    pub(super) fn new(deadline: Instant) -> Self {
        CoarseSleep {
            deadline,
            key: None,
        }
    }

    fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Some(key) = self.key {
            if let Some(entry) = registry().entries().get_mut(key) {
                entry.deadline = deadline;
            }
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        let registry = registry();
        let mut entries = registry.entries();
        match this.key.and_then(|key| entries.get_mut(key)) {
            Some(entry) => {
                entry.deadline = this.deadline;
                if !entry
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    entry.waker = Some(cx.waker().clone());
                }
            }
            None => {
                this.key = Some(entries.insert(Entry {
                    deadline: this.deadline,
                    waker: Some(cx.waker().clone()),
                }));
            }
        }
        drop(entries);
        registry.start_ticker();
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            registry().entries().try_remove(key);
        }
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

struct Entry {
    deadline: Instant,
    /// Taken by the ticker when it wakes the sleep; a later poll puts one back.
    waker: Option<Waker>,
}

struct Registry {
    entries: Mutex<slab::Slab<Entry>>,
    ticker: OnceLock<()>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        entries: Mutex::new(slab::Slab::new()),
        ticker: OnceLock::new(),
    })
}

impl Registry {
    fn entries(&self) -> MutexGuard<'_, slab::Slab<Entry>> {
        // The slab stays consistent even if a waker panicked while the lock was held.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The thread that wakes expired sleeps, started with the first sleep that waits.
    fn start_ticker(&'static self) {
        self.ticker.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("omnigate-timer".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    self.wake_expired(Instant::now());
                });
            if let Err(error) = spawned {
                // Without the thread no header timeout fires; connections still work.
                tracing::error!(%error, "Could not start the header-timeout thread.");
            }
        });
    }

    fn wake_expired(&self, now: Instant) {
        let mut expired = Vec::new();
        for (_, entry) in self.entries().iter_mut() {
            if entry.deadline <= now {
                if let Some(waker) = entry.waker.take() {
                    expired.push(waker);
                }
            }
        }
        // Woken outside the lock: a waker may run code that polls or drops a sleep.
        for waker in expired {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    #[tokio::test]
    async fn a_sleep_ends_after_its_deadline_and_leaves_nothing_behind() {
        let started = Instant::now();
        CoarseSleep::new(started + Duration::from_millis(150)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(150), "ended early: {took:?}");
        assert!(
            took < Duration::from_secs(5),
            "ended far too late: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_sleep_past_its_deadline_is_ready_at_once_and_never_registers() {
        let mut sleep = CoarseSleep::new(Instant::now());
        std::future::poll_fn(|cx| Pin::new(&mut sleep).poll(cx)).await;
        assert_eq!(sleep.key, None);
    }

    #[tokio::test]
    async fn a_dropped_sleep_gives_its_entry_back() {
        let mut sleep = CoarseSleep::new(Instant::now() + Duration::from_secs(60));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        let key = sleep.key.expect("registered while waiting");
        assert!(registry().entries().contains(key));
        drop(sleep);
        // Another test's sleep may take the same key meanwhile; then its deadline differs.
        let entries = registry().entries();
        assert!(entries
            .get(key)
            .is_none_or(|e| e.deadline < Instant::now() + Duration::from_secs(59)));
    }

    #[tokio::test]
    async fn reset_moves_a_waiting_sleep_to_the_new_deadline() {
        let timer = CoarseTimer;
        let started = Instant::now();
        let mut sleep = timer.sleep_until(started + Duration::from_secs(60));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        timer.reset(&mut sleep, started + Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("a sleep reset to 100 ms ended within 5 s");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
