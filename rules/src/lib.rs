//! The validation rules of [jetflow](https://docs.rs/jetflow), written once.
//!
//! `#[event]` and `#[handler]` (the `jetflow-macros` crate) check these
//! rules at compile time; the `jetflow` runtime checks the same rules at run
//! time, so a value written by hand (handler options built without
//! `#[handler]`, a subject built from user input) is accepted or rejected
//! exactly as the macros would accept or reject it.
//!
//! | Rule | Functions |
//! |---|---|
//! | event names | [`validate_event_name`], [`default_event_name`] |
//! | versions | [`validate_version`], [`version_number`], [`version_of`] |
//! | subjects | [`validate_subject`], [`validate_publish_subject`], [`validate_subject_token`], [`subject_matches`] |
//! | streams and groups | [`validate_identifier`], [`default_stream`], [`stream_subject`] |
//! | durations | [`parse_duration`], [`parse_duration_list`] |
//! | handler options | [`DEFAULT_MAX_DELIVER`] and the other defaults, [`check_handler_options`] and the `check_*` functions |
//!
//! Every rule returns a typed error whose `Display` says what is wrong and
//! what a valid value looks like.
//!
//! ```
//! use jetflow_rules::{default_event_name, default_stream, validate_version};
//!
//! let name = default_event_name("OrderCreated");
//! assert_eq!(name, "order.created");
//! assert_eq!(default_stream(&name), "ORDER");
//! assert_eq!(validate_version("v2"), Ok(2));
//! assert!(validate_version("v01").is_err());
//! ```
//!
//! The crate has no dependencies and no `unsafe` code.

#![forbid(unsafe_code)]

mod duration;
mod ident;
mod name;
mod options;
mod subject;
mod version;

pub use duration::{DurationError, parse_duration, parse_duration_list};
pub use ident::{
    IdentifierError, IdentifierKind, default_stream, stream_subject, validate_identifier,
};
pub use name::{NameError, default_event_name, validate_event_name};
pub use options::{
    DEFAULT_ACK_WAIT, DEFAULT_BACKOFF, DEFAULT_CONCURRENCY, DEFAULT_DEAD_LETTER,
    DEFAULT_MAX_DELIVER, DEFAULT_PREFETCH, HandlerOptionValues, MAX_CONCURRENCY, MAX_PREFETCH,
    MIN_ACK_WAIT, OptionError, check_ack_wait, check_backoff, check_backoff_delays,
    check_backoff_retries, check_concurrency, check_handler_options, check_idempotent,
    check_max_deliver, check_prefetch,
};
pub use subject::{
    SubjectError, TokenError, subject_matches, validate_publish_subject, validate_subject,
    validate_subject_token,
};
pub use version::{VersionError, validate_version, version_number, version_of};
