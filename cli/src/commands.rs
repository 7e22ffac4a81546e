//! What each subcommand does, on a bus of its own (an app without
//! handlers: it declares nothing).

use std::fmt::Write as _;

use jetflow::dlq::{self, DeadLetter, Filter, Replay};
use jetflow::{App, Bus, ConnectOptions, Headers};

use super::{Cli, Command, Dlq, FilterArgs};
use crate::progress::Progress;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

pub(crate) async fn run(cli: Cli) -> Result {
    let mut options = ConnectOptions::from_env();
    if let Some(url) = cli.url {
        options.url = url;
    }
    let app = App::new("jetflow-cli")
        .connect_options(options)
        .start()
        .await?;
    let result = dispatch(app.bus(), cli.command).await;
    app.stop().await?;
    result
}

async fn dispatch(bus: &Bus, command: Command) -> Result {
    match command {
        Command::Dlq(Dlq::List { filter, json }) => {
            for d in dlq::find(bus, &filter.build()).await? {
                println!("{}", if json { as_json(&d) } else { line(&d) });
            }
        }
        Command::Dlq(Dlq::Show { sequence }) => {
            let d = dlq::list(bus)
                .await?
                .into_iter()
                .find(|d| d.dlq_sequence == sequence)
                .ok_or_else(|| dlq::ReplayError::NotFound(sequence))?;
            print!("{}", detail(&d));
        }
        Command::Dlq(Dlq::Replay {
            sequences,
            force,
            dry_run,
        }) => {
            let mut progress = Progress::new("replayed", sequences.len() as u64);
            for (n, seq) in sequences.into_iter().enumerate() {
                let done = dlq::replay(bus, seq, Replay { force, dry_run }).await?;
                match done.ack {
                    Some(ack) => println!(
                        "replayed #{seq} to {} ({} #{})",
                        done.subject, ack.stream, ack.sequence
                    ),
                    None => println!("would replay #{seq} to {} (dry run)", done.subject),
                }
                progress.set(n as u64 + 1);
            }
            progress.finish();
        }
        Command::Dlq(Dlq::Purge {
            filter,
            all,
            dry_run,
        }) => {
            if filter.is_empty() && !all {
                return Err("purge without a filter deletes every dead letter: add --all, or a filter (--group, --subject, ...)".into());
            }
            let mut progress = None;
            let gone = dlq::purge_with_progress(bus, &filter.build(), dry_run, |done, total| {
                progress
                    .get_or_insert_with(|| Progress::new("purged", total as u64))
                    .set(done as u64)
            })
            .await?;
            if let Some(p) = progress {
                p.finish();
            }
            let verb = if dry_run { "would purge" } else { "purged" };
            println!("{verb} {} dead letter(s): {gone:?}", gone.len());
        }
        Command::Consumer { stream, durable } => {
            let s = bus.consumer_state(&stream, &durable).await?;
            println!(
                "{stream}/{durable}: {} pending, {} unacknowledged ({} redelivered), ack floor #{}, last delivered #{}",
                s.num_pending, s.num_ack_pending, s.num_redelivered, s.ack_floor, s.delivered
            );
        }
        Command::Publish {
            subject,
            json,
            headers,
        } => {
            serde_json::from_str::<serde_json::Value>(&json)
                .map_err(|e| format!("the payload is not JSON: {e}"))?;
            let mut h = Headers::new();
            for header in headers {
                let (name, value) = header
                    .split_once('=')
                    .ok_or_else(|| format!("--header {header:?}: write it as NAME=VALUE"))?;
                h.try_insert(name.trim().to_owned(), value.trim())?;
            }
            let ack = bus.publish_raw(&subject, h, json.into()).await?;
            println!("published to {} #{}", ack.stream, ack.sequence);
        }
    }
    Ok(())
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.group.is_none()
            && self.handler.is_none()
            && self.subject.is_none()
            && self.error.is_none()
            && !self.replayed
            && !self.pending
    }

    fn build(&self) -> Filter {
        let mut f = Filter::new();
        if let Some(g) = &self.group {
            f = f.group(g);
        }
        if let Some(h) = &self.handler {
            f = f.handler(h);
        }
        if let Some(s) = &self.subject {
            f = f.subject(s);
        }
        if let Some(e) = &self.error {
            f = f.error_contains(e);
        }
        if self.replayed || self.pending {
            f = f.replayed(self.replayed);
        }
        f
    }
}

/// `12  inventory/reserve_stock  order.created.v1  ORDER #7  delivered 5  [replayed]  error`
fn line(d: &DeadLetter) -> String {
    format!(
        "{}\t{}/{}\t{}\t{} #{}\tdelivered {}\t{}\t{}",
        d.dlq_sequence,
        d.group,
        d.handler,
        d.subject,
        d.stream,
        d.sequence,
        d.delivered,
        if d.replayed { "replayed" } else { "pending" },
        d.error
    )
}

fn as_json(d: &DeadLetter) -> String {
    serde_json::json!({
        "dlq_sequence": d.dlq_sequence,
        "group": d.group,
        "handler": d.handler,
        "subject": d.subject,
        "stream": d.stream,
        "sequence": d.sequence,
        "delivered": d.delivered,
        "replayed": d.replayed,
        "error": d.error,
        "payload": String::from_utf8_lossy(&d.payload),
    })
    .to_string()
}

fn detail(d: &DeadLetter) -> String {
    let mut out = format!("{}\n", line(d));
    for (name, value) in d.headers.iter() {
        let _ = writeln!(out, "{name}: {value}");
    }
    let _ = writeln!(out, "\n{}", String::from_utf8_lossy(&d.payload));
    out
}
