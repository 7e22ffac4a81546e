//! Compatibility of two JSON Schemas of one event version: what a change
//! breaks for consumers and for messages already stored.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// One difference between a version's snapshot schema and its schema now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A field of the snapshot is gone: consumers that read it break.
    FieldRemoved {
        /// Path of the field (`customer.email`).
        path: String,
    },
    /// A field's type changed: one side cannot read the other's messages.
    TypeChanged {
        /// Path of the field (empty for the payload itself).
        path: String,
        /// The type in the snapshot.
        was: String,
        /// The type now.
        now: String,
    },
    /// A new field is required and has no default: messages already
    /// published without it no longer decode.
    RequiredFieldAdded {
        /// Path of the field.
        path: String,
    },
    /// An existing field became required.
    FieldBecameRequired {
        /// Path of the field.
        path: String,
    },
    /// An enum variant (or allowed value) is gone: stored messages that
    /// use it no longer decode.
    VariantRemoved {
        /// Path of the enum.
        path: String,
        /// The variant.
        variant: String,
    },
    /// Compatible: a new optional field (or one with a default).
    OptionalFieldAdded {
        /// Path of the field.
        path: String,
    },
    /// Compatible for this version's decoders: a new enum variant.
    VariantAdded {
        /// Path of the enum.
        path: String,
        /// The variant.
        variant: String,
    },
}

impl Change {
    /// Whether the change breaks consumers or stored messages.
    pub fn is_breaking(&self) -> bool {
        !matches!(
            self,
            Change::OptionalFieldAdded { .. } | Change::VariantAdded { .. }
        )
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |path: &str| {
            if path.is_empty() {
                "the payload".to_owned()
            } else {
                format!("field `{path}`")
            }
        };
        match self {
            Change::FieldRemoved { path } => write!(f, "{} was removed", at(path)),
            Change::TypeChanged { path, was, now } => {
                write!(f, "{} changed type: {was} -> {now}", at(path))
            }
            Change::RequiredFieldAdded { path } => write!(
                f,
                "{} is new and required without a default (old messages lack it)",
                at(path)
            ),
            Change::FieldBecameRequired { path } => {
                write!(f, "{} became required (old messages may lack it)", at(path))
            }
            Change::VariantRemoved { path, variant } => {
                write!(f, "variant `{variant}` of {} was removed", at(path))
            }
            Change::OptionalFieldAdded { path } => {
                write!(f, "{} was added as optional", at(path))
            }
            Change::VariantAdded { path, variant } => {
                write!(f, "variant `{variant}` of {} was added", at(path))
            }
        }
    }
}

/// Every difference from `old` to `new` (whole schemas, with their
/// `definitions`), in document order.
pub(crate) fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cx = Cx {
        old_root: old,
        new_root: new,
        out: &mut out,
        depth: 0,
    };
    cx.compare(old, new, "");
    out
}

struct Cx<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    out: &'a mut Vec<Change>,
    /// Guards against recursive types (a `$ref` cycle).
    depth: usize,
}

impl Cx<'_> {
    fn compare(&mut self, old: &Value, new: &Value, path: &str) {
        if self.depth > 32 {
            return;
        }
        self.depth += 1;
        let (old, new) = (resolve(self.old_root, old), resolve(self.new_root, new));
        self.compare_resolved(old, new, path);
        self.depth -= 1;
    }

    fn compare_resolved(&mut self, old: &Value, new: &Value, path: &str) {
        let (was, now) = (type_of(old), type_of(new));
        if let (Some(was), Some(now)) = (&was, &now)
            && was != now
        {
            self.out.push(Change::TypeChanged {
                path: path.to_owned(),
                was: was.clone(),
                now: now.clone(),
            });
            return;
        }

        // Allowed values (`enum`, `const`), and tagged variants (`oneOf` / `anyOf`).
        let (old_variants, new_variants) = (variants(old), variants(new));
        if !old_variants.is_empty() || !new_variants.is_empty() {
            for v in old_variants
                .keys()
                .filter(|v| !new_variants.contains_key(*v))
            {
                self.out.push(Change::VariantRemoved {
                    path: path.to_owned(),
                    variant: v.clone(),
                });
            }
            for v in new_variants
                .keys()
                .filter(|v| !old_variants.contains_key(*v))
            {
                self.out.push(Change::VariantAdded {
                    path: path.to_owned(),
                    variant: v.clone(),
                });
            }
            for (v, old_schema) in &old_variants {
                if let (Some(old_schema), Some(Some(new_schema))) =
                    (old_schema, new_variants.get(v))
                {
                    self.compare(old_schema, new_schema, path);
                }
            }
        }

        let (old_props, new_props) = (properties(old), properties(new));
        if old_props.is_some() || new_props.is_some() {
            let empty = Map::new();
            let (old_props, new_props) = (old_props.unwrap_or(&empty), new_props.unwrap_or(&empty));
            let (old_req, new_req) = (required(old), required(new));
            for (name, old_field) in old_props {
                let field = join(path, name);
                match new_props.get(name) {
                    None => self.out.push(Change::FieldRemoved { path: field }),
                    Some(new_field) => {
                        if new_req.contains(name.as_str()) && !old_req.contains(name.as_str()) {
                            self.out.push(Change::FieldBecameRequired {
                                path: field.clone(),
                            });
                        }
                        self.compare(old_field, new_field, &field);
                    }
                }
            }
            for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
                let field = join(path, name);
                self.out.push(if new_req.contains(name.as_str()) {
                    Change::RequiredFieldAdded { path: field }
                } else {
                    Change::OptionalFieldAdded { path: field }
                });
            }
        }

        if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
            self.compare(old_items, new_items, &format!("{path}[]"));
        }
        if let (Some(Value::Object(_)), Some(Value::Object(_))) = (
            old.get("additionalProperties"),
            new.get("additionalProperties"),
        ) {
            self.compare(
                &old["additionalProperties"],
                &new["additionalProperties"],
                &format!("{path}{{}}"),
            );
        }
    }
}

/// Follows a local `$ref` (`#/definitions/X`, `#/$defs/X`) within `root`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) => current = target,
                None => return current,
            },
            None => return current,
        }
    }
    current
}

/// The type of a schema as one comparable text: `integer (uint64)`,
/// `string | null`; `None` when the schema does not say (`{}`, `anyOf`).
fn type_of(schema: &Value) -> Option<String> {
    let mut types: Vec<&str> = match schema.get("type")? {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    types.sort_unstable();
    let mut text = types.join(" | ");
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        text.push_str(&format!(" ({format})"));
    }
    Some(text)
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The variants of an enum schema by name, with the schema of a variant
/// that carries data: the `enum` / `const` values, and the `oneOf` /
/// `anyOf` alternatives identified by their value, their tag (a property
/// with a `const`) or their single required property (serde's external
/// tagging).
fn variants(schema: &Value) -> std::collections::BTreeMap<String, Option<&Value>> {
    let mut out = std::collections::BTreeMap::new();
    for v in values(schema) {
        out.insert(v, None);
    }
    for key in ["oneOf", "anyOf"] {
        let Some(alternatives) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        for alt in alternatives {
            let named = values(alt);
            if !named.is_empty() {
                out.extend(named.into_iter().map(|v| (v, None)));
                continue;
            }
            if let Some(name) = variant_name(alt) {
                out.insert(name, Some(alt));
            }
        }
    }
    out
}

fn values(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        out.extend(values.iter().map(value_text));
    }
    if let Some(value) = schema.get("const") {
        out.push(value_text(value));
    }
    out
}

fn variant_name(alt: &Value) -> Option<String> {
    if let Some(props) = properties(alt) {
        if let Some((tag, value)) = props
            .iter()
            .find_map(|(k, v)| v.get("const").map(|c| (k, c)))
        {
            return Some(format!("{tag} = {}", value_text(value)));
        }
        let req = required(alt);
        if req.len() == 1 && props.len() == 1 {
            return req.into_iter().next().map(str::to_owned);
        }
    }
    // `Option<T>`: the `null` alternative.
    (type_of(alt).as_deref() == Some("null")).then(|| "null".to_owned())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(props: Value, required: &[&str]) -> Value {
        json!({ "type": "object", "properties": props, "required": required })
    }

    #[test]
    fn identical_schemas_have_no_changes() {
        let s = object(json!({ "a": { "type": "string" } }), &["a"]);
        assert_eq!(diff(&s, &s), vec![]);
    }

    #[test]
    fn each_kind_of_change() {
        let old = object(
            json!({
                "id": { "type": "string" },
                "n": { "type": "integer", "format": "uint32" },
                "gone": { "type": "string" },
                "opt": { "type": ["string", "null"] },
                "kind": { "type": "string", "enum": ["a", "b"] },
            }),
            &["id", "n", "gone", "kind"],
        );
        let new = object(
            json!({
                "id": { "type": "string" },
                "n": { "type": "string" },
                "opt": { "type": ["null", "string"] },
                "kind": { "type": "string", "enum": ["a", "c"] },
                "must": { "type": "string" },
                "may": { "type": "string" },
            }),
            &["id", "n", "kind", "must", "opt"],
        );
        let changes = diff(&old, &new);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "field `gone` was removed",
                "variant `b` of field `kind` was removed",
                "variant `c` of field `kind` was added",
                "field `n` changed type: integer (uint32) -> string",
                "field `opt` became required (old messages may lack it)",
                "field `may` was added as optional",
                "field `must` is new and required without a default (old messages lack it)",
            ]
        );
        let breaking: Vec<bool> = changes.iter().map(Change::is_breaking).collect();
        assert_eq!(breaking, [true, true, false, true, true, false, true]);
    }

    #[test]
    fn nested_refs_and_tagged_variants() {
        let old = json!({
            "type": "object",
            "properties": { "pay": { "$ref": "#/definitions/Pay" } },
            "required": ["pay"],
            "definitions": { "Pay": { "oneOf": [
                { "type": "string", "enum": ["Cash"] },
                { "type": "object", "properties": { "Card": { "type": "object",
                    "properties": { "last4": { "type": "string" } }, "required": ["last4"] } },
                  "required": ["Card"] },
            ] } },
        });
        let new = json!({
            "type": "object",
            "properties": { "pay": { "oneOf": [
                { "type": "object", "properties": { "Card": { "type": "object",
                    "properties": { "last4": { "type": "integer" } }, "required": ["last4"] } },
                  "required": ["Card"] },
            ] } },
            "required": ["pay"],
        });
        let text: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "variant `Cash` of field `pay` was removed",
                "field `pay.Card.last4` changed type: string -> integer",
            ]
        );
    }
}
