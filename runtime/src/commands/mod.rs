//! A service's own subcommands (feature `commands`), from its `main` in one
//! call: [`App::main`] or, with a schema gate or a run of its own,
//! [`App::commands`].
//!
//! ```text
//! my-service                  # run (the default): App::run, until SIGINT/SIGTERM
//! my-service run [ARGS...]    # the same; ARGS go to a run of your own (Commands::main_with)
//! my-service plan             # the topology diff against the broker; changes nothing
//! my-service asyncapi [--yaml]  # the AsyncAPI 3.0 document on stdout (JSON by default)
//! my-service check-schemas    # the schema gate (Commands::schemas) only
//! ```
//!
//! ```no_run
//! use jetflow::prelude::*;
//! # #[event(version = "v1")] pub struct OrderCreated { pub order_id: String }
//! # #[handler(group = "inventory")] async fn reserve_stock(_o: OrderCreated) {}
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let _telemetry = jetflow::telemetry::init();
//!     App::from_env("inventory").handler(reserve_stock).main().await
//! }
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::App;
use crate::schema::SchemaGate;

/// The subcommands, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    disable_version_flag = true,
    about = "A jetflow service. Without a command it runs (`run`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// One of the service's subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run the service (the default): until SIGINT or SIGTERM.
    Run {
        /// Arguments for the service's own run.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print what starting would create or change on the broker (streams,
    /// durable consumers), changing nothing.
    Plan,
    /// Print the service's AsyncAPI 3.0 document.
    Asyncapi {
        /// YAML instead of JSON.
        #[arg(long)]
        yaml: bool,
    },
    /// Check the event schemas against their frozen snapshots.
    CheckSchemas,
}

/// The names of the subcommands (anything else runs the service with it
/// as arguments).
const NAMES: &[&str] = &["run", "plan", "asyncapi", "check-schemas", "help"];

impl Command {
    /// The command that `args` (the program name first, as
    /// [`std::env::args_os`]) asks for: a subcommand, or `run` with every
    /// argument when the first is none (`my-service --serve`);
    /// `--check-schemas` also means `check-schemas`. An error (with the
    /// usage, or the help) for a subcommand's bad arguments or `--help`.
    pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let first = args.get(1).and_then(|a| a.to_str());
        let subcommand = first.is_some_and(|a| NAMES.contains(&a) || matches!(a, "-h" | "--help"));
        if first == Some("--check-schemas") {
            return Ok(Command::CheckSchemas);
        }
        if !subcommand {
            let args = args
                .iter()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return Ok(Command::Run { args });
        }
        let cli = Cli::try_parse_from(args)?;
        Ok(cli.command.unwrap_or(Command::Run { args: Vec::new() }))
    }
}

/// A service's subcommands: [`App::commands`].
#[derive(Debug)]
pub struct Commands {
    app: App,
    gate: Option<SchemaGate>,
}

impl App {
    /// Runs the subcommand the process's arguments name (see
    /// [`crate::commands`]): `run` (the default), `plan`, `asyncapi
    /// [--yaml]`, `check-schemas`. The exit code says whether it worked;
    /// errors are printed on stderr.
    pub async fn main(self) -> ExitCode {
        self.commands().main().await
    }

    /// The service's subcommands, to add a schema gate or a run of its own
    /// before [`Commands::main`].
    pub fn commands(self) -> Commands {
        Commands {
            app: self,
            gate: None,
        }
    }
}

impl Commands {
    /// The schema gate `check-schemas` runs (and `run` runs first: a
    /// service whose schemas break their snapshots does not start).
    pub fn schemas(mut self, gate: SchemaGate) -> Commands {
        self.gate = Some(gate);
        self
    }

    /// Runs the subcommand of the process's arguments; `run` is
    /// [`App::run`].
    pub async fn main(self) -> ExitCode {
        self.main_with(|app, _args| async move {
            app.run().await?;
            Ok(ExitCode::SUCCESS)
        })
        .await
    }

    /// Runs the subcommand of the process's arguments; `run` calls `run`
    /// with the app and the arguments after `run` (or every argument, when
    /// the first is no subcommand: `my-service --serve`).
    pub async fn main_with<F, Fut>(self, run: F) -> ExitCode
    where
        F: FnOnce(App, Vec<String>) -> Fut,
        Fut: Future<Output = Result<ExitCode, Box<dyn std::error::Error>>>,
    {
        let command = match Command::parse_from(std::env::args_os()) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        // not locked: the run prints from other threads too
        let mut out = std::io::stdout();
        match self.execute(command, &mut out, run).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs `command`, writing what it prints to `out` (`run` prints
    /// nothing itself and calls `run`).
    pub async fn execute<F, Fut>(
        self,
        command: Command,
        out: &mut dyn Write,
        run: F,
    ) -> Result<ExitCode, Box<dyn std::error::Error>>
    where
        F: FnOnce(App, Vec<String>) -> Fut,
        Fut: Future<Output = Result<ExitCode, Box<dyn std::error::Error>>>,
    {
        match command {
            Command::Run { args } => {
                if let Some(gate) = &self.gate {
                    check_schemas(gate, out)?;
                }
                run(self.app, args).await
            }
            Command::Plan => {
                let plan = self.app.plan().await?;
                write!(out, "{plan}")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Asyncapi { yaml } => {
                let doc = self.app.asyncapi();
                if yaml {
                    write!(out, "{}", doc.to_yaml())?;
                } else {
                    writeln!(out, "{}", doc.to_json_string())?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckSchemas => {
                let Some(gate) = &self.gate else {
                    return Err("this service has no schema gate: give one to \
                                App::commands().schemas(SchemaGate::new(dir).event::<E>())"
                        .into());
                };
                check_schemas(gate, out)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Runs the gate, printing its summary.
fn check_schemas(gate: &SchemaGate, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>> {
    let report = gate.check()?;
    writeln!(
        out,
        "schema gate: {} unchanged, {} updated, {} new snapshot(s)",
        report.unchanged.len(),
        report.updated.len(),
        report.created.len()
    )?;
    Ok(())
}
