//! The rollback hook's supervisor: a small process between the daemon and
//! the hook, so that the hook's outcome outlives a crash of the daemon and
//! a timed-out hook leaves no process behind.
//!
//! The daemon runs its own binary again (`/proc/self/exe`, so an upgrade that
//! replaced the file on disk does not matter) as
//! `release-guardian hook-supervisor --status-file PATH --timeout-ms N -- COMMAND...`
//! with the hook's minimal environment ([`rollback::hook_environment`]) as its
//! whole environment. The supervisor:
//!
//! 1. leaves the daemon's session and process group (`setsid`), so that a
//!    signal to the daemon's group does not reach it and it outlives a
//!    `kill -9` of the daemon;
//! 2. becomes a child subreaper (`PR_SET_CHILD_SUBREAPER`), so that every
//!    process the hook starts stays below it, even one that left the hook's
//!    process group (`setsid sleep 1000 &`) and lost its parent;
//! 3. runs the hook exactly as the daemon would ([`rollback::run_command`]:
//!    no shell, its own process group, stdin closed, the output's tail kept,
//!    the timeout); on timeout it kills the hook's process group, then every
//!    live descendant of itself, again until none is left
//!    ([`kill_descendants`]), and counts them;
//! 4. writes the outcome ([`HookStatus`], JSON) to the status file durably:
//!    a temporary file, `fsync`, `rename`, `fsync` of the directory.
//!
//! The status file lives in `rollback-hooks/` beside the SQLite file (the
//! state directory), named after the release id ([`status_path`]). The
//! daemon waits for the supervisor and reads the file; after a restart, the
//! recovery of a rollback left `running` reads the file if it is there,
//! adopts a supervisor still running ([`find_supervisor`]: the process
//! whose command line names that status file), and reports the outcome
//! unknown only when there is neither. The file holds the raw output: it is
//! redacted when recorded, and the file is removed once the outcome is in the
//! store.

use crate::actions::rollback::{self, HookRun, HookVars, KillScope, RollbackConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "hook-supervisor";

/// The directory of status files, beside the store's file.
pub const STATUS_DIR: &str = "rollback-hooks";

/// Beyond the hook's timeout and output drains: how long the daemon waits for
/// a supervisor before it gives up on it and kills it.
pub const SUPERVISOR_SLACK: Duration = Duration::from_secs(30);

/// How often an adopted supervisor (after a restart) is looked at.
pub const ADOPT_POLL: Duration = Duration::from_secs(1);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Runs hooks under the supervisor from now on. Only the `release-guardian`
/// binary can (it has the subcommand): `run` calls this; a [`Guardian`]
/// embedded elsewhere (tests) runs hooks in-process with [`rollback::run_hook`].
///
/// [`Guardian`]: crate::scheduler::Guardian
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether hooks run under the supervisor.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What the supervisor writes: one hook run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookStatus {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The tail of the combined output, unredacted.
    pub output: String,
    pub timed_out: bool,
    pub time_limit_ms: u64,
    pub elapsed_ms: u64,
    pub error: Option<String>,
    pub killed: Option<usize>,
}

impl From<&HookRun> for HookStatus {
    fn from(r: &HookRun) -> Self {
        HookStatus {
            exit_code: r.exit_code,
            signal: r.signal,
            output: r.output.clone(),
            timed_out: r.timed_out,
            time_limit_ms: r.time_limit.as_millis() as u64,
            elapsed_ms: r.elapsed.as_millis() as u64,
            error: r.error.clone(),
            killed: r.killed,
        }
    }
}

impl From<HookStatus> for HookRun {
    fn from(s: HookStatus) -> Self {
        HookRun {
            exit_code: s.exit_code,
            signal: s.signal,
            output: s.output,
            timed_out: s.timed_out,
            time_limit: Duration::from_millis(s.time_limit_ms),
            elapsed: Duration::from_millis(s.elapsed_ms),
            error: s.error,
            killed: s.killed,
        }
    }
}

/// `DIR/rollback-hooks/ID.json` where DIR is the daemon's local state
/// directory ([`crate::store::StoreSettings::state_dir`]); the id is escaped
/// (`%XX` for anything but ASCII letters, digits, `-` and `_`).
pub fn status_path(dir: &Path, release_id: &str) -> PathBuf {
    let mut name = String::with_capacity(release_id.len() + 5);
    for b in release_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".json");
    dir.join(STATUS_DIR).join(name)
}

/// Reads a status file: `None` if there is none, `Some(Err)` if it cannot
/// be read or parsed.
pub fn read_status(path: &Path) -> Option<Result<HookStatus, String>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is unreadable: {e}", path.display())),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Writes `status` to `path` durably: `PATH.tmp` (mode 0600), `fsync`,
/// rename over `path`, `fsync` of the directory.
pub fn write_status(path: &Path, status: &HookStatus) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(status).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes a status file once its outcome is in the store.
pub fn remove_status(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the hook's status file")
        }
    }
}

/// The `hook-supervisor` subcommand (see the module docs). Exit status 0
/// once the status file is written, whatever the hook did; 1 if it could
/// not be written.
pub fn main(status_file: &Path, timeout: Duration, command: &[String]) -> ExitCode {
    // Fails only if already a group leader, i.e. started by hand in its own
    // group: then it is out of the daemon's group anyway.
    let _ = rustix::process::setsid();
    let subreaper = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let run = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
            let mut run = rt.block_on(rollback::run_command(
                command,
                timeout,
                env,
                KillScope::Descendants,
            ));
            if let (Err(e), true) = (&subreaper, run.timed_out) {
                run.output.push_str(&format!(
                    "\n[release-guardian: could not become a child subreaper ({e}): descendants that left the hook's process group may have survived]\n"
                ));
            }
            run
        }
        Err(e) => HookRun {
            exit_code: None,
            signal: None,
            output: String::new(),
            timed_out: false,
            time_limit: timeout,
            elapsed: Duration::ZERO,
            error: Some(format!("the hook supervisor cannot start: {e}")),
            killed: None,
        },
    };
    match write_status(status_file, &HookStatus::from(&run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "release-guardian hook-supervisor: cannot write {}: {e}",
                status_file.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs the hook under a supervisor writing `status_file`, waits for it and
/// returns what the supervisor recorded (the file stays: the caller removes
/// it once the outcome is stored).
pub async fn run_supervised(cfg: &RollbackConfig, vars: &HookVars, status_file: &Path) -> HookRun {
    let started = std::time::Instant::now();
    let failed = |error: String| HookRun {
        exit_code: None,
        signal: None,
        output: String::new(),
        timed_out: false,
        time_limit: cfg.timeout,
        elapsed: started.elapsed(),
        error: Some(error),
        killed: None,
    };
    if cfg.command.is_empty() {
        return failed("the rollback command is empty".into());
    }
    // A release is rolled back at most once, so a file here is stale.
    remove_status(status_file);
    if let Some(dir) = status_file.parent() {
        if let Err(e) = create_private_dir(dir) {
            return failed(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let env = rollback::hook_environment(|k| std::env::var_os(k), &cfg.env, vars);
    let mut command = tokio::process::Command::new("/proc/self/exe");
    command
        .arg0("release-guardian")
        .arg(SUBCOMMAND)
        .arg("--status-file")
        .arg(status_file)
        .arg("--timeout-ms")
        .arg(cfg.timeout.as_millis().to_string())
        .arg("--")
        .args(&cfg.command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Not kill_on_drop: the supervisor outlives the daemon by design.
        .kill_on_drop(false);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start the hook supervisor: {e}")),
    };
    let pid = child.id();
    let limit = cfg.timeout + 2 * rollback::DRAIN_AFTER_EXIT + SUPERVISOR_SLACK;
    let exit = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("cannot wait for it: {e}"),
        Err(_) => {
            if let Some(pid) = pid {
                kill_supervisor(pid);
            }
            let _ = child.start_kill();
            format!(
                "it did not finish within {}; killed",
                humantime::format_duration(limit)
            )
        }
    };
    match read_status(status_file) {
        Some(Ok(status)) => status.into(),
        Some(Err(e)) => failed(format!("the hook supervisor's record is unusable: {e}")),
        None => failed(format!(
            "the hook supervisor ended without recording the hook's outcome ({exit})"
        )),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// SIGKILLs a supervisor and its session's process group (its own pid).
pub fn kill_supervisor(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// The pid of a live supervisor writing `status_file`: a process (not a
/// zombie) whose command line is `... hook-supervisor --status-file
/// STATUS_FILE ...`. The command line, not a pid file, so a reused pid
/// cannot be mistaken for it and there is no window in which a supervisor
/// runs without its pid recorded.
pub fn find_supervisor(status_file: &Path) -> Option<u32> {
    let want = status_file.as_os_str().as_encoded_bytes();
    processes().into_iter().find_map(|p| {
        if p.state == 'Z' || p.state == 'X' {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let at = args.iter().position(|a| *a == SUBCOMMAND.as_bytes())?;
        let named = args
            .get(at + 1..at + 3)
            .is_some_and(|w| w[0] == b"--status-file" && w[1] == want);
        named.then_some(p.pid)
    })
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(pid, &s))
        .is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// One process of `/proc`.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    state: char,
    ppid: u32,
    pgrp: u32,
}

/// `pid (comm) S ppid pgrp ...`; the command may hold spaces and `)`.
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(Proc {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Every process in `/proc` now.
fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(pid, &stat)
    })
    .collect()
}

/// The live (not zombie) descendants of `root`.
fn live_descendants(root: u32, procs: &[Proc]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<&Proc>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::new();
    while let Some(parent) = stack.pop() {
        for c in children.get(&parent).into_iter().flatten() {
            if !seen.insert(c.pid) {
                continue;
            }
            stack.push(c.pid);
            if c.state != 'Z' && c.state != 'X' {
                out.push(c.pid);
            }
        }
    }
    out
}

/// Rounds of [`kill_descendants`] before it gives up (a fork bomb faster
/// than SIGKILL).
const KILL_ROUNDS: usize = 200;

/// SIGKILLs the process group `group` (the hook's), then every live
/// descendant of this process, round after round until none is left (a
/// descendant may fork, or re-parent here when its parent dies, between two
/// rounds); reaps the zombies left here other than `group`'s leader (the
/// hook, reaped by its owner). Returns how many processes it killed. For the
/// supervisor, a child subreaper: every process the hook started is its
/// descendant.
pub async fn kill_descendants(group: Option<u32>) -> usize {
    use rustix::process::{kill_process, kill_process_group, Pid, Signal};
    let me = std::process::id();
    let mut killed = HashSet::new();
    if let Some(g) = group {
        for p in processes() {
            if p.pgrp == g && p.state != 'Z' && p.state != 'X' {
                killed.insert(p.pid);
            }
        }
        if let Some(pg) = Pid::from_raw(g as i32) {
            let _ = kill_process_group(pg, Signal::KILL);
        }
    }
    for _ in 0..KILL_ROUNDS {
        let procs = processes();
        reap_zombies(me, group, &procs);
        // A process SIGKILLed in an earlier round may not have exited yet:
        // it is killed again (and counted once).
        let live = live_descendants(me, &procs);
        if live.is_empty() {
            break;
        }
        for pid in live {
            if let Some(p) = Pid::from_raw(pid as i32) {
                if kill_process(p, Signal::KILL).is_ok() {
                    killed.insert(pid);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killed.len()
}

/// Reaps this process's zombie children, except `keep` (owned by a tokio
/// `Child`, which reaps it itself).
fn reap_zombies(me: u32, keep: Option<u32>, procs: &[Proc]) {
    use rustix::process::{waitpid, Pid, WaitOptions};
    for p in procs {
        if p.ppid == me && p.state == 'Z' && Some(p.pid) != keep {
            if let Some(pid) = Pid::from_raw(p.pid as i32) {
                let _ = waitpid(Some(pid), WaitOptions::NOHANG);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paths_are_beside_the_store_and_escaped() {
        assert_eq!(
            status_path(Path::new("/var/lib/rg"), "0190-ab_C"),
            PathBuf::from("/var/lib/rg/rollback-hooks/0190-ab_C.json")
        );
        assert_eq!(
            status_path(Path::new("."), "../x y"),
            PathBuf::from("./rollback-hooks/%2E%2E%2Fx%20y.json")
        );
    }

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let p = parse_stat(42, "42 (a) b (c) S 7 42 42 0 -1").unwrap();
        assert_eq!((p.pid, p.state, p.ppid, p.pgrp), (42, 'S', 7, 42));
    }

    #[test]
    fn status_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = status_path(dir.path(), "r1");
        assert!(read_status(&path).is_none());
        let status = HookStatus {
            exit_code: Some(0),
            signal: None,
            output: "done\n".into(),
            timed_out: false,
            time_limit_ms: 5_000,
            elapsed_ms: 12,
            error: None,
            killed: None,
        };
        write_status(&path, &status).unwrap();
        assert_eq!(read_status(&path).unwrap().unwrap(), status);
        let run = HookRun::from(status);
        assert!(run.succeeded());
        remove_status(&path);
        assert!(read_status(&path).is_none());
    }

    #[test]
    fn no_supervisor_runs_for_an_unknown_file() {
        assert_eq!(find_supervisor(Path::new("/nonexistent/x.json")), None);
        assert!(alive(std::process::id()));
    }
}
