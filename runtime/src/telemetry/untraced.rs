//! The tracing of the runtime when the `otel` feature is off: the handler
//! span for logs, and nothing else (no producer span, no header written or
//! read; every call is an empty inline function).

use tracing::Span;
use tracing::field::Empty;

use crate::transport::Headers;

/// Where a consumed message comes from, for its handler span.
pub(crate) struct Delivery<'a> {
    #[allow(dead_code)]
    pub(crate) system: &'static str,
    pub(crate) handler: &'static str,
    #[allow(dead_code)]
    pub(crate) group: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) stream: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) seq: u64,
    pub(crate) delivered: u64,
    pub(crate) event_id: &'a str,
    #[allow(dead_code)]
    pub(crate) headers: &'a Headers,
}

/// The handler span of one delivery, for its log lines (and no trace id).
pub(crate) fn handler_span(d: Delivery<'_>) -> (Span, Option<u128>) {
    let span = tracing::info_span!(
        "jetflow.handle",
        handler = d.handler,
        subject = d.subject,
        stream = d.stream,
        consumer = d.consumer,
        seq = d.seq,
        delivered = d.delivered,
        event_id = d.event_id,
        outcome = Empty,
    );
    (span, None)
}

#[inline(always)]
pub(crate) fn publish_span(_system: &'static str, _subject: &str, _msg_id: &str) -> Span {
    Span::none()
}

#[inline(always)]
pub(crate) fn batch_span(_system: &'static str, _subject: &str, _count: usize) -> Span {
    Span::none()
}

#[inline(always)]
pub(crate) fn continue_from(_span: &Span, _headers: &Headers) {}

#[inline(always)]
pub(crate) fn inject(_headers: &mut Headers) {}
