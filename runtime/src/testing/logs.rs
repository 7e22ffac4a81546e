//! A server's log file, and the excerpts of it that errors quote; shared by
//! the servers of the test kit.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::TestingError;

/// Error messages show this many lines from the start and from the end of
/// the log of the failed process.
const HEAD_LINES: usize = 8;
const TAIL_LINES: usize = 32;
/// Logs up to this size are read whole; of larger ones only the first
/// `HEAD_BYTES` and the last `TAIL_BYTES`.
const MAX_BYTES: u64 = 256 * 1024;
const HEAD_BYTES: u64 = 8 * 1024;
const TAIL_BYTES: u64 = 16 * 1024;

/// The log of a server, appended to by each of its processes in turn.
#[derive(Debug)]
pub(super) struct Log {
    path: PathBuf,
    /// Where the output of the current process starts.
    start: u64,
}

impl Log {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, start: 0 }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the log for a new process of `program` (`binary` on
    /// `127.0.0.1:port`): appends a header line and returns the files to
    /// give it as stdout and stderr.
    pub(super) fn open_for(
        &mut self,
        program: &str,
        binary: &Path,
        port: u16,
    ) -> Result<(File, File), TestingError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TestingError::io(format!("open the {program} log file"), e))?;
        self.start = log
            .metadata()
            .map_err(|e| TestingError::io(format!("read the {program} log file"), e))?
            .len();
        writeln!(
            log,
            "=== jetflow: starting {} on 127.0.0.1:{port} ===",
            binary.display(),
        )
        .map_err(|e| TestingError::io(format!("write the {program} log file"), e))?;
        let stderr = log
            .try_clone()
            .map_err(|e| TestingError::io(format!("open the {program} log file"), e))?;
        Ok((log, stderr))
    }

    /// The first and last lines the current process logged (usage errors
    /// come first, fatal errors last), or why they could not be read.
    pub(super) fn excerpt(&self) -> String {
        read_excerpt(&self.path, self.start)
            .unwrap_or_else(|e| format!("(could not read {}: {e})", self.path.display()))
    }
}

/// The first and last lines the log has after byte `start`.
fn read_excerpt(path: &Path, start: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = start.min(len);
    let mut read = |from: u64, max: u64| -> std::io::Result<String> {
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        (&mut file).take(max).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let (head, tail) = if len - start <= MAX_BYTES {
        let text = read(start, MAX_BYTES)?;
        (text.clone(), text)
    } else {
        (
            read(start, HEAD_BYTES)?,
            read(len - TAIL_BYTES, TAIL_BYTES)?,
        )
    };
    let head: Vec<&str> = head.lines().collect();
    let tail: Vec<&str> = tail.lines().collect();
    if len - start <= MAX_BYTES && head.len() <= HEAD_LINES + TAIL_LINES {
        return Ok(if head.is_empty() {
            "(the log is empty)".to_owned()
        } else {
            head.join("\n")
        });
    }
    let head = &head[..head.len().min(HEAD_LINES)];
    let tail = &tail[tail.len().saturating_sub(TAIL_LINES)..];
    Ok(format!("{}\n[...]\n{}", head.join("\n"), tail.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_show_the_current_process_head_and_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = Log::new(dir.path().join("server.log"));
        assert!(log.excerpt().starts_with("(could not read "));

        let (mut out, _) = log
            .open_for("test-server", Path::new("/bin/x"), 1)
            .expect("open");
        writeln!(out, "first run").expect("write");
        let (mut out, _) = log
            .open_for("test-server", Path::new("/bin/x"), 2)
            .expect("open");
        assert_eq!(
            log.excerpt(),
            "=== jetflow: starting /bin/x on 127.0.0.1:2 ==="
        );
        for i in 0..100 {
            writeln!(out, "line {i}").expect("write");
        }
        let excerpt = log.excerpt();
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), HEAD_LINES + 1 + TAIL_LINES, "{excerpt}");
        assert_eq!(lines[0], "=== jetflow: starting /bin/x on 127.0.0.1:2 ===");
        assert_eq!(lines[HEAD_LINES], "[...]");
        assert_eq!(lines.last(), Some(&"line 99"));
        assert!(!excerpt.contains("first run"));
    }
}
