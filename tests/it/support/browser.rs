//! A real browser: Debian's `chromium`, headless, started per call with its
//! own profile directory (so a cookie set by one page load is sent by the
//! next). `--dump-dom` and `--screenshot` need no driver. Without
//! `/usr/bin/chromium` (or the binary named by `RG_TEST_CHROMIUM`) the test
//! fails, naming the package to install.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest one page load may take before the browser is killed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// A browser with a fresh profile; panics when chromium is missing.
    pub fn new() -> Self {
        let binary = std::env::var_os("RG_TEST_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        assert!(
            binary.exists(),
            "{} is missing: install Debian's `chromium` package (apt-get install -y chromium)",
            binary.display()
        );
        Self {
            binary,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, extra: &[String], url: &str) -> String {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        let out = tokio::time::timeout(LOAD_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("chromium did not finish loading {url} in time"))
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The DOM of `url` once loaded, as HTML.
    pub async fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom".into()], url).await
    }

    /// A PNG screenshot of `url` at `path`.
    pub async fn screenshot(&self, url: &str, path: &Path) {
        self.run(&[format!("--screenshot={}", path.display())], url)
            .await;
        assert!(
            std::fs::metadata(path).is_ok_and(|m| m.len() > 1000),
            "no screenshot at {}",
            path.display()
        );
    }

    /// `url` printed to PDF at `path`.
    pub async fn pdf(&self, url: &str, path: &Path) {
        self.run(
            &[
                format!("--print-to-pdf={}", path.display()),
                "--no-pdf-header-footer".into(),
            ],
            url,
        )
        .await;
        assert!(
            std::fs::metadata(path).is_ok_and(|m| m.len() > 1000),
            "no PDF at {}",
            path.display()
        );
    }
}

/// Where a test keeps what a person would look at (screenshots, PDFs):
/// `target/test-artifacts/NAME/`, created if missing.
pub fn artifacts(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
