//! A page as a person sees it: loaded in headless Chromium (its scripts
//! run), the DOM it ends with.
//!
//! The browser is `$JETFLOW_CHROMIUM`, else `/usr/bin/chromium` (Debian's
//! `chromium`, which `scripts/setup` installs as root). Without one a test
//! is skipped, saying why, unless `JETFLOW_REQUIRE_CHROMIUM=1` (set by
//! `scripts/test` and `.ci/run`): then it fails.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// The environment variable naming the browser binary.
pub const CHROMIUM_ENV: &str = "JETFLOW_CHROMIUM";
/// The environment variable that turns a missing browser into a failure.
pub const REQUIRE_ENV: &str = "JETFLOW_REQUIRE_CHROMIUM";

/// How long the page's scripts may run, in the browser's virtual time.
const BUDGET_MS: u32 = 10_000;
/// How long the browser may take in real time.
const LIMIT: Duration = Duration::from_secs(60);

/// The browser to use; `None` (after printing why) when there is none and
/// none is required. Panics when one is required and there is none.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os(CHROMIUM_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "no Chromium at {} (set {CHROMIUM_ENV}, or install Debian's `chromium`: scripts/setup \
         does as root, or apt-get install -y --no-install-recommends chromium)",
        path.display()
    );
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{why}; {REQUIRE_ENV}=1 requires it");
    }
    eprintln!("skipped: {why}; set {REQUIRE_ENV}=1 to fail instead");
    None
}

/// Loads `url` in headless `chromium` with a private profile, lets its
/// scripts run, and returns the serialized DOM.
pub async fn dump_dom(chromium: &std::path::Path, url: &str) -> anyhow::Result<String> {
    let profile = tempfile::tempdir()?;
    let run = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={BUDGET_MS}"),
            "--dump-dom",
            url,
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LIMIT, run)
        .await
        .with_context(|| format!("{} took more than {LIMIT:?} on {url}", chromium.display()))?
        .with_context(|| format!("cannot run {}", chromium.display()))?;
    if !out.status.success() {
        bail!(
            "{} exited with {} on {url}: {}",
            chromium.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The text nodes (trimmed, entities decoded, empty ones left out) inside
/// the element of `dom` whose `id` is `id`, up to the next element with an
/// `id` attribute `until` (a sibling after it): what the page shows there.
pub fn texts_between(dom: &str, id: &str, until: &str) -> Vec<String> {
    let start = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no element with id {id} in the DOM:\n{dom}"));
    let end = start
        + dom[start..]
            .find(&format!(r#"id="{until}""#))
            .unwrap_or_else(|| panic!("no element with id {until} after {id} in the DOM:\n{dom}"));
    dom[start..end]
        .split('<')
        .filter_map(|piece| piece.split_once('>').map(|(_, text)| text))
        .map(|text| {
            text.replace("&nbsp;", " ")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&")
                .trim()
                .to_owned()
        })
        .filter(|text| !text.is_empty())
        .collect()
}
