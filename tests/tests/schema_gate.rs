//! The schema gate (`jetflow::schema`) on fixture types: one event version
//! whose struct changes between "releases", compatibly and incompatibly.

use jetflow::schema::{Change, SchemaError, SchemaGate};

type Kind = release1::Kind;

/// What was released first: the snapshot.
mod release1 {
    use jetflow::__private::serde;
    use jetflow::schema::schemars;

    /// A field type of an event derives `JsonSchema` too.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(crate = "jetflow::__private::serde")]
    #[schemars(crate = "jetflow::schema::schemars")]
    pub(crate) enum Kind {
        Retail,
        Wholesale,
    }

    #[jetflow::event(name = "order.created", version = "v1")]
    pub(crate) struct OrderCreated {
        pub order_id: String,
        pub total_cents: u64,
        pub kind: Kind,
    }
}

/// A compatible change: a new optional field and a field with a default.
mod release2 {
    #[jetflow::event(name = "order.created", version = "v1")]
    pub(crate) struct OrderCreated {
        pub order_id: String,
        pub total_cents: u64,
        pub kind: super::Kind,
        pub note: Option<String>,
        #[serde(default)]
        pub gift: bool,
    }
}

/// An incompatible change of the same version.
mod release3 {
    use jetflow::__private::serde;
    use jetflow::schema::schemars;

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(crate = "jetflow::__private::serde")]
    #[schemars(crate = "jetflow::schema::schemars")]
    pub(crate) enum Kind {
        Retail,
    }

    #[jetflow::event(name = "order.created", version = "v1")]
    pub(crate) struct OrderCreated {
        pub order_id: String,
        pub total_cents: String,
        pub kind: Kind,
        pub currency: String,
    }
}

fn snapshot(dir: &std::path::Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join("order.created.v1.json")).expect("snapshot written");
    serde_json::from_str(&text).expect("snapshot is JSON")
}

#[test]
fn first_run_writes_a_snapshot_then_compatible_changes_pass_and_update_it() {
    let dir = tempfile::tempdir().unwrap();
    let report = SchemaGate::new(dir.path())
        .event::<release1::OrderCreated>()
        .check()
        .unwrap();
    assert_eq!(report.created, ["order.created.v1"]);
    let first = snapshot(dir.path());
    assert_eq!(
        first["required"],
        serde_json::json!(["order_id", "total_cents", "kind"])
    );

    let report = SchemaGate::new(dir.path())
        .event::<release1::OrderCreated>()
        .check()
        .unwrap();
    assert_eq!(report.unchanged, ["order.created.v1"]);

    let report = SchemaGate::new(dir.path())
        .event::<release2::OrderCreated>()
        .check()
        .unwrap();
    let (subject, changes) = &report.updated[0];
    assert_eq!(subject, "order.created.v1");
    assert_eq!(
        changes,
        &[
            Change::OptionalFieldAdded {
                path: "gift".into()
            },
            Change::OptionalFieldAdded {
                path: "note".into()
            },
        ]
    );
    assert!(
        snapshot(dir.path())["properties"].get("note").is_some(),
        "snapshot updated"
    );
}

#[test]
fn an_incompatible_change_fails_with_what_changed_and_the_next_version() {
    let dir = tempfile::tempdir().unwrap();
    SchemaGate::new(dir.path())
        .event::<release1::OrderCreated>()
        .check()
        .unwrap();
    let before = snapshot(dir.path());

    let err = SchemaGate::new(dir.path())
        .event::<release3::OrderCreated>()
        .check()
        .unwrap_err();
    let SchemaError::Incompatible(failures) = &err else {
        panic!("expected an incompatible change, got {err}");
    };
    let text = err.to_string();
    let changes: Vec<String> = failures[0]
        .changes
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changes,
        [
            "variant `Wholesale` of field `kind` was removed",
            "field `total_cents` changed type: integer (uint64) -> string",
            "field `currency` is new and required without a default (old messages lack it)",
        ],
        "{text}"
    );
    assert_eq!(failures[0].next_version, "v2");
    assert!(
        text.contains("the schema of order.created.v1 (`OrderCreated`) changed incompatibly")
            && text.contains(
                r#"#[event(name = "order.created", version = "v2", upcast_from = OrderCreated)]"#
            ),
        "{text}"
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a failing gate writes nothing"
    );

    // A field removed is breaking too (release 2 -> release 1 drops `note`).
    let dir = tempfile::tempdir().unwrap();
    SchemaGate::new(dir.path())
        .event::<release2::OrderCreated>()
        .check()
        .unwrap();
    let err = SchemaGate::new(dir.path())
        .event::<release1::OrderCreated>()
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("field `note` was removed") && err.contains("field `gift` was removed"),
        "{err}"
    );
}
