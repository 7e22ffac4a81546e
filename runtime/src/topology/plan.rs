//! The one decision per stream and per consumer: keep, create, update or
//! refuse, by policy, with a field-by-field diff. Pure: transports fetch
//! what the broker has, call these, and execute the plan.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ConsumerDecl, StreamDecl, TopologyError, TopologyPolicy};
use crate::event::subject_matches;
use crate::topology::DeliverPolicy;

/// What provisioning does with one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamPlan {
    /// It exists and stores every declared subject.
    Keep,
    /// Create it, storing these subject patterns.
    Create {
        /// The patterns, `order.>`.
        subjects: Vec<String>,
    },
    /// Make it store these subject patterns (the broker's and the missing ones).
    AddSubjects {
        /// Every pattern it must store afterwards.
        subjects: Vec<String>,
    },
}

/// Decides, by `policy`, what to do with `stream` given the subject
/// patterns the broker's stream stores (`None`: it does not exist). Logs
/// what it decides; an error when the policy forbids the change.
///
/// ```
/// use jetflow::topology::{StreamDecl, StreamPlan, StreamSettings, TopologyPolicy, plan_stream};
/// let decl = StreamDecl::new("ORDER", vec!["order.created.v1".into()], StreamSettings::default());
/// let plan = plan_stream(&decl, TopologyPolicy::Update, None)?;
/// assert_eq!(plan, StreamPlan::Create { subjects: vec!["order.>".into()] });
/// assert_eq!(plan_stream(&decl, TopologyPolicy::Update, Some(&["order.>".into()]))?, StreamPlan::Keep);
/// # Ok::<(), jetflow::topology::TopologyError>(())
/// ```
pub fn plan_stream(
    stream: &StreamDecl,
    policy: TopologyPolicy,
    existing: Option<&[String]>,
) -> Result<StreamPlan, TopologyError> {
    let name = &stream.name;
    let wanted = stream.patterns();
    let Some(existing) = existing else {
        if policy == TopologyPolicy::BindOnly {
            return Err(TopologyError::missing(
                format!("stream `{name}`"),
                &format!("create it (subjects {wanted:?})"),
            ));
        }
        return Ok(StreamPlan::Create { subjects: wanted });
    };
    let missing = missing_subjects(stream, existing);
    if missing.is_empty() {
        return Ok(StreamPlan::Keep);
    }
    let diff = format!("  subjects: server={existing:?} declared events need {missing:?}");
    match policy {
        TopologyPolicy::Update => {
            tracing::warn!(stream = %name, %diff, "stream does not store every declared subject; adding them");
            let mut subjects = existing.to_vec();
            for w in wanted {
                if !subjects.contains(&w) {
                    subjects.push(w);
                }
            }
            Ok(StreamPlan::AddSubjects { subjects })
        }
        TopologyPolicy::Refuse | TopologyPolicy::BindOnly => Err(TopologyError::drift(
            format!("stream `{name}`"),
            diff,
            "add the subjects to the stream, or start with TopologyPolicy::Update",
        )),
    }
}

/// The declared subjects of `stream` that none of the `existing` patterns
/// stores.
pub(crate) fn missing_subjects<'a>(stream: &'a StreamDecl, existing: &[String]) -> Vec<&'a String> {
    stream
        .subjects
        .iter()
        .filter(|s| !existing.iter().any(|have| subject_matches(have, s)))
        .collect()
}

/// A durable consumer as the broker has it, in jetflow's terms (what
/// [`plan_consumer`] compares with the declaration).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerView {
    /// Subject filter (empty: the whole stream).
    pub filter_subject: String,
    /// `true` when every message must be acknowledged explicitly (the only
    /// mode jetflow declares).
    pub explicit_ack: bool,
    /// The effective ack wait (drives automatic progress signals).
    pub ack_wait: Duration,
    /// Deliveries allowed; `-1`: unlimited.
    pub max_deliver: i64,
    /// Start position; `None`: one jetflow does not declare (e.g. a start sequence).
    pub deliver: Option<DeliverPolicy>,
}

impl ConsumerView {
    /// What the broker has when it stores `decl` exactly.
    pub fn declared(decl: &ConsumerDecl) -> ConsumerView {
        ConsumerView {
            filter_subject: decl.filter_subject.clone(),
            explicit_ack: true,
            ack_wait: decl.ack_wait,
            max_deliver: decl.broker_max_deliver(),
            deliver: Some(decl.deliver),
        }
    }
}

/// What provisioning does with one durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerPlan {
    /// Use it as the broker has it (possibly differing, under bind-only).
    Keep(ConsumerView),
    /// Create it as declared.
    Create,
    /// Update it to the declaration; `diff` says what changes.
    Update {
        /// One line per differing field: `  field: server=.. declared=..`.
        diff: String,
    },
}

/// Decides, by `policy`, what to do with the declared consumer given what
/// the broker has (`None`: it does not exist).
///
/// ```
/// use std::time::Duration;
/// use jetflow::topology::{ConsumerDecl, ConsumerPlan, ConsumerView, TopologyPolicy, plan_consumer};
/// let decl = ConsumerDecl::new("ORDER", "inventory--order_created", "order.created.v1");
/// let mut server = ConsumerView::declared(&decl);
/// server.ack_wait = Duration::from_secs(45);
/// match plan_consumer(&decl, TopologyPolicy::Update, Some(&server))? {
///     ConsumerPlan::Update { diff } => assert!(diff.contains("ack_wait: server=45s")),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), jetflow::topology::TopologyError>(())
/// ```
pub fn plan_consumer(
    decl: &ConsumerDecl,
    policy: TopologyPolicy,
    existing: Option<&ConsumerView>,
) -> Result<ConsumerPlan, TopologyError> {
    let Some(existing) = existing else {
        if policy == TopologyPolicy::BindOnly {
            return Err(TopologyError::missing(decl.describe(), "create it"));
        }
        return Ok(ConsumerPlan::Create);
    };
    let diff = diff(existing, &ConsumerView::declared(decl));
    if diff.is_empty() {
        return Ok(ConsumerPlan::Keep(existing.clone()));
    }
    match policy {
        TopologyPolicy::Update => {
            tracing::warn!(consumer = %decl.durable, stream = %decl.stream, "consumer config differs from the code; updating:\n{diff}");
            Ok(ConsumerPlan::Update { diff })
        }
        TopologyPolicy::Refuse => Err(TopologyError::drift(
            decl.describe(),
            diff,
            "align the code with the server, or start with TopologyPolicy::Update",
        )),
        TopologyPolicy::BindOnly => {
            tracing::warn!(consumer = %decl.durable, stream = %decl.stream, "bind-only: consumer config differs from the code (not changed):\n{diff}");
            Ok(ConsumerPlan::Keep(existing.clone()))
        }
    }
}

/// The error when the broker refuses a consumer update.
pub(crate) fn update_refused(
    decl: &ConsumerDecl,
    diff: &str,
    refusal: impl std::fmt::Display,
) -> TopologyError {
    TopologyError::drift(
        decl.describe(),
        format!("{diff}\n  (the server refused the update: {refusal})"),
        "some fields (e.g. deliver_policy) cannot change on an existing consumer; \
         delete the consumer to recreate it, or restore the old value in the code",
    )
}

/// Field-by-field differences between the broker's consumer and the declaration.
pub(crate) fn diff(server: &ConsumerView, declared: &ConsumerView) -> String {
    let mut out = String::new();
    let mut field = |name: &str, s: String, d: String| {
        if s != d {
            let _ = writeln!(out, "  {name}: server={s} declared={d}");
        }
    };
    field(
        "filter_subject",
        format!("{:?}", server.filter_subject),
        format!("{:?}", declared.filter_subject),
    );
    let ack = |explicit: bool| if explicit { "explicit" } else { "not explicit" }.to_owned();
    field(
        "ack_policy",
        ack(server.explicit_ack),
        ack(declared.explicit_ack),
    );
    field(
        "ack_wait",
        format!("{:?}", server.ack_wait),
        format!("{:?}", declared.ack_wait),
    );
    field(
        "max_deliver",
        server.max_deliver.to_string(),
        declared.max_deliver.to_string(),
    );
    let deliver = |d: Option<DeliverPolicy>| match d {
        Some(d) => format!("{d:?}"),
        None => "other".to_owned(),
    };
    field(
        "deliver_policy",
        deliver(server.deliver),
        deliver(declared.deliver),
    );
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::StreamSettings;

    fn decl() -> ConsumerDecl {
        let mut d = ConsumerDecl::new("ORDER", "inv--order_created", "order.created.v1");
        d.ack_wait = Duration::from_secs(10);
        d.max_deliver = 4;
        d
    }

    #[test]
    fn consumer_plans_by_policy() {
        let d = decl();
        assert_eq!(
            plan_consumer(&d, TopologyPolicy::Update, None).unwrap(),
            ConsumerPlan::Create
        );
        assert!(plan_consumer(&d, TopologyPolicy::BindOnly, None).is_err());
        let same = ConsumerView::declared(&d);
        assert!(matches!(
            plan_consumer(&d, TopologyPolicy::Refuse, Some(&same)).unwrap(),
            ConsumerPlan::Keep(_)
        ));
        let mut other = same.clone();
        other.ack_wait = Duration::from_secs(45);
        other.deliver = None;
        let ConsumerPlan::Update { diff } =
            plan_consumer(&d, TopologyPolicy::Update, Some(&other)).unwrap()
        else {
            panic!("an update")
        };
        assert_eq!(
            diff,
            "  ack_wait: server=45s declared=10s\n  deliver_policy: server=other declared=All"
        );
        assert!(plan_consumer(&d, TopologyPolicy::Refuse, Some(&other)).is_err());
        assert!(matches!(
            plan_consumer(&d, TopologyPolicy::BindOnly, Some(&other)).unwrap(),
            ConsumerPlan::Keep(v) if v == other
        ));
    }

    #[test]
    fn stream_plans_add_missing_patterns() {
        let s = StreamDecl::new(
            "ORDER",
            vec!["order.created.v1".into(), "order.paid.v1".into()],
            StreamSettings::default(),
        );
        let have = ["audit.>".to_owned()];
        assert_eq!(
            plan_stream(&s, TopologyPolicy::Update, Some(&have)).unwrap(),
            StreamPlan::AddSubjects {
                subjects: vec!["audit.>".into(), "order.>".into()]
            }
        );
        assert!(plan_stream(&s, TopologyPolicy::Refuse, Some(&have)).is_err());
        assert_eq!(
            plan_stream(&s, TopologyPolicy::Refuse, Some(&["order.*.v1".into()])).unwrap(),
            StreamPlan::Keep
        );
    }
}
