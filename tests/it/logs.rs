//! The daemon's own logs, as the real binary writes them to a pipe (what
//! journald or a log file gets): plain text, no ANSI colour codes.
//!
//! Runs the real binary with its own environment (colour would be on if the
//! daemon did not check for a terminal).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ESC: &str = "\x1b[";

/// `release-guardian run --config CONFIG`, stderr piped, in an environment
/// where colour would be on if the daemon did not check for a terminal:
/// `NO_COLOR` (which the log formatter may honour) is removed.
fn run(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_release-guardian"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("NO_COLOR")
        .env_remove("RG_LOG_FORMAT")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("STATE_DIRECTORY")
        .env("RUST_LOG", "info")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start release-guardian")
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `child` to exit, killing it after `timeout`.
fn wait(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("release-guardian did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemon_logs_to_a_pipe_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    // A service without rules: the daemon starts and logs a warning (a
    // coloured level when colour is on) and its startup lines.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[store]\npath = \"g.db\"\n[[services]]\nname = \"checkout\"\n",
            free_port()
        ),
    )
    .unwrap();
    let mut child = run(&config);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines
        .iter()
        .any(|l: &String| l.contains("release-guardian ready"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `release-guardian ready` log line; stderr so far:\n{lines:#?}");
            }
        }
    }
    let stopped = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill -s TERM");
    assert!(stopped.success());
    let status = wait(&mut child, Duration::from_secs(30));
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let log = lines.join("\n");

    assert!(status.success(), "exit {status:?}; stderr:\n{log}");
    for expected in ["WARN", "INFO", "release-guardian ready", "shutting down"] {
        assert!(log.contains(expected), "no {expected:?} in stderr:\n{log}");
    }
    assert!(
        !log.contains(ESC),
        "ANSI escape codes in logs written to a pipe:\n{}",
        log.escape_debug()
    );
}

#[test]
fn an_invalid_config_is_reported_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, "[server]\nlisten = 5\n").unwrap();
    let child = run(&config);
    let out = child.wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr:\n{stderr}");
    assert!(stderr.contains("guardian.toml:2:"), "stderr:\n{stderr}");
    assert!(
        !stderr.contains(ESC),
        "ANSI escape codes on stderr:\n{}",
        stderr.escape_debug()
    );
}
