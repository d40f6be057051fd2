//! The rollback hook: runs the configured command without a shell, with a
//! minimal environment, a timeout, and its output kept (the tail, capped).
//!
//! - `command[0]` is executed directly with `command[1..]` as its arguments:
//!   no shell, so metacharacters in arguments arrive verbatim.
//! - The environment is built by [`hook_environment`]: only `PATH`, `HOME`,
//!   `LANG` of the daemon, then the service's `[services.rollback] env`
//!   table, then the `RG_*` variables (later entries win).
//! - stdin is `/dev/null`; stdout and stderr share one pipe (like `2>&1`,
//!   so lines keep the order they were written in), read while the hook runs
//!   into a buffer that keeps the last [`OUTPUT_LIMIT`] bytes and says how
//!   much it dropped.
//! - The hook runs in its own process group. On timeout the whole group is
//!   sent SIGKILL (by running `kill -s KILL -- -PGID`, since the crate has no
//!   `unsafe`), and the child itself is killed and reaped in any case.
//! - After the hook exits, output still held open by a background child is
//!   read for at most [`DRAIN_AFTER_EXIT`].
//! - If the caller drops the future (shutdown), the hook itself is killed
//!   (`kill_on_drop`), but not the rest of its process group.
//!
//! The daemon does not call [`run_hook`] itself: it runs the hook under a
//! supervisor process ([`crate::actions::hook_supervisor`]) that records the
//! outcome in a file, so that the outcome outlives a crash of the daemon, and
//! that kills every descendant of the hook on timeout. The supervisor uses
//! the same code ([`run_command`]) with [`KillScope::Descendants`].

use crate::section::{deserialize_duration, KeyPath, Report, Secret};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;

/// Default rollback hook timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Run the hook as soon as a check reaches the rollback level.
    #[default]
    Auto,
    /// Page and wait for `POST /v1/releases/{id}/rollback`.
    Manual,
}

impl RollbackMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// Program and arguments; run without a shell. Exactly one of
    /// `command` and `url`.
    #[serde(default)]
    pub command: Vec<String>,
    /// The HTTP form: POST the release as JSON to this URL
    /// ([`crate::actions::rollback_http`]); 2xx means rolled back.
    #[serde(default)]
    pub url: Option<String>,
    /// Key of the `url` form's HMAC-SHA256 signature (or `secret_file`).
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub mode: RollbackMode,
    /// Extra environment for the hook.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Record what would have run, page, and run nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The signing key `check_config` read from `secret` or `secret_file`.
    #[serde(skip)]
    pub signing_key: Option<Secret>,
}

impl RollbackConfig {
    /// What the hook runs, for the timeline: the command line, or
    /// `POST URL`.
    pub fn describe(&self) -> String {
        match &self.url {
            Some(url) => format!("POST {url}"),
            None => self
                .command
                .iter()
                .map(|a| {
                    if a.is_empty()
                        || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
                    {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl Default for RollbackConfig {
    /// No command, no url (`check_config` wants one), the default timeout.
    fn default() -> Self {
        Self {
            command: Vec::new(),
            url: None,
            secret: None,
            secret_file: None,
            timeout: DEFAULT_TIMEOUT,
            mode: RollbackMode::default(),
            env: BTreeMap::new(),
            dry_run: false,
            signing_key: None,
        }
    }
}

/// Checks a service's `[services.rollback]` (`at`: that table; `base`: the
/// config file's directory, for `secret_file`) and returns it with its
/// signing key read.
pub fn check_config(
    r: &RollbackConfig,
    at: &KeyPath,
    base: &Path,
    report: &mut Report<'_>,
) -> RollbackConfig {
    let mut checked = r.clone();
    match (&r.url, r.command.is_empty()) {
        (Some(_), false) => report.error(
            &at.key("url"),
            "set one of rollback `command` or `url`, not both",
        ),
        (None, true) => report.error(
            at,
            "[services.rollback] needs a `command` (a program to run) or a `url` (to POST the release to)",
        ),
        (None, false) => {
            if r.command.first().is_none_or(|c| c.trim().is_empty()) {
                report.error(
                    &at.key("command"),
                    "rollback `command` must name a program (it runs without a shell)",
                );
            }
            for key in ["secret", "secret_file"] {
                let set = if key == "secret" {
                    r.secret.is_some()
                } else {
                    r.secret_file.is_some()
                };
                if set {
                    report.error(&at.key(key), format!("`{key}` signs the `url` form; a `command` hook has none"));
                }
            }
        }
        (Some(url), true) => {
            if let Err(e) = crate::section::http_url(url) {
                report.error(
                    &at.key("url"),
                    format!("rollback `url` {url:?} is not an http(s) URL: {e}"),
                );
            }
            if !r.env.is_empty() {
                report.error(&at.key("env"), "`env` is the `command` form's environment; the `url` form has none");
            }
            if r.secret.is_some() || r.secret_file.is_some() {
                checked.signing_key = crate::section::one_secret(
                    r.secret.as_ref(),
                    r.secret_file.as_ref(),
                    "secret",
                    at,
                    "the rollback url's signature",
                    base,
                    report,
                )
                .map(|(s, _)| s);
            }
        }
    }
    if r.timeout.is_zero() {
        report.error(&at.key("timeout"), "`timeout` must be greater than zero");
    }
    // Bounded so that no deadline computed from it can overflow.
    if let Err(e) = crate::section::at_most("timeout", r.timeout, crate::section::MAX_HOOK_TIMEOUT)
    {
        report.error(&at.key("timeout"), e);
    }
    checked
}

/// Output bytes kept from a hook run (the tail).
pub const OUTPUT_LIMIT: usize = 16 * 1024;

/// Variables of the daemon's own environment a hook inherits.
pub const INHERITED_VARS: [&str; 3] = ["PATH", "HOME", "LANG"];

/// How long output is still read once the hook has exited or been killed.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The `RG_*` variables the hook receives.
#[derive(Debug, Clone)]
pub struct HookVars {
    pub release_id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: String,
    pub reason: String,
}

/// What one run of the hook did.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRun {
    /// The exit status, when the hook exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the hook, when one did.
    pub signal: Option<i32>,
    /// Combined stdout and stderr: the last [`OUTPUT_LIMIT`] bytes, preceded
    /// by a note when earlier output was dropped.
    pub output: String,
    /// The hook outlived its timeout and was killed.
    pub timed_out: bool,
    /// The timeout it ran under.
    pub time_limit: Duration,
    /// From start to end (or to the failure to start).
    pub elapsed: Duration,
    /// Why it could not be run at all ("cannot start `x`: ...").
    pub error: Option<String>,
    /// On timeout under the supervisor: how many processes (the hook and
    /// its descendants, wherever they moved) were killed.
    pub killed: Option<usize>,
}

impl HookRun {
    /// Exit status 0, in time, started fine: the release was rolled back.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }

    /// What happened, in one sentence: "exited with status 3: LAST LINE",
    /// "timed out after 5m and was killed", "killed by signal 9", "cannot start ...".
    pub fn describe(&self) -> String {
        if let Some(error) = &self.error {
            return error.clone();
        }
        if self.timed_out {
            let limit = humantime::format_duration(self.time_limit);
            return match self.killed {
                Some(1) => format!("timed out after {limit}; killed 1 process"),
                Some(n) => format!("timed out after {limit}; killed {n} processes"),
                None => format!("timed out after {limit} and was killed"),
            };
        }
        match (self.exit_code, self.signal) {
            (Some(code), _) => match last_line(&self.output) {
                Some(line) if code != 0 => format!("exited with status {code}: {line}"),
                _ => format!("exited with status {code}"),
            },
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended without an exit status".into(),
        }
    }

    fn not_started(error: String, time_limit: Duration, started: Instant) -> Self {
        Self {
            exit_code: None,
            signal: None,
            output: String::new(),
            timed_out: false,
            time_limit,
            elapsed: started.elapsed(),
            error: Some(error),
            killed: None,
        }
    }
}

/// The last non-empty line of `output`, cut to 200 characters.
fn last_line(output: &str) -> Option<String> {
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    Some(match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    })
}

/// The hook's whole environment: [`INHERITED_VARS`] as `parent` gives them
/// (when set), then `extra` (the config's `env` table), then the `RG_*`
/// variables; a later entry replaces an earlier one of the same name.
pub fn hook_environment(
    parent: impl Fn(&str) -> Option<OsString>,
    extra: &BTreeMap<String, String>,
    vars: &HookVars,
) -> BTreeMap<OsString, OsString> {
    let mut env = BTreeMap::new();
    for name in INHERITED_VARS {
        if let Some(value) = parent(name) {
            env.insert(OsString::from(name), value);
        }
    }
    for (name, value) in extra {
        env.insert(OsString::from(name), OsString::from(value));
    }
    let rg = [
        ("RG_RELEASE_ID", &vars.release_id),
        ("RG_SERVICE", &vars.service),
        ("RG_ENVIRONMENT", &vars.environment),
        ("RG_VERSION", &vars.version),
        ("RG_PREVIOUS_VERSION", &vars.previous_version),
        ("RG_REASON", &vars.reason),
    ];
    for (name, value) in rg {
        env.insert(OsString::from(name), OsString::from(value));
    }
    env
}

/// Runs the hook once, in this process, and reports what it did. Never
/// panics, never hangs past `cfg.timeout` + 2 × [`DRAIN_AFTER_EXIT`].
pub async fn run_hook(cfg: &RollbackConfig, vars: &HookVars) -> HookRun {
    let env = hook_environment(|k| std::env::var_os(k), &cfg.env, vars);
    run_command(&cfg.command, cfg.timeout, env, KillScope::Group).await
}

/// What a timeout kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// The hook's process group (and the hook).
    Group,
    /// The hook's process group, then every live descendant of this process
    /// until none is left: for the supervisor, a child subreaper, to which
    /// the descendants that left the group (`setsid`) re-parent.
    Descendants,
}

/// Runs `command` (program and arguments, no shell) with exactly `env`, in
/// its own process group, under `timeout`; on timeout kills `scope`.
pub async fn run_command(
    command: &[String],
    timeout: Duration,
    env: BTreeMap<OsString, OsString>,
    scope: KillScope,
) -> HookRun {
    let started = Instant::now();
    let Some((program, args)) = command.split_first() else {
        return HookRun::not_started("the rollback command is empty".into(), timeout, started);
    };
    let (reader, writers) = match output_pipe() {
        Ok(pipe) => pipe,
        Err(e) => {
            let error = format!("cannot create a pipe for the hook's output: {e}");
            return HookRun::not_started(error, timeout, started);
        }
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(writers.0)
        .stderr(writers.1)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    // Close our copies of the pipe's write end, or it never reaches EOF.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let error = format!("cannot start `{program}`: {}", io_message(&e));
            return HookRun::not_started(error, timeout, started);
        }
    };
    let (status, output, timed_out, killed) = supervise(&mut child, reader, timeout, scope).await;
    let (exit_code, signal, error) = match status {
        Some(Ok(status)) => (status.code(), signal_of(status), None),
        Some(Err(e)) => (None, None, Some(format!("cannot wait for the hook: {e}"))),
        None => (None, None, Some("the hook could not be reaped".into())),
    };
    HookRun {
        exit_code,
        signal,
        output,
        timed_out,
        time_limit: timeout,
        elapsed: started.elapsed(),
        error,
        killed,
    }
}

/// One pipe for both stdout and stderr (like `2>&1`), so the output keeps
/// the order in which the hook wrote it: our read end, and two write ends.
fn output_pipe() -> std::io::Result<(pipe::Receiver, (OwnedFd, OwnedFd))> {
    let (sender, receiver) = pipe::pipe()?;
    let stdout = sender.into_blocking_fd()?;
    let stderr = stdout.try_clone()?;
    Ok((receiver, (stdout, stderr)))
}

/// What [`supervise`] saw: the exit status (if reaped), the output, whether
/// the hook timed out, and how many processes were killed (by
/// [`KillScope::Descendants`]).
type Supervised = (
    Option<std::io::Result<ExitStatus>>,
    String,
    bool,
    Option<usize>,
);

/// Waits for `child` while reading its output; kills `scope` on timeout.
async fn supervise(
    child: &mut tokio::process::Child,
    reader: pipe::Receiver,
    timeout: Duration,
    scope: KillScope,
) -> Supervised {
    let mut killed = None;
    let mut reader = Some(reader);
    let mut output = TailBuffer::new(OUTPUT_LIMIT);
    let mut buf = [0u8; 8192];
    let mut status = None;
    let mut timed_out = false;
    let deadline = tokio::time::Instant::now() + timeout;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    while status.is_none() || reader.is_some() {
        tokio::select! {
            n = read_some(&mut reader, &mut buf) => match n {
                Some(n) => output.push(&buf[..n]),
                None => reader = None,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                let drain_until = (tokio::time::Instant::now() + DRAIN_AFTER_EXIT).min(timer.deadline());
                timer.as_mut().reset(drain_until);
            }
            () = &mut timer => {
                if status.is_some() || timed_out {
                    break;
                }
                timed_out = true;
                match scope {
                    KillScope::Group => kill_group(child).await,
                    KillScope::Descendants => {
                        let group = child.id();
                        killed = Some(crate::actions::hook_supervisor::kill_descendants(group).await);
                        let _ = child.start_kill();
                    }
                }
                timer.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
        }
    }
    if status.is_none() {
        let _ = child.start_kill();
        status = tokio::time::timeout(DRAIN_AFTER_EXIT, child.wait())
            .await
            .ok();
    }
    (status, output.into_string(), timed_out, killed)
}

/// One read from the pipe while it is open: `Some(n)` bytes, `None` at EOF
/// or error; pending forever once it is gone.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// SIGKILLs the child's process group (its pid: `process_group(0)`), then the child.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let group = format!("-{pid}");
        let killed = tokio::process::Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !matches!(killed, Ok(s) if s.success()) {
            tracing::warn!(
                pid,
                "could not kill the rollback hook's process group; killing the hook only"
            );
        }
    }
    let _ = child.start_kill();
}

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_: ExitStatus) -> Option<i32> {
    None
}

/// An I/O error without the " (os error N)" suffix.
fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The last `cap` bytes written to it, and how many came before them.
struct TailBuffer {
    bytes: VecDeque<u8>,
    dropped: u64,
    cap: usize,
}

impl TailBuffer {
    fn new(cap: usize) -> Self {
        Self {
            bytes: VecDeque::with_capacity(cap.min(4096)),
            dropped: 0,
            cap,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(self.cap);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The tail as text (lossy), with a note in front if anything was dropped.
    fn into_string(self) -> String {
        let bytes: Vec<u8> = self.bytes.into();
        if self.dropped == 0 {
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        // Do not start in the middle of a UTF-8 character.
        let start = bytes
            .iter()
            .position(|b| (b & 0b1100_0000) != 0b1000_0000)
            .unwrap_or(bytes.len());
        format!(
            "[output truncated: {} earlier bytes dropped]\n{}",
            self.dropped + start as u64,
            String::from_utf8_lossy(&bytes[start..])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HookVars {
        HookVars {
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: "v1".into(),
            reason: "error_rate above 0.05 for 5m".into(),
        }
    }

    fn names(env: &BTreeMap<OsString, OsString>) -> Vec<&str> {
        env.keys().filter_map(|k| k.to_str()).collect()
    }

    #[test]
    fn environment_is_minimal_and_ordered_by_precedence() {
        let parent = |k: &str| match k {
            "PATH" => Some(OsString::from("/usr/bin:/bin")),
            "HOME" => Some(OsString::from("/root")),
            "SECRET" => Some(OsString::from("x")),
            _ => None,
        };
        let mut extra = BTreeMap::new();
        extra.insert("KUBECONFIG".to_string(), "/etc/kube".to_string());
        extra.insert("PATH".to_string(), "/opt/bin".to_string());
        extra.insert("RG_SERVICE".to_string(), "spoofed".to_string());
        let env = hook_environment(parent, &extra, &vars());
        assert_eq!(
            names(&env),
            [
                "HOME",
                "KUBECONFIG",
                "PATH",
                "RG_ENVIRONMENT",
                "RG_PREVIOUS_VERSION",
                "RG_REASON",
                "RG_RELEASE_ID",
                "RG_SERVICE",
                "RG_VERSION"
            ]
        );
        assert_eq!(env[&OsString::from("PATH")], "/opt/bin");
        assert_eq!(env[&OsString::from("RG_SERVICE")], "checkout");
        assert_eq!(
            env[&OsString::from("RG_REASON")],
            "error_rate above 0.05 for 5m"
        );
    }

    #[test]
    fn tail_buffer_keeps_the_end_and_counts_the_rest() {
        let mut t = TailBuffer::new(8);
        t.push(b"0123");
        t.push(b"456789ab");
        assert_eq!(
            t.into_string(),
            "[output truncated: 4 earlier bytes dropped]\n456789ab"
        );
        let mut t = TailBuffer::new(8);
        t.push(b"short");
        assert_eq!(t.into_string(), "short");
        let mut t = TailBuffer::new(3);
        // "xéé" is 5 bytes; the last 3 start inside the first 'é', whose
        // stray half is dropped too.
        t.push("xé".as_bytes());
        t.push("é".as_bytes());
        assert_eq!(
            t.into_string(),
            "[output truncated: 3 earlier bytes dropped]\né"
        );
    }

    #[test]
    fn describe_says_what_happened() {
        let base = HookRun {
            exit_code: Some(3),
            signal: None,
            output: "working\nerror: deployment not found\n\n".into(),
            timed_out: false,
            time_limit: Duration::from_secs(300),
            elapsed: Duration::from_secs(1),
            error: None,
            killed: None,
        };
        assert_eq!(
            base.describe(),
            "exited with status 3: error: deployment not found"
        );
        assert!(!base.succeeded());
        let ok = HookRun {
            exit_code: Some(0),
            ..base.clone()
        };
        assert_eq!(ok.describe(), "exited with status 0");
        assert!(ok.succeeded());
        let timed_out = HookRun {
            exit_code: None,
            signal: Some(9),
            timed_out: true,
            ..base.clone()
        };
        assert_eq!(timed_out.describe(), "timed out after 5m and was killed");
        let killed = HookRun {
            exit_code: None,
            signal: Some(9),
            ..base.clone()
        };
        assert_eq!(killed.describe(), "killed by signal 9");
        let swept = HookRun {
            killed: Some(3),
            ..timed_out.clone()
        };
        assert_eq!(swept.describe(), "timed out after 5m; killed 3 processes");
    }

    #[test]
    fn io_messages_lose_the_errno() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "No such file or directory");
    }
}
