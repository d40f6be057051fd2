//! The command line: `run`, `check`, `status`, `report`, `demo`, `notify-test`,
//! `test-rules`, `backtest`, `export`, `import` (one function per
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
        /// Refresh in place every `--every` until interrupted.
        #[arg(long)]
        watch: bool,
        /// Interval of `--watch`.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
        /// PEM CA bundle to trust for an `https://` URL whose certificate
        /// no public CA signed (e.g. the daemon's own `tls_cert_file` CA).
        #[arg(long, env = "RG_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// The post-release report of a release (`GET /v1/releases/{id}/report`).
    Report {
        /// Release id.
        id: String,
        /// md, json or html.
        #[arg(long, default_value = "md")]
        format: String,
        /// API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// PEM CA bundle to trust for an `https://` URL whose certificate
        /// no public CA signed (e.g. the daemon's own `tls_cert_file` CA).
        #[arg(long, env = "RG_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Send a test message through one configured notifier; exit 0 when delivered.
    NotifyTest {
        /// The notifier's name (`[notifiers.NAME]`).
        notifier: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run rule-pack unit tests (see docs/rules.md); exit 0 when every case passes.
    TestRules {
        /// Test files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay a service's rule packs against the history in its sources as if a release had happened at `--release-at`.
    Backtest {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The service (`[[services]] name`); or `--all-services`.
        #[arg(long, required_unless_present = "all_services")]
        service: Option<String>,
        /// Every configured service.
        #[arg(long, conflicts_with = "service")]
        all_services: bool,
        /// The release instant(s): RFC3339 or unix seconds; repeat it (or separate with commas) for several releases.
        #[arg(long, required = true, value_delimiter = ',')]
        release_at: Vec<String>,
        /// No tick after this instant (default: the end of the watch window).
        #[arg(long)]
        until: Option<String>,
        /// text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Write the configured store's releases (ended and running) with their
    /// checks, timelines, outbox, rollbacks and audit as a dump (JSON lines).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The dump file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Load a dump (from `export`, any backend) into the configured store, in one transaction.
    Import {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The dump file (default: stdin).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Replace what the store holds (without it, a store that is not empty is refused).
        #[arg(long)]
        force: bool,
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
        Command::Status {
            url,
            id,
            json,
            watch,
            every,
            ca_file,
        } => match Api::new(&url, ca_file.as_deref()) {
            Ok(api) => {
                runtime().block_on(status(&api, id.as_deref(), json, watch.then_some(every)))
            }
            Err(e) => {
                eprintln!("release-guardian status: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Report {
            id,
            format,
            url,
            ca_file,
        } => match Api::new(&url, ca_file.as_deref()) {
            Ok(api) => runtime().block_on(report(&api, &id, &format)),
            Err(e) => {
                eprintln!("release-guardian report: {e}");
                ExitCode::FAILURE
            }
        },
        Command::NotifyTest { notifier, config } => {
            runtime().block_on(crate::notify_test::run(&config_path(config), &notifier))
        }
        Command::TestRules { files } => runtime().block_on(crate::ruletest::main(&files)),
        Command::Backtest {
            config,
            service,
            all_services,
            release_at,
            until,
            format,
        } => runtime().block_on(crate::backtest::main(crate::backtest::Args {
            config: config_path(config),
            service: if all_services { None } else { service },
            release_at,
            until,
            format,
        })),
        Command::Export { config, output } => runtime().block_on(crate::transfer::export(
            &config_path(config),
            output.as_deref(),
        )),
        Command::Import {
            config,
            input,
            force,
        } => runtime().block_on(crate::transfer::import(
            &config_path(config),
            input.as_deref(),
            force,
        )),
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
            if let crate::store::StoreSettings::Postgres(pg) = &settings.store {
                match runtime().block_on(crate::store::postgres::check_connection(pg)) {
                    Ok(found) => println!("store {}: OK ({found})", pg.url),
                    Err(e) => {
                        eprintln!("store {}: cannot connect: {e}", pg.url);
                        return ExitCode::FAILURE;
                    }
                }
            }
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

/// How long `status` and `report` wait for the API.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running daemon's API: its base URL and the client that reaches it
/// (trusting `--ca-file` besides the public CAs, for `https://`).
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let mut http = reqwest::Client::builder();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| format!("--ca-file {} holds no PEM certificate", path.display()))?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http: http
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
        })
    }
}

/// GETs `path` from the API (with `RG_TOKEN` as the bearer token, if set);
/// the body of a 2xx answer, else a message for the user.
async fn fetch(api: &Api, path: &str) -> Result<String, String> {
    let base = &api.base;
    let mut req = api.http.get(format!("{base}{path}"));
    if let Ok(token) = std::env::var("RG_TOKEN") {
        req = req.bearer_auth(token);
    }
    let resp = req.timeout(FETCH_TIMEOUT).send().await.map_err(|e| {
        let why = crate::transport::describe_transport_error(&e, FETCH_TIMEOUT);
        format!("cannot reach {base}: {why}")
    })?;
    let code = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("unreadable answer (HTTP {code}): {e}"))?;
    if !code.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| "unknown error".into());
        return Err(format!("HTTP {}: {msg}", code.as_u16()));
    }
    Ok(body)
}

async fn fetch_json(api: &Api, path: &str) -> Result<serde_json::Value, String> {
    let body = fetch(api, path).await?;
    serde_json::from_str(&body).map_err(|e| format!("unreadable answer: {e}"))
}

async fn status(
    url: &Api,
    id: Option<&str>,
    json: bool,
    watch: Option<std::time::Duration>,
) -> ExitCode {
    use std::io::IsTerminal;
    let colour = crate::report::terminal::use_colour(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    loop {
        let shown = match (id, json) {
            (Some(id), true) => fetch_json(url, &format!("/v1/releases/{id}"))
                .await
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
            (None, true) => fetch_json(url, "/v1/releases")
                .await
                .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
            (Some(id), false) => fetch_json(url, &format!("/v1/releases/{id}/report?format=json"))
                .await
                .map(|v| crate::report::terminal::release(&v, colour)),
            (None, false) => fetch_json(url, "/v1/releases")
                .await
                .map(|v| crate::report::terminal::table(&v, colour)),
        };
        let text = match shown {
            Ok(text) => text,
            Err(e) => {
                eprintln!("release-guardian status: {e}");
                return ExitCode::FAILURE;
            }
        };
        let Some(every) = watch else {
            print!("{text}");
            return ExitCode::SUCCESS;
        };
        // Home, clear the screen, draw; then wait for the timer.
        print!("\x1b[H\x1b[2J{text}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(every).await;
    }
}

async fn report(url: &Api, id: &str, format: &str) -> ExitCode {
    let path = format!("/v1/releases/{id}/report?format={format}");
    match fetch(url, &path).await {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("release-guardian report: {e}");
            ExitCode::FAILURE
        }
    }
}
