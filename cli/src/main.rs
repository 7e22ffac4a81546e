//! `jetflow`: operate a jetflow deployment from the shell — list, show,
//! replay and purge dead letters, read a durable consumer's lag, publish a
//! JSON event. It connects with natscli's environment (`NATS_URL`,
//! `NATS_CREDS`, `NATS_NKEY`, `NATS_USER`/`NATS_PASSWORD`, `NATS_TOKEN`,
//! `NATS_CA`, `NATS_CERT`/`NATS_KEY`), or `JETFLOW_URL` for another
//! transport (`redis://...`, `amqp://...`).
//!
//! ```text
//! jetflow dlq list --group inventory --error "out of stock"
//! jetflow dlq show 12
//! jetflow dlq replay 12 13 --dry-run
//! jetflow dlq purge --group inventory --replayed --dry-run
//! jetflow consumer ORDER inventory--order_created
//! jetflow publish order.created.v1 '{"order_id":"A-1"}'
//! ```

mod commands;
mod progress;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Operate jetflow services: dead letters, consumer lag, publishing.
#[derive(Debug, Parser)]
#[command(name = "jetflow", version)]
struct Cli {
    /// Broker URL (default: JETFLOW_URL, else NATS_URL, else nats://127.0.0.1:4222).
    #[arg(long, global = true)]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(Dlq),
    /// A durable consumer's counts: pending (lag), unacknowledged, redelivered.
    Consumer {
        /// Stream, e.g. ORDER.
        stream: String,
        /// Durable, e.g. inventory--order_created.
        durable: String,
    },
    /// Publishes a JSON payload on a subject, as a foreign producer would.
    Publish {
        /// Subject, e.g. order.created.v1.
        subject: String,
        /// The payload (JSON text).
        json: String,
        /// A header, `name=value` (repeatable).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Dlq {
    /// Lists dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Shows one dead letter: its headers and payload.
    Show {
        /// Its DLQ sequence (the first column of `list`).
        sequence: u64,
    },
    /// Republishes dead letters to their original subject (once each,
    /// unless --force).
    Replay {
        /// DLQ sequences.
        #[arg(required = true)]
        sequences: Vec<u64>,
        /// Replay a record replayed before.
        #[arg(long)]
        force: bool,
        /// Say what would be published; publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Deletes the dead letters a filter matches (all of them needs --all).
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Purge every dead letter (when no filter is given).
        #[arg(long)]
        all: bool,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters.
#[derive(Debug, Args, Default)]
struct FilterArgs {
    /// Only this consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Only this handler.
    #[arg(long)]
    handler: Option<String>,
    /// Only subjects this pattern matches (`*`, `>`).
    #[arg(long)]
    subject: Option<String>,
    /// Only errors containing this text (case-insensitive).
    #[arg(long)]
    error: Option<String>,
    /// Only records replayed already.
    #[arg(long, conflicts_with = "pending")]
    replayed: bool,
    /// Only records not replayed yet.
    #[arg(long)]
    pending: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jetflow: {e}");
            ExitCode::FAILURE
        }
    }
}
