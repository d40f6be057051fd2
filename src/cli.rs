//! The command line: `run`, `check`, `status`, `demo`, `notify-test` (one function per
//! command below, dispatched from [`main`]), and the hidden helpers
//! `demo-rollback` and `hook-supervisor`.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Default API address for `status`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9797";

#[derive(Parser, Debug)]
#[command(
    name = "release-guardian",
    version,
    about = "Keeps watch over a service for the hours after a release."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file (default: ./guardian.toml, else /etc/release-guardian/guardian.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the config and its rule packs; print every error as FILE:LINE:COL: message.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Self-contained end-to-end demo: a simulated service, a regression, a page and a rollback.
    Demo,
    /// Show releases (or one release) from a running daemon.
    Status {
        /// API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// Release id; without it, list recent releases.
        id: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message through one configured notifier; exit 0 when delivered.
    NotifyTest {
        /// The notifier's name (`[notifiers.NAME]`).
        notifier: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The demo's rollback hook (restores the simulated service).
    #[command(hide = true)]
    DemoRollback { url: String },
    /// Runs a rollback hook for the daemon and records its outcome in
    /// `--status-file` (see `actions::hook_supervisor`).
    #[command(hide = true)]
    HookSupervisor {
        #[arg(long)]
        status_file: PathBuf,
        #[arg(long)]
        timeout_ms: u64,
        /// The hook: program and arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            crate::telemetry::init_tracing();
            // This binary has the `hook-supervisor` subcommand.
            crate::actions::hook_supervisor::enable();
            let path = config_path(config);
            match runtime().block_on(crate::app::run(path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("release-guardian: {e:#}");
                    // 64 (EX_USAGE) for configuration errors, like linkerd.
                    if e.is::<crate::app::InvalidConfig>() {
                        ExitCode::from(64)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
        Command::Check { config } => check(&config_path(config)),
        Command::Demo => crate::demo::main(),
        Command::Status { url, id, json } => runtime().block_on(status(&url, id.as_deref(), json)),
        Command::NotifyTest { notifier, config } => {
            runtime().block_on(crate::notify_test::run(&config_path(config), &notifier))
        }
        Command::DemoRollback { url } => runtime().block_on(crate::demo::rollback_hook(&url)),
        Command::HookSupervisor {
            status_file,
            timeout_ms,
            command,
        } => crate::actions::hook_supervisor::main(
            &status_file,
            std::time::Duration::from_millis(timeout_ms),
            &command,
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let local = PathBuf::from("guardian.toml");
        if local.exists() {
            local
        } else {
            PathBuf::from("/etc/release-guardian/guardian.toml")
        }
    })
}

fn check(path: &Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(settings) => {
            for w in &settings.warnings {
                eprintln!("warning: {w}");
            }
            let checks: usize = settings.services.iter().map(|s| s.checks.len()).sum();
            println!(
                "{}: OK ({} services, {} checks, {} notifiers)",
                path.display(),
                settings.services.len(),
                checks,
                settings.notifiers.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.errors {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errors.errors.len());
            ExitCode::FAILURE
        }
    }
}

async fn status(url: &str, id: Option<&str>, json: bool) -> ExitCode {
    let base = url.trim_end_matches('/');
    let target = match id {
        Some(id) => format!("{base}/v1/releases/{id}"),
        None => format!("{base}/v1/releases"),
    };
    let mut req = reqwest::Client::new().get(&target);
    if let Ok(token) = std::env::var("RG_TOKEN") {
        req = req.bearer_auth(token);
    }
    let resp = match req.timeout(std::time::Duration::from_secs(10)).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "release-guardian status: cannot reach {base}: {}",
                e.without_url()
            );
            return ExitCode::FAILURE;
        }
    };
    let code = resp.status();
    let body: serde_json::Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("release-guardian status: unreadable answer (HTTP {code}): {e}");
            return ExitCode::FAILURE;
        }
    };
    if !code.is_success() {
        let msg = body
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown error");
        eprintln!("release-guardian status: HTTP {}: {msg}", code.as_u16());
        return ExitCode::FAILURE;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match id {
        Some(_) => print!("{}", crate::report::text::release(&body)),
        None => print!("{}", crate::report::text::release_list(&body)),
    }
    ExitCode::SUCCESS
}
