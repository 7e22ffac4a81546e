//! The process's named brokers: `memory://{name}` reaches the same broker
//! from every app and bus of the process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::Broker;

fn registry() -> &'static Mutex<HashMap<String, Broker>> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Broker>>> = OnceLock::new();
    BROKERS.get_or_init(Default::default)
}

/// The broker named `name`, created on first use.
pub(super) fn named(name: &str) -> Broker {
    let mut brokers = registry().lock().unwrap_or_else(|p| p.into_inner());
    brokers
        .entry(name.to_owned())
        .or_insert_with(|| Broker::new(name))
        .clone()
}
