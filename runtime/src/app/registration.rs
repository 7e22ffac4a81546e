//! A registered handler with its types erased, so that [`App`](super::App)
//! holds handlers of every event type in one list.

use std::sync::Arc;

use crate::consume::Process;
use crate::event::{self, Event};
use crate::handler::{Extensions, Handler, HandlerOptions, MissingState};

pub(super) trait Registration: Send + Sync {
    fn options(&self) -> &HandlerOptions;
    fn event_name(&self) -> &'static str;
    fn event_subject(&self) -> &'static str;
    /// The consumer's filter (or the notifications' subject).
    fn subject(&self) -> String;
    fn stream(&self) -> &'static str;
    /// The event is a notification: no stream, no durable.
    fn notification(&self) -> bool;
    fn check(&self, extensions: &Extensions) -> Result<(), MissingState>;
    fn describe(&self, app_name: &str) -> crate::asyncapi::Receiver;
    fn process(&self) -> Arc<dyn Process>;
}

pub(super) struct Registered<H>(pub(super) Arc<H>);

impl<H: Handler> Registration for Registered<H> {
    fn options(&self) -> &HandlerOptions {
        &H::OPTIONS
    }
    fn event_name(&self) -> &'static str {
        H::Event::NAME
    }
    fn event_subject(&self) -> &'static str {
        H::Event::SUBJECT
    }
    fn subject(&self) -> String {
        H::OPTIONS
            .subject
            .map_or_else(event::filter_subject::<H::Event>, str::to_owned)
    }
    fn stream(&self) -> &'static str {
        H::Event::STREAM
    }
    fn notification(&self) -> bool {
        H::Event::NOTIFICATION
    }
    fn check(&self, extensions: &Extensions) -> Result<(), MissingState> {
        self.0.check(extensions)
    }
    fn describe(&self, app_name: &str) -> crate::asyncapi::Receiver {
        crate::asyncapi::Receiver::of::<H>(app_name, self.subject())
    }
    fn process(&self) -> Arc<dyn Process> {
        self.0.clone()
    }
}
