//! Progress of long work (replaying, purging many dead letters): a bar on
//! stderr when it is a terminal, plain counts otherwise (a log, a pipe).

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

/// Counts `done` of `total` items of one kind of work (`replayed`, `purged`).
pub(crate) enum Progress {
    Bar(ProgressBar),
    Counts {
        verb: &'static str,
        total: u64,
        /// The count last printed.
        printed: u64,
    },
}

/// Plain counts are printed every this many items (and at the end).
const EVERY: u64 = 100;

impl Progress {
    /// Progress of `total` items, shown only for more than one.
    pub(crate) fn new(verb: &'static str, total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta})") {
                bar.set_style(style);
            }
            bar.set_message(verb);
            Progress::Bar(bar)
        } else {
            Progress::Counts {
                verb,
                total,
                printed: 0,
            }
        }
    }

    /// `done` items are done.
    pub(crate) fn set(&mut self, done: u64) {
        match self {
            Progress::Bar(bar) => bar.set_position(done),
            Progress::Counts {
                verb,
                total,
                printed,
            } => {
                if done >= *printed + EVERY || (done == *total && done != *printed) {
                    eprintln!("{verb} {done} of {total}");
                    *printed = done;
                }
            }
        }
    }

    /// The work ended (the bar is cleared; the counts were printed).
    pub(crate) fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
