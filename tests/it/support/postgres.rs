//! A real PostgreSQL (Debian's `postgresql`: its `initdb` and `postgres`,
//! or the directory named by `$RG_TEST_POSTGRES_BIN`) started once per test
//! process: `initdb` in a temporary directory, `postgres` on a free loopback
//! port with trust authentication, fsync off. Each test gets a database of
//! its own ([`database`]).
//!
//! A test that needs a server of its own (its own files and settings, e.g.
//! TLS, or one it stops and starts again) starts an [`OwnServer`].
//!
//! PostgreSQL refuses to run as root: as root, the directory is given to
//! `nobody` and both programs run as `nobody` (`runuser`). The server is
//! stopped, and its directory removed, when the test process exits: it
//! runs under a shell that waits on a pipe from this process.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The directory holding `initdb`, `postgres` and `psql`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RG_TEST_POSTGRES_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|d| d.join("postgres").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/postgres \
             (apt-get install postgresql, or set RG_TEST_POSTGRES_BIN)"
        )
    })
}

/// The running server of this test process.
pub struct Server {
    pub port: u16,
    /// Keeps the shell waiting; the server stops when it closes.
    _stop: Mutex<ChildStdin>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` (as `nobody` when root).
fn command(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The server of this test process, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> Server {
    let (dir, data, root) = init();
    let port = super::free_port();
    let (_shell, stdin) = launch(&dir, &data, port, root, &[], true);
    Server {
        port,
        _stop: Mutex::new(stdin),
    }
}

/// A new data directory (`initdb`, trust authentication) in a temporary
/// directory, given to `nobody` when root: (directory, data directory, root).
fn init() -> (PathBuf, PathBuf, bool) {
    let bin = bin_dir();
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("rg-pg")
        .tempdir()
        .expect("tempdir")
        .keep();
    if root {
        let ok = Command::new("chown")
            .args(["-R", "nobody"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(ok.success(), "cannot give {} to nobody", dir.display());
    }
    let data = dir.join("data");
    let out = command(root, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, data, root)
}

/// Starts `postgres` on `data` and loopback `port` (with `-c` `settings`)
/// under a shell that stops it when its stdin closes (this process
/// exiting, however it exits) and then, if `remove`, removes `dir`; waits
/// until it accepts connections. Returns the shell and its stdin.
fn launch(
    dir: &Path,
    data: &Path,
    port: u16,
    root: bool,
    settings: &[String],
    remove: bool,
) -> (Child, ChildStdin) {
    let bin = bin_dir();
    let log = dir.join("postgres.log");
    let extra: String = settings.iter().map(|s| format!(" -c '{s}'")).collect();
    let script = format!(
        "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=200{extra} >>{log} 2>&1 & pid=$!; \
         read _ignored; kill -INT $pid; wait $pid; {cleanup}",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        log = log.display(),
        cleanup = if remove {
            format!("rm -rf {}", dir.display())
        } else {
            String::new()
        },
    );
    let mut child = command(root, Path::new("/bin/sh"))
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    let stdin = child.stdin.take().expect("stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "postgres exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "postgres not ready within 60s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, stdin)
}

impl Server {
    /// Runs one SQL statement as the superuser in database `db`.
    pub fn sql(&self, db: &str, statement: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(statement)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {statement:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

/// A new, empty database on this process's server; returns its name.
pub fn database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "rg_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    server().sql("postgres", &format!("CREATE DATABASE {name}"));
    name
}

/// A server of one test's own, beside the shared one: its own data
/// directory, files and settings (TLS, `pg_hba.conf`), and it can be
/// stopped and started again (same port, same data) to make the database
/// go away. Stopped, and its directory removed, when dropped.
pub struct OwnServer {
    pub port: u16,
    dir: PathBuf,
    data: PathBuf,
    root: bool,
    settings: Vec<String>,
    running: Option<(Child, ChildStdin)>,
}

impl OwnServer {
    /// `initdb`, then writes each of `files` (name, contents) into the data
    /// directory, owned by the server's user with mode 0600 (what
    /// PostgreSQL demands of a private key), and starts the server with
    /// `-c KEY=VALUE` for each of `settings`.
    pub fn start(files: &[(&str, &[u8])], settings: &[(&str, &str)]) -> OwnServer {
        use std::os::unix::fs::PermissionsExt;
        let (dir, data, root) = init();
        for (name, contents) in files {
            let path = data.join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if root {
                let ok = Command::new("chown").arg("nobody").arg(&path).status();
                assert!(ok.unwrap().success(), "chown {}", path.display());
            }
        }
        let mut server = OwnServer {
            port: super::free_port(),
            dir,
            data,
            root,
            settings: settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            running: None,
        };
        server.restart();
        server
    }

    /// Stops the server (a fast shutdown) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some((mut shell, stdin)) = self.running.take() {
            drop(stdin);
            shell.wait().expect("wait for postgres to stop");
        }
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "the server is running");
        self.running = Some(launch(
            &self.dir,
            &self.data,
            self.port,
            self.root,
            &self.settings,
            false,
        ));
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
