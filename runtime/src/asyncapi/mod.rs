//! The AsyncAPI 3.0 document of an [`App`](crate::App), generated from its
//! handlers and the events it publishes: [`App::asyncapi`](crate::App::asyncapi).
//!
//! - one **channel** per event name, with the address `{name}.{version}`
//!   and a `version` parameter listing every version the app knows; its
//!   messages are the versions, each with its JSON Schema (schemars, draft
//!   07, shared types under `components.schemas`) and the CloudEvents
//!   headers of jetflow's wire contract;
//! - one **receive operation** per handler (named after it), listing the
//!   versions it decodes (its `upcast_from` chain), with the NATS binding
//!   `queue` = its durable consumer, and `x-jetflow-*` extensions for the
//!   group, durable, stream and consumer filter;
//! - one **send operation** per event registered with
//!   [`App::publishes`](crate::App::publishes).
//!
//! ```
//! use jetflow::prelude::*;
//!
//! #[event(version = "v1")]
//! pub struct OrderCreated { pub order_id: String }
//!
//! #[handler(group = "inventory")]
//! async fn reserve_stock(order: OrderCreated) {}
//!
//! let doc = App::new("inventory").handler(reserve_stock).publishes::<OrderCreated>().asyncapi();
//! let json = doc.to_json();
//! assert_eq!(json["asyncapi"], "3.0.0");
//! assert_eq!(json["channels"]["order_created"]["address"], "order.created.{version}");
//! assert_eq!(json["operations"]["reserve_stock"]["bindings"]["nats"]["queue"], "inventory--order_created");
//! assert!(doc.to_yaml().starts_with("asyncapi: \"3.0.0\""));
//! ```

#[cfg(feature = "ops")]
mod routes;
#[cfg(feature = "asyncapi-ui")]
mod ui;

#[cfg(feature = "ops")]
pub(crate) use routes::routes;

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::event::{EventInfo, version_number};
use crate::handler::Handler;
use crate::publish::{WireProfile, headers};
use crate::topology::durable_name;

/// The version of the AsyncAPI specification the document follows.
pub const SPEC_VERSION: &str = "3.0.0";

/// A handler as the document describes it (see [`App::asyncapi`](crate::App::asyncapi)).
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    handler: &'static str,
    group: String,
    durable: String,
    filter_subject: String,
    stream: &'static str,
    history: Vec<EventInfo>,
}

impl Receiver {
    /// `H` in an app named `app_name`, consuming `filter_subject`.
    pub(crate) fn of<H: Handler>(app_name: &str, filter_subject: String) -> Receiver {
        let group = H::OPTIONS.group.unwrap_or(app_name).to_owned();
        Receiver {
            handler: H::OPTIONS.name,
            durable: durable_name(&group, <H::Event as crate::Event>::NAME),
            group,
            filter_subject,
            stream: <H::Event as crate::Event>::STREAM,
            history: <H::Event as crate::Event>::history(),
        }
    }
}

/// An AsyncAPI 3.0 document, as JSON or YAML.
#[derive(Debug, Clone)]
pub struct AsyncApi {
    document: Value,
}

impl AsyncApi {
    pub(crate) fn new(
        app_name: &str,
        url: &str,
        receivers: impl Iterator<Item = Receiver>,
        publishes: &[EventInfo],
        profile: WireProfile,
    ) -> AsyncApi {
        let receivers: Vec<Receiver> = receivers.collect();
        // Every version the app knows, per event name, oldest first.
        let mut events: BTreeMap<&'static str, Vec<EventInfo>> = BTreeMap::new();
        let all = receivers
            .iter()
            .flat_map(|r| r.history.iter())
            .chain(publishes);
        for info in all {
            let versions = events.entry(info.name).or_default();
            if !versions.iter().any(|v| v.version == info.version) {
                versions.push(*info);
            }
        }
        for versions in events.values_mut() {
            versions.sort_by_key(|v| version_number(v.version));
        }

        let mut generator = SchemaSettings::draft07()
            .with(|s| s.definitions_path = "/components/schemas".into())
            .into_generator();
        let mut channels = Map::new();
        let mut messages = Map::new();
        for (name, versions) in &events {
            let mut channel_messages = Map::new();
            for info in versions {
                let key = message_key(info);
                channel_messages.insert(
                    key.clone(),
                    json!({ "$ref": format!("#/components/messages/{key}") }),
                );
                messages.insert(key, message(info, profile, &mut generator));
            }
            let enum_: Vec<&str> = versions.iter().map(|v| v.version).collect();
            channels.insert(
                key_of(name),
                json!({
                    "address": format!("{name}.{{version}}"),
                    "title": *name,
                    "description": format!(
                        "Event `{name}`, one subject per version, stored in stream `{}`.",
                        versions.last().map_or("", |v| v.stream)
                    ),
                    "parameters": {
                        "version": {
                            "enum": enum_,
                            "description": "The event version; a consumer upcasts the older ones it knows and dead-letters newer ones.",
                        }
                    },
                    "messages": channel_messages,
                }),
            );
        }

        let mut operations = Map::new();
        for r in &receivers {
            let Some(name) = r.history.last().map(|v| v.name) else {
                continue;
            };
            operations.insert(
                key_of(r.handler),
                json!({
                    "action": "receive",
                    "title": r.handler,
                    "summary": format!("Handler `{}` of group `{}`.", r.handler, r.group),
                    "channel": { "$ref": format!("#/channels/{}", key_of(name)) },
                    "messages": operation_messages(name, &r.history),
                    "bindings": { "nats": { "queue": r.durable, "bindingVersion": "0.1.0" } },
                    "x-jetflow-group": r.group,
                    "x-jetflow-durable": r.durable,
                    "x-jetflow-stream": r.stream,
                    "x-jetflow-filter-subject": r.filter_subject,
                }),
            );
        }
        for info in publishes {
            operations.insert(
                format!("publish_{}", message_key(info)),
                json!({
                    "action": "send",
                    "title": format!("publish {}", info.subject),
                    "channel": { "$ref": format!("#/channels/{}", key_of(info.name)) },
                    "messages": operation_messages(info.name, std::slice::from_ref(info)),
                }),
            );
        }

        let schemas = generator.take_definitions(true);
        let document = json!({
            "asyncapi": SPEC_VERSION,
            "info": {
                "title": app_name,
                "version": env!("CARGO_PKG_VERSION"),
                "description": format!("Events `{app_name}` consumes and publishes on NATS JetStream (generated by jetflow)."),
            },
            "defaultContentType": "application/json",
            "servers": {
                "nats": {
                    "host": server_host(url),
                    "protocol": "nats",
                    "description": "NATS with JetStream",
                }
            },
            "channels": channels,
            "operations": operations,
            "components": {
                "messages": messages,
                "schemas": schemas,
            },
        });
        AsyncApi { document }
    }

    /// The document as a JSON value.
    pub fn to_json(&self) -> Value {
        self.document.clone()
    }

    /// The document as pretty-printed JSON text.
    pub fn to_json_string(&self) -> String {
        // A `Value` always serializes.
        serde_json::to_string_pretty(&self.document).unwrap_or_default()
    }

    /// The document as YAML text.
    pub fn to_yaml(&self) -> String {
        // A JSON value always serializes to YAML.
        serde_saphyr::to_string(&self.document).unwrap_or_default()
    }
}

/// The message of one event version: payload schema, CloudEvents headers
/// (required when the app publishes [`WireProfile::CloudEvents`]).
fn message(
    info: &EventInfo,
    profile: WireProfile,
    generator: &mut schemars::SchemaGenerator,
) -> Value {
    let payload = info
        .schema(generator)
        .map_or_else(|| json!({ "type": "object" }), |s| s.to_value());
    let string = |description: &str| json!({ "type": "string", "description": description });
    let (required, note) = match profile {
        WireProfile::CloudEvents => (
            vec![
                headers::SPEC_VERSION,
                headers::ID,
                headers::TYPE,
                headers::SOURCE,
                headers::TIME,
            ],
            "CloudEvents binary mode.",
        ),
        WireProfile::Lean => (
            Vec::new(),
            "Published with the lean wire profile: the event id is in the transport's own id \
             field (`Nats-Msg-Id` on JetStream), the type is the subject, the time is the \
             broker's; these headers are present only on messages of CloudEvents publishers.",
        ),
    };
    json!({
        "name": info.subject,
        "title": format!("{} {}", info.name, info.version),
        "summary": format!("`{}` on subject `{}`.", info.short_type_name(), info.subject),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "description": note,
            "required": required,
            "properties": {
                headers::SPEC_VERSION: { "type": "string", "const": "1.0", "description": "CloudEvents spec version." },
                headers::ID: string("Event id: a UUIDv7, or `{subject}:{key}` for events with a business key; also `Nats-Msg-Id`."),
                headers::TYPE: { "type": "string", "const": info.subject, "description": "CloudEvents type: the subject." },
                headers::SOURCE: string("The publishing service."),
                headers::TIME: { "type": "string", "format": "date-time", "description": "Publish time (RFC 3339)." },
                headers::CONTENT_TYPE: { "type": "string", "const": "application/json" },
                headers::CORRELATION_ID: string("Id of the first event of the chain (set when published from a handler)."),
                headers::CAUSATION_ID: string("Id of the event whose handler published this one."),
            },
        },
        "correlationId": { "location": format!("$message.header#/{}", headers::CORRELATION_ID) },
        "payload": payload,
    })
}

fn operation_messages(name: &str, history: &[EventInfo]) -> Vec<Value> {
    let channel = key_of(name);
    history
        .iter()
        .map(|info| json!({ "$ref": format!("#/channels/{channel}/messages/{}", message_key(info)) }))
        .collect()
}

/// Component keys allow `[A-Za-z0-9_.-]`; `.` would read as nesting in
/// tools, so it becomes `_`: `order.created` -> `order_created`.
fn key_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn message_key(info: &EventInfo) -> String {
    key_of(info.subject)
}

/// `nats://user@host:4222,nats://b:4222` -> `host:4222` (the first server,
/// without scheme or user info).
fn server_host(url: &str) -> String {
    let first = url.split(',').next().unwrap_or(url).trim();
    let without_scheme = first.split_once("://").map_or(first, |(_, rest)| rest);
    let host = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, h)| h);
    host.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_keys() {
        assert_eq!(server_host("nats://127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(server_host("nats://u:p@h:1,nats://b:2"), "h:1");
        assert_eq!(server_host("h:1"), "h:1");
        assert_eq!(key_of("order.created.v1"), "order_created_v1");
        assert_eq!(key_of("a-b"), "a-b");
    }
}
