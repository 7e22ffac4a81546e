//! What `/readyz` answers: the app's phase, the broker connection and
//! every consume loop's [`LoopState`](crate::LoopState).

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::publish::Bus;
use crate::status::{HandlerStatus, StateCell};

/// The app as readiness sees it; set by the app as it starts and stops.
#[derive(Debug)]
pub(crate) struct Readiness {
    phase: RwLock<Phase>,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Opening the connection to the broker.
    Connecting,
    /// Declaring streams and consumers.
    Provisioning,
    /// Consume loops started.
    Running(Loops),
    /// A stop was asked for: draining.
    Stopping(Loops),
}

#[derive(Debug, Clone)]
struct Loops {
    states: Vec<Arc<StateCell>>,
    bus: Bus,
}

/// One answer of `/readyz`.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) ready: bool,
    pub(crate) body: Value,
}

impl Readiness {
    pub(crate) fn new() -> Arc<Readiness> {
        Arc::new(Readiness {
            phase: RwLock::new(Phase::Connecting),
        })
    }

    fn set(&self, phase: Phase) {
        *self.phase.write().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    pub(crate) fn provisioning(&self) {
        self.set(Phase::Provisioning);
    }

    pub(crate) fn running(&self, states: Vec<Arc<StateCell>>, bus: Bus) {
        self.set(Phase::Running(Loops { states, bus }));
    }

    pub(crate) fn stopping(&self) {
        let mut phase = self.phase.write().unwrap_or_else(|p| p.into_inner());
        if let Phase::Running(loops) = &*phase {
            *phase = Phase::Stopping(loops.clone());
        }
    }

    /// Ready or not, and the JSON body that says why.
    pub(crate) fn report(&self) -> Report {
        let phase = self.phase.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (name, loops) = match &phase {
            Phase::Connecting => ("connecting", None),
            Phase::Provisioning => ("provisioning", None),
            Phase::Running(l) => ("running", Some(l)),
            Phase::Stopping(l) => ("stopping", Some(l)),
        };
        let mut reasons = Vec::new();
        match &phase {
            Phase::Connecting => reasons.push("the app is connecting to the broker".to_owned()),
            Phase::Provisioning => {
                reasons.push("the app is declaring its streams and consumers".to_owned())
            }
            Phase::Stopping(_) => reasons.push("the app is stopping".to_owned()),
            Phase::Running(_) => {}
        }
        let connected = loops.map(|l| l.bus.transport().is_connected());
        if connected == Some(false) {
            reasons.push("the connection to the broker is down (reconnecting)".to_owned());
        }
        let handlers: Vec<Value> = loops
            .map(|l| l.states.iter().map(|s| s.status()).collect::<Vec<_>>())
            .unwrap_or_default()
            .iter()
            .map(|status| {
                let ready = status.state.is_ready();
                if !ready {
                    reasons.push(format!("handler `{}`: {}", status.handler, status.state));
                }
                handler_json(status, ready)
            })
            .collect();
        Report {
            ready: reasons.is_empty(),
            body: json!({
                "ready": reasons.is_empty(),
                "phase": name,
                "connected": connected,
                "reasons": reasons,
                "handlers": handlers,
            }),
        }
    }
}

fn handler_json(status: &HandlerStatus, ready: bool) -> Value {
    let since = OffsetDateTime::from(status.since)
        .format(&Rfc3339)
        .unwrap_or_default();
    json!({
        "handler": status.handler,
        "source": status.source,
        "state": status.state.name(),
        "ready": ready,
        // why it is not ready: the state with its reason or error
        "reason": (!ready).then(|| status.state.to_string()),
        "since": since,
    })
}
