//! The schema gate: a snapshot of every event version's JSON Schema, checked
//! in CI so that the contract of a published version never silently rots.
//!
//! Call it from a test. The first run writes `{dir}/{subject}.json` for
//! each version; later runs compare the schema of the code with the
//! snapshot. A compatible change (a new optional field, a new enum variant)
//! passes and updates the snapshot, so commit the snapshot files. An
//! incompatible change (a field removed, a type changed, a new required
//! field without a default, an enum variant removed) fails with what
//! changed and the fix: keep the old version as it was and publish the
//! change as a new version with `upcast_from`.
//!
//! ```
//! use jetflow::prelude::*;
//! use jetflow::schema::SchemaGate;
//!
//! #[event(name = "order.created", version = "v1")]
//! pub struct OrderCreated { pub order_id: String }
//!
//! # let dir = std::env::temp_dir().join(format!("jetflow-schema-doc-{}", std::process::id()));
//! # let dir = dir.as_path();
//! // In a test: `SchemaGate::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))`
//! let report = SchemaGate::new(dir).event::<OrderCreated>().check()?;
//! assert_eq!(report.created, ["order.created.v1"]);
//! let report = SchemaGate::new(dir).event::<OrderCreated>().check()?;
//! assert_eq!(report.unchanged, ["order.created.v1"]);
//! # std::fs::remove_dir_all(dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Schemas are JSON Schema draft 07 with nested types inline, from
//! [`Event::schema`] (schemars). A schema says how the payload
//! *deserializes*: `Option<T>` fields and fields with `#[serde(default)]`
//! are not required.

mod compat;

pub use compat::Change;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use schemars::generate::SchemaSettings;
use serde_json::Value;
use thiserror::Error;

use crate::event::{Event, EventInfo, version_number};

pub use schemars;

/// The JSON Schema of one event version as the gate snapshots it (draft 07,
/// nested types inline); `None` if the event has no schema.
///
/// ```
/// #[jetflow::event(version = "v1")]
/// pub struct OrderCreated { pub order_id: String, pub note: Option<String> }
///
/// let schema = jetflow::schema::schema_of(&jetflow::event::EventInfo::of::<OrderCreated>()).unwrap();
/// assert_eq!(schema["required"], serde_json::json!(["order_id"]));
/// ```
pub fn schema_of(info: &EventInfo) -> Option<Value> {
    let mut generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = info.schema(&mut generator)?.to_value();
    let definitions = generator.take_definitions(true);
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$schema".into(),
            Value::String("http://json-schema.org/draft-07/schema#".into()),
        );
        // Recursive types keep a `$ref` even when inlining.
        if !definitions.is_empty() {
            map.insert("definitions".into(), Value::Object(definitions));
        }
    }
    Some(schema)
}

/// Checks event schemas against their snapshots in a directory.
#[derive(Debug, Clone)]
pub struct SchemaGate {
    dir: PathBuf,
    events: Vec<EventInfo>,
}

/// What a passing [`SchemaGate::check`] did, by subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Versions without a snapshot: written.
    pub created: Vec<String>,
    /// Versions that changed compatibly: snapshot rewritten.
    pub updated: Vec<(String, Vec<Change>)>,
    /// Versions whose schema equals the snapshot.
    pub unchanged: Vec<String>,
}

/// One version whose schema changed incompatibly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    /// The version's subject, e.g. `order.created.v1`.
    pub subject: String,
    /// The Rust type.
    pub type_name: String,
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// Every change, the breaking ones first.
    pub changes: Vec<Change>,
    /// The version to publish the change as instead, e.g. `v2`.
    pub next_version: String,
}

/// Why the schema gate failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// At least one version changed incompatibly; nothing was written.
    #[error("{}", incompatible_text(.0))]
    Incompatible(Vec<Incompatible>),
    /// An event has no schema (a hand-written `Event` without `schema`).
    #[error(
        "event `{type_name}` ({subject}) has no JSON Schema; derive it with `#[event]`, or implement \
         `Event::schema` (schemars)"
    )]
    NoSchema {
        /// The subject.
        subject: &'static str,
        /// The Rust type.
        type_name: &'static str,
    },
    /// A snapshot could not be read or written.
    #[error("cannot {action} schema snapshot {}: {source}; check that the directory exists and is writable", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is not JSON.
    #[error("schema snapshot {} is not valid JSON: {source}; restore it from version control, or delete it to take a new snapshot", path.display())]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl SchemaGate {
    /// A gate keeping its snapshots in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> SchemaGate {
        SchemaGate {
            dir: dir.into(),
            events: Vec::new(),
        }
    }

    /// Adds `E` and every older version of its `upcast_from` chain.
    pub fn event<E: Event>(mut self) -> SchemaGate {
        self.events.extend(E::history());
        self
    }

    /// Adds event versions described by [`EventInfo`].
    pub fn events(mut self, events: impl IntoIterator<Item = EventInfo>) -> SchemaGate {
        self.events.extend(events);
        self
    }

    /// The snapshot file of `subject`.
    pub fn snapshot_path(&self, subject: &str) -> PathBuf {
        self.dir.join(format!("{subject}.json"))
    }

    /// Compares every event version with its snapshot. Writes the missing
    /// snapshots and the compatibly changed ones, unless some version
    /// changed incompatibly: then nothing is written and the error lists
    /// every incompatible version.
    pub fn check(&self) -> Result<Report, SchemaError> {
        let mut seen = Vec::new();
        let mut report = Report::default();
        let mut writes: Vec<(PathBuf, Value)> = Vec::new();
        let mut failures = Vec::new();
        for info in &self.events {
            if seen.contains(&info.subject) {
                continue;
            }
            seen.push(info.subject);
            let schema = schema_of(info).ok_or(SchemaError::NoSchema {
                subject: info.subject,
                type_name: info.type_name,
            })?;
            let path = self.snapshot_path(info.subject);
            let Some(old) = read_snapshot(&path)? else {
                report.created.push(info.subject.to_owned());
                writes.push((path, schema));
                continue;
            };
            let mut changes = compat::diff(&old, &schema);
            if changes.iter().any(Change::is_breaking) {
                changes.sort_by_key(|c| !c.is_breaking());
                failures.push(Incompatible {
                    subject: info.subject.to_owned(),
                    type_name: info.type_name.to_owned(),
                    snapshot: path,
                    changes,
                    next_version: self.next_version(info),
                });
            } else if changes.is_empty() {
                if old != schema {
                    // Only descriptions or titles changed.
                    writes.push((path, schema));
                }
                report.unchanged.push(info.subject.to_owned());
            } else {
                report.updated.push((info.subject.to_owned(), changes));
                writes.push((path, schema));
            }
        }
        if !failures.is_empty() {
            return Err(SchemaError::Incompatible(failures));
        }
        for (path, schema) in writes {
            write_snapshot(&path, &schema)?;
        }
        Ok(report)
    }

    /// One past the newest version of `info`'s name the gate knows.
    fn next_version(&self, info: &EventInfo) -> String {
        let newest = self
            .events
            .iter()
            .filter(|e| e.name == info.name)
            .map(|e| version_number(e.version))
            .max()
            .unwrap_or(0);
        format!("v{}", newest + 1)
    }
}

fn read_snapshot(path: &Path) -> Result<Option<Value>, SchemaError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| SchemaError::Snapshot {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SchemaError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_snapshot(path: &Path, schema: &Value) -> Result<(), SchemaError> {
    let io = |source| SchemaError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // A `Value` always serializes.
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    std::fs::write(path, text).map_err(io)
}

fn incompatible_text(failures: &[Incompatible]) -> String {
    let mut out = String::new();
    for f in failures {
        let name = f.subject.rsplit_once('.').map_or(&*f.subject, |(n, _)| n);
        let short = f.type_name.rsplit("::").next().unwrap_or(&f.type_name);
        let _ = writeln!(
            out,
            "the schema of {} (`{short}`) changed incompatibly since its snapshot {}:",
            f.subject,
            f.snapshot.display()
        );
        for c in &f.changes {
            let mark = if c.is_breaking() { "breaking" } else { "ok" };
            let _ = writeln!(out, "  - [{mark}] {c}");
        }
        let _ = writeln!(
            out,
            "messages of {} already published, and consumers built against it, still use the old shape. \
             Revert the change or make it compatible (a new field as `Option<T>` or with `#[serde(default)]`), \
             or publish the change as a new version: keep `{short}` as it was and add \
             `#[event(name = \"{name}\", version = \"{next}\", upcast_from = {short})]` with an \
             `impl From<{short}> for` the new type (see \"Versioning your events\" in the README).",
            f.subject,
            next = f.next_version,
        );
    }
    out.trim_end().to_owned()
}
