//! [`App::plan`]: what starting the app would change on the broker, read
//! without changing anything.

use std::fmt;

use super::App;
use super::connect::{OnTransport, Target, on_transport};
use crate::error::Result;
use crate::topology::{self, ConsumerView, TopologyPolicy};
use crate::transport::Transport;

/// What provisioning would do with one stream or consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// It exists as declared.
    Keep,
    /// It does not exist: created.
    Create,
    /// It differs: `diff` has one line per difference
    /// (`  field: server=.. declared=..`).
    Update {
        /// What differs.
        diff: String,
    },
}

/// One stream or consumer, and what provisioning would do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Planned {
    /// What it is: ``stream `ORDER` `` or ``consumer `inventory--order_created` on stream `ORDER` ``.
    pub what: String,
    /// What would happen to it.
    pub change: Change,
}

/// The diff between the app's declared topology and the broker's: what
/// [`App::start`] would create or update (by the app's
/// [`TopologyPolicy`]: `refuse` and `bind-only` stop at the first
/// difference instead of changing it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The app's policy.
    pub policy: TopologyPolicy,
    /// Every stream, then every consumer, in declaration order.
    pub items: Vec<Planned>,
}

impl Plan {
    /// `true` when starting would change nothing.
    pub fn is_empty(&self) -> bool {
        self.items.iter().all(|p| p.change == Change::Keep)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.items {
            match &p.change {
                Change::Keep => writeln!(f, "  = {} (unchanged)", p.what)?,
                Change::Create => writeln!(f, "  + {} (create)", p.what)?,
                Change::Update { diff } => writeln!(f, "  ~ {} (update)\n{diff}", p.what)?,
            }
        }
        if self.is_empty() {
            writeln!(f, "nothing to change")
        } else if self.policy == TopologyPolicy::Update {
            writeln!(f, "starting the app makes these changes")
        } else {
            writeln!(
                f,
                "the app's policy ({:?}) refuses these changes: starting it fails until they are made",
                self.policy
            )
        }
    }
}

impl App {
    /// Connects to the broker the URL names and compares the streams and
    /// durable consumers the app declares with what the broker has,
    /// changing nothing. Supported where the transport can read its
    /// topology (NATS JetStream); an error elsewhere.
    ///
    /// ```no_run
    /// # async fn demo(app: jetflow::App) -> jetflow::Result<()> {
    /// let plan = app.plan().await?;
    /// print!("{plan}");
    /// # Ok(()) }
    /// ```
    pub async fn plan(&self) -> Result<Plan> {
        self.validate()?;
        on_transport(Target::of(self), Planning { app: self }).await
    }

    /// [`App::plan`] on a transport built by hand.
    pub async fn plan_on<T: Transport>(&self, transport: &T) -> Result<Plan> {
        let mut items = Vec::new();
        for stream in self.stream_decls() {
            let what = format!("stream `{}`", stream.name);
            let change = match transport.stream_subjects(&stream.name).await? {
                None => Change::Create,
                Some(existing) => {
                    let missing = topology::missing_subjects(&stream, &existing);
                    if missing.is_empty() {
                        Change::Keep
                    } else {
                        Change::Update {
                            diff: format!(
                                "  subjects: server={existing:?} declared events need {missing:?}"
                            ),
                        }
                    }
                }
            };
            items.push(Planned { what, change });
        }
        for decl in self.consumer_decls() {
            let change = match transport.consumer_view(&decl).await? {
                None => Change::Create,
                Some(server) => {
                    let diff = topology::diff(&server, &ConsumerView::declared(&decl));
                    if diff.is_empty() {
                        Change::Keep
                    } else {
                        Change::Update { diff }
                    }
                }
            };
            items.push(Planned {
                what: decl.describe(),
                change,
            });
        }
        Ok(Plan {
            policy: self.policy,
            items,
        })
    }
}

/// [`App::plan`] once connected.
struct Planning<'a> {
    app: &'a App,
}

impl OnTransport for Planning<'_> {
    type Output = Plan;
    async fn run<T: Transport>(self, transport: T) -> Result<Plan> {
        self.app.plan_on(&transport).await
    }
}
