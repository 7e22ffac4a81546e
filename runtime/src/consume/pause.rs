//! [`Pause`]: a handler's consumption paused while its idempotency store
//! cannot be reached. Workers waiting for the store hold a
//! [`Paused`] guard; while any does, the flow grants no credits (nothing
//! more is pulled) and the loop's state is
//! [`LoopState::Paused`](crate::LoopState::Paused); when the last guard
//! drops, the loop receives again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::status::{LoopState, StateCell};

pub(super) struct Pause {
    /// Workers waiting for the store.
    blocked: AtomicUsize,
    /// Why the loop is paused (the first failure of this pause).
    reason: Mutex<String>,
    /// Told when the pause ends, so the flow grants credits again.
    resumed: Notify,
    state: Arc<StateCell>,
}

/// One worker waiting for the store; the pause lasts while any exists.
pub(super) struct Paused<'a>(&'a Pause);

impl Pause {
    pub(super) fn new(state: Arc<StateCell>) -> Pause {
        Pause {
            blocked: AtomicUsize::new(0),
            reason: Mutex::new(String::new()),
            resumed: Notify::new(),
            state,
        }
    }

    /// A worker cannot reach the store, because of `reason`.
    pub(super) fn enter(&self, reason: String) -> Paused<'_> {
        if self.blocked.fetch_add(1, Ordering::SeqCst) == 0 {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.clone();
            self.state.set_if(
                |s| matches!(s, LoopState::Receiving | LoopState::Starting),
                LoopState::Paused { reason },
            );
        }
        Paused(self)
    }

    /// Some worker waits for the store: grant no credits.
    pub(super) fn is_paused(&self) -> bool {
        self.blocked.load(Ordering::SeqCst) > 0
    }

    /// The state of a loop that receives: paused while a worker waits for
    /// the store, else receiving.
    pub(super) fn receiving_state(&self) -> LoopState {
        if self.is_paused() {
            let reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
            LoopState::Paused {
                reason: reason.clone(),
            }
        } else {
            LoopState::Receiving
        }
    }

    /// Resolves once a pause ended (at once if one ended unobserved).
    pub(super) async fn resumed(&self) {
        self.resumed.notified().await;
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let pause = self.0;
        if pause.blocked.fetch_sub(1, Ordering::SeqCst) == 1 {
            pause.state.set_if(
                |s| matches!(s, LoopState::Paused { .. }),
                LoopState::Receiving,
            );
            pause.resumed.notify_one();
        }
    }
}
