//! The rollback hook with real scripts (written with a `#!/bin/sh` shebang,
//! exec'd directly): arguments verbatim, exit codes, output capture and
//! truncation, timeouts that kill the whole process group, missing programs.

use crate::support::{script, wait_for};
use release_guardian::actions::rollback::{run_hook, HookVars, OUTPUT_LIMIT};
use release_guardian::actions::rollback::{RollbackConfig, RollbackMode};
use std::collections::BTreeMap;
use std::time::Duration;

/// Held by every test for its whole run: a script written while another
/// test forks can leak its write descriptor into that child, and exec'ing it
/// then fails with "Text file busy" (ETXTBSY).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hook(command: Vec<String>, timeout: Duration) -> RollbackConfig {
    RollbackConfig {
        command,
        timeout,
        mode: RollbackMode::Auto,
        env: BTreeMap::new(),
        ..Default::default()
    }
}

fn vars() -> HookVars {
    HookVars {
        release_id: "0190-release".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: "v1".into(),
        reason: "error_rate above 0.05 for 5m".into(),
    }
}

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn arguments_arrive_verbatim_without_a_shell() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let args_file = dir.path().join("args.txt");
    let s = script(
        dir.path(),
        "hook.sh",
        &format!(
            "printf '%s\\n' \"$@\" > '{}'\necho rolled back",
            args_file.display()
        ),
    );
    let nasty = format!("$(touch {}); echo hi", marker.display());
    let args = [nasty.as_str(), "a b", "*", "`id`", "'quoted'", "x;y|z&"];
    let mut command = vec![s.display().to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    let run = run_hook(&hook(command, T), &vars()).await;

    assert!(run.succeeded(), "{run:?}");
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.output, "rolled back\n");
    assert_eq!(run.describe(), "exited with status 0");
    let got = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(got.lines().collect::<Vec<_>>(), args);
    assert!(!marker.exists(), "a shell expanded $(...)");
}

#[tokio::test]
async fn a_failing_hook_keeps_its_code_and_output() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "fail.sh",
        "echo 'scaling deployment/checkout'\necho 'error: deployment not found' >&2\nexit 3",
    );
    let run = run_hook(&hook(vec![s.display().to_string()], T), &vars()).await;
    assert!(!run.succeeded());
    assert_eq!(run.exit_code, Some(3));
    assert!(!run.timed_out);
    assert!(
        run.output.contains("scaling deployment/checkout\n"),
        "{run:?}"
    );
    assert!(
        run.output.contains("error: deployment not found\n"),
        "{run:?}"
    );
    assert_eq!(
        run.describe(),
        "exited with status 3: error: deployment not found"
    );
}

#[tokio::test]
async fn long_output_keeps_the_tail() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "chatty.sh",
        "i=0\nwhile [ $i -lt 2000 ]; do echo \"line $i of some fairly long output\"; i=$((i+1)); done\necho LAST >&2",
    );
    let run = run_hook(&hook(vec![s.display().to_string()], T), &vars()).await;
    assert!(run.succeeded(), "{}", run.describe());
    assert!(
        run.output.starts_with("[output truncated: "),
        "{}",
        &run.output[..80]
    );
    assert!(run.output.ends_with("LAST\n"));
    let note_len = run.output.find('\n').unwrap() + 1;
    assert!(run.output.len() - note_len <= OUTPUT_LIMIT);
    assert!(run.output.len() - note_len > OUTPUT_LIMIT - 100);
    assert!(!run.output.contains("line 0 of"));
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let s = script(
        dir.path(),
        "slow.sh",
        &format!(
            "echo started\nsleep 60 &\necho $! > '{}'\nwait",
            pid_file.display()
        ),
    );
    let started = std::time::Instant::now();
    let run = run_hook(
        &hook(vec![s.display().to_string()], Duration::from_millis(500)),
        &vars(),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(run.timed_out, "{run:?}");
    assert!(!run.succeeded());
    assert_eq!(run.exit_code, None);
    assert_eq!(run.signal, Some(9));
    assert_eq!(run.output, "started\n");
    assert_eq!(run.describe(), "timed out after 500ms and was killed");

    // The background `sleep` was in the hook's process group: it is gone
    // (or a zombie waiting for a reaper), not sleeping on.
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let dead = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        stat.is_empty() || state == Some('Z') || state == Some('X')
    };
    // SIGKILL is delivered at once, but the exit takes a moment: poll.
    wait_for(
        &format!("grandchild {pid} to die"),
        Duration::from_secs(5),
        || async { dead().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_background_child_holding_the_output_open_does_not_hang_the_hook() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    let s = script(
        dir.path(),
        "detach.sh",
        &format!("sleep 60 &\necho $! > '{}'\necho done", pid_file.display()),
    );
    let run = run_hook(&hook(vec![s.display().to_string()], T), &vars()).await;
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(run.output, "done\n");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[tokio::test]
async fn a_hook_killed_by_a_signal_says_so() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "suicide.sh", "kill -9 $$");
    let run = run_hook(&hook(vec![s.display().to_string()], T), &vars()).await;
    assert_eq!(
        (run.exit_code, run.signal, run.timed_out),
        (None, Some(9), false)
    );
    assert_eq!(run.describe(), "killed by signal 9");
    assert!(!run.succeeded());
}

#[tokio::test]
async fn a_missing_program_cannot_start() {
    let _serial = SERIAL.lock().await;
    let run = run_hook(
        &hook(vec!["/nonexistent/rollback-tool".into(), "undo".into()], T),
        &vars(),
    )
    .await;
    assert_eq!(run.exit_code, None);
    assert_eq!(
        run.error.as_deref(),
        Some("cannot start `/nonexistent/rollback-tool`: No such file or directory")
    );
    assert_eq!(
        run.describe(),
        "cannot start `/nonexistent/rollback-tool`: No such file or directory"
    );
    assert!(!run.succeeded());

    let empty = run_hook(&hook(vec![], T), &vars()).await;
    assert_eq!(
        empty.error.as_deref(),
        Some("the rollback command is empty")
    );
}

#[tokio::test]
async fn stdin_is_empty() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "cat.sh", "cat; echo \"eof:$?\"");
    let run = run_hook(&hook(vec![s.display().to_string()], T), &vars()).await;
    assert_eq!(run.output, "eof:0\n");
}
