//! systemd integration: the shipped unit passes `systemd-analyze verify`
//! and keeps its hardening; the daemon speaks the sd_notify protocol
//! (READY after the API accepts connections, WATCHDOG pings, STOPPING on
//! SIGTERM).

use crate::support::{bin, minimal_config, stdout_and_stderr};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/release-guardian.service"
);

/// Lays out a root with the unit, the binary at its ExecStart path and
/// /bin/kill (ExecReload), as `systemd-analyze verify --root` needs.
fn rooted(unit_text: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for d in ["usr/bin", "bin", "etc/systemd/system"] {
        std::fs::create_dir_all(root.path().join(d)).unwrap();
    }
    std::fs::copy(bin(), root.path().join("usr/bin/release-guardian")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).unwrap();
    std::fs::write(
        root.path()
            .join("etc/systemd/system/release-guardian.service"),
        unit_text,
    )
    .unwrap();
    root
}

fn verify(root: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--recursive-errors=no", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("release-guardian.service")
        .output()
        .expect("systemd-analyze is installed (package systemd)");
    (out.status.success(), stdout_and_stderr(&out))
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let root = rooted(&text);
    let (ok, out) = verify(root.path());
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify failed:\n{out}"
    );
    // The check is real: a misspelt key fails it.
    let root = rooted(&text.replace("ProtectSystem=", "ProtectSystm="));
    let (ok, out) = verify(root.path());
    assert!(
        !ok && out.contains("ProtectSystm"),
        "verify did not catch a bad key:\n{out}"
    );
}

#[test]
fn the_unit_is_notify_with_watchdog_state_and_hardening() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=release-guardian",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        // A stop must not SIGTERM a running rollback hook with the daemon,
        // and a crash of the daemon must not SIGKILL the hook's supervisor.
        "KillMode=process",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}"
        );
    }
    let root = rooted(&text);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25"])
        .arg(format!("--root={}", root.path().display()))
        .arg("release-guardian.service")
        .output()
        .unwrap();
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "exposure above 2.5:\n{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_speaks_sd_notify() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (config, listen) = minimal_config(dir.path());
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let recv = |buf: &mut [u8]| -> String {
        let n = sock.recv(buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv(&mut buf);
    assert!(first.starts_with("READY=1"), "first message: {first:?}");
    // READY means the API already accepts connections.
    let health = reqwest::get(format!("http://{listen}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Watchdog pings every WATCHDOG_USEC/2 = 200 ms.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if recv(&mut buf).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "3 watchdog pings took {:?}",
        start.elapsed()
    );
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let stopping = loop {
        let m = recv(&mut buf);
        if !m.contains("WATCHDOG=1") {
            break m;
        }
    };
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit after SIGTERM: {status:?}");
}
