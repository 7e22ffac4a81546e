//! The process's named brokers: `memory://{name}` reaches the same broker
//! from every app and bus of the process, as long as one of them (or a
//! [`Broker`] handle) keeps it alive. The registry holds no broker itself:
//! a broker nobody uses is dropped with its messages, and its name is
//! forgotten, so a process that opens many names does not keep them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{Broker, Shared};

fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    BROKERS.get_or_init(Default::default)
}

/// The live broker named `name`, or a new one.
pub(super) fn named(name: &str) -> Broker {
    let mut brokers = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = brokers.get(name).and_then(Weak::upgrade) {
        return Broker { shared };
    }
    // forget the names of brokers nobody uses any more
    brokers.retain(|_, b| b.strong_count() > 0);
    let broker = Broker::new(name);
    brokers.insert(name.to_owned(), Arc::downgrade(&broker.shared));
    broker
}

/// Names the registry still knows (live brokers, and dead ones not yet
/// forgotten).
#[cfg(test)]
fn known() -> usize {
    registry().lock().unwrap_or_else(|p| p.into_inner()).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_lives_while_used_and_its_name_is_then_forgotten() {
        let kept = named("registry-test-kept");
        kept.shared.changed.send_replace(7);
        // the same broker while a handle is alive
        assert_eq!(*named("registry-test-kept").shared.changed.borrow(), 7);
        for i in 0..1000 {
            drop(named(&format!("registry-test-{i}")));
        }
        assert!(
            known() < 100,
            "dead brokers are forgotten: {} known",
            known()
        );
        assert_eq!(*named("registry-test-kept").shared.changed.borrow(), 7);
        drop(kept);
        // nobody used it any more: a new, empty broker
        assert_eq!(*named("registry-test-kept").shared.changed.borrow(), 0);
    }
}
