//! Finding a server binary and reading its version; shared by the servers of
//! the test kit.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A server program the test kit runs.
#[derive(Debug)]
pub(super) struct Program {
    /// The file name looked up on `PATH`, e.g. `nats-server`.
    pub(super) name: &'static str,
    /// The environment variable that names the binary, e.g.
    /// `JETFLOW_NATS_SERVER`.
    pub(super) env: &'static str,
    /// Reads the version from the output of `<binary> --version`.
    pub(super) parse_version: fn(&str) -> Option<Version>,
}

impl Program {
    /// The builder's binary, else `$env`, else the first `name` on `PATH`.
    /// The error says where it looked and what it found there.
    pub(super) fn resolve(&self, explicit: Option<&Path>) -> Result<PathBuf, String> {
        let check = |path: &Path, origin: &str| {
            if is_executable(path) {
                Ok(path.to_path_buf())
            } else {
                Err(format!(
                    "{origin} is `{}`, which is not an executable file",
                    path.display()
                ))
            }
        };
        if let Some(path) = explicit {
            return check(path, "the builder's `binary`");
        }
        if let Some(path) = std::env::var_os(self.env).filter(|path| !path.is_empty()) {
            return check(Path::new(&path), self.env);
        }
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(self.name))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                format!(
                    "{} is not set and there is no `{}` on PATH",
                    self.env, self.name
                )
            })
    }

    /// `<binary> --version`, run once per program, binary and process. The
    /// error says why no version could be read.
    pub(super) async fn version(&self, path: &Path) -> Result<Version, String> {
        type Cache = HashMap<(&'static str, PathBuf), Result<Version, String>>;
        static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = (self.name, path.to_path_buf());
        let cached = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        match cached {
            Some(result) => result,
            None => {
                let result = self.run_version(path).await;
                cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, result.clone());
                result
            }
        }
    }

    async fn run_version(&self, path: &Path) -> Result<Version, String> {
        let output = tokio::process::Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(VERSION_TIMEOUT, output)
            .await
            .map_err(|_| format!("no answer within {VERSION_TIMEOUT:?}"))?
            .map_err(|e| format!("could not run it: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        (self.parse_version)(&stdout)
            .or_else(|| (self.parse_version)(&stderr))
            .ok_or_else(|| {
                format!(
                    "unexpected output ({}): `{}`",
                    output.status,
                    format!("{} {}", stdout.trim(), stderr.trim()).trim()
                )
            })
    }
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// A server version; pre-release and build suffixes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    /// `2.10.0`, `v2.10.0`, `2.10` or `2.11.0-RC.1`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(patch) => patch.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// The first word of `output` that is a version, e.g. from
    /// `nats-server: v2.15.1`.
    pub(super) fn from_version_output(output: &str) -> Option<Self> {
        output
            .split_whitespace()
            .filter(|word| word.starts_with(|c: char| c == 'v' || c.is_ascii_digit()))
            .find_map(Self::parse)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = |major, minor, patch| Version {
            major,
            minor,
            patch,
        };
        assert_eq!(Version::parse("2.10.0"), Some(v(2, 10, 0)));
        assert_eq!(Version::parse("v2.9"), Some(v(2, 9, 0)));
        assert_eq!(Version::parse("2.11.0-RC.1"), Some(v(2, 11, 0)));
        assert_eq!(Version::parse("2.x"), None);
        assert_eq!(Version::parse("2.1.0.0"), None);
        assert_eq!(
            Version::from_version_output("nats-server: v2.15.1\n"),
            Some(v(2, 15, 1))
        );
        assert_eq!(Version::from_version_output("command not found"), None);
        assert!(v(2, 9, 10) < v(2, 10, 0));
        assert_eq!(v(2, 9, 10).to_string(), "2.9.10");
    }

    #[test]
    fn a_missing_binary_is_explained() {
        let program = Program {
            name: "jetflow-no-such-server",
            env: "JETFLOW_NO_SUCH_SERVER",
            parse_version: Version::from_version_output,
        };
        let err = program
            .resolve(Some(Path::new("/nonexistent/server")))
            .expect_err("not a file");
        assert_eq!(
            err,
            "the builder's `binary` is `/nonexistent/server`, which is not an executable file"
        );
        let err = program.resolve(None).expect_err("not on PATH");
        assert_eq!(
            err,
            "JETFLOW_NO_SUCH_SERVER is not set and there is no `jetflow-no-such-server` on PATH"
        );
    }
}
