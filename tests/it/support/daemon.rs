//! The binary under test: its path, the real `release-guardian run` as a
//! child process ([`Daemon`]), and minimal config files for it.

use super::{free_port, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_release-guardian")
}

/// What a finished command printed: its stdout, then its stderr.
pub fn stdout_and_stderr(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback address nobody listens on yet, for `[server] listen`.
pub fn free_listen() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Config text: the API on `listen`, the store in `g.db` beside the file,
/// and one `[[services]]` (no checks) per name in `services`.
pub fn minimal_config_text(listen: &str, services: &[&str]) -> String {
    let mut s = format!("[server]\nlisten = \"{listen}\"\n[store]\npath = \"g.db\"\n");
    for name in services {
        s.push_str(&format!("[[services]]\nname = \"{name}\"\n"));
    }
    s
}

/// Writes a minimal config (one service `checkout`, no checks, the store in
/// `dir`) listening on a free loopback port to `DIR/guardian.toml`; returns
/// (config path, listen).
pub fn minimal_config(dir: &Path) -> (PathBuf, String) {
    let listen = free_listen();
    let config = dir.join("guardian.toml");
    std::fs::write(&config, minimal_config_text(&listen, &["checkout"])).unwrap();
    (config, listen)
}

/// Writes `DIR/guardian.toml` (and `DIR/rules/rules.yaml` = `rules`) for
/// one service `checkout` ticking every second for two minutes, with the
/// query source section(s) `sources`, an automatic rollback hook that
/// succeeds (`/bin/true`), and one notifier `[notifiers.out]` whose other
/// keys are `notifier`; returns (config path, listen).
pub fn one_service_config(
    dir: &Path,
    sources: &str,
    rules: &str,
    notifier: &str,
) -> (PathBuf, String) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/rules.yaml"), rules).unwrap();
    let listen = free_listen();
    let config = dir.join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{listen}"
shutdown_grace = "2s"

[store]
path = "guardian.db"

[cadence]
tiers = [ {{ until = "2m", every = "1s" }} ]

{sources}

[[services]]
name = "checkout"
rules = ["rules/rules.yaml"]
notify = ["out"]
  [services.rollback]
  command = ["/bin/true"]
  mode = "auto"

[notifiers.out]
{notifier}
"#
        ),
    )
    .unwrap();
    (config, listen)
}

/// A client that trusts the PEM CA `ca` (besides the public ones).
pub fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// [`https_client`] presenting the client certificate `cert` (PEM) with
/// its key `key`.
pub fn https_client_as(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let mut identity = std::fs::read(cert).unwrap();
    identity.push(b'\n');
    identity.extend(std::fs::read(key).unwrap());
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap()
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

pub struct Daemon {
    pub api: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `config` (whose `[server] listen` is `addr`) and
    /// waits until `/readyz` answers 200.
    pub async fn start(config: &Path, addr: &str) -> Self {
        Self::start_at(config, format!("http://{addr}"), reqwest::Client::new()).await
    }

    /// [`Daemon::start`] for a config whose `[server]` has TLS keys: `api`
    /// is `https://ADDR`, and readiness is asked with a client trusting
    /// `ca` (PEM).
    pub async fn start_https(config: &Path, addr: &str, ca: &Path) -> Self {
        Self::start_at(config, format!("https://{addr}"), https_client(ca)).await
    }

    /// [`Daemon::start`] with the API at `api` (`http://` or `https://`),
    /// readiness asked with `http`.
    pub async fn start_at(config: &Path, api: String, http: reqwest::Client) -> Self {
        let log = config.with_extension(format!(
            "log.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start release-guardian");
        let me = Self {
            api,
            child: Some(child),
            log,
        };
        let url = format!("{}/readyz", me.api);
        wait_for("the daemon to be ready", Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        me
    }

    /// The daemon's process id (for `/proc/PID`, `prlimit --pid`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("daemon running")
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits (polling, with a deadline) for a clean exit.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("daemon running");
        let status = wait_for("the daemon to exit", timeout, || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        status
    }

    /// Sends SIGHUP: reload the config file.
    pub fn hup(&self) {
        self.signal("HUP");
    }

    /// Sends the signal `name` (`TERM`, `HUP`) with kill(1).
    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().map(|c| c.id()).expect("daemon running");
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid}");
    }

    /// The daemon's stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `GET /v1/releases/{id}` until `pred` holds for the release (or
    /// panics with `what` after `timeout`); returns the release. A request
    /// that fails (the daemon still starting) counts as not yet.
    pub async fn release_until(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let url = format!("{}/v1/releases/{id}", self.api);
        wait_for(what, timeout, || async {
            let r: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            pred(&r).then_some(r)
        })
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The daemon's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the unlabelled metric `name` in [`Daemon::metrics`].
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics().await, name)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.api))
            .json(&body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
