//! Probe cost, side by side: release-guardian's prober and Debian's
//! blackbox_exporter probing the same local target at the same concurrency,
//! in one run. Prints probes/s and CPU ms per probe for both, and the ratio.
//!
//!   cargo bench --bench probe                 # PROBES=20000 CONCURRENCY=16
//!
//! The target is this binary re-run as a small HTTP server (axum) in its own
//! process, so neither side's CPU includes the target's. Our side: a
//! `Prober` (pooled client, connections reused) driven by CONCURRENCY tasks
//! in this process, CPU read from /proc/self/stat. Blackbox's side: the
//! exporter in its own process, driven by CONCURRENCY clients requesting
//! `/probe?module=http_2xx&target=...` (each answer checked for
//! `probe_success 1`), CPU read from /proc/PID/stat (the driver's CPU is not
//! counted against it). The exporter is installed with apt-get when missing
//! (as root), else the bench fails.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-target") {
        serve_target(args[i + 1].parse().unwrap());
        return;
    }
    let probes: usize = env("PROBES", 20_000);
    let concurrency: usize = env("CONCURRENCY", 16);
    ensure_blackbox();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let target_port = free_port();
    let mut target = Guard(
        Command::new(std::env::current_exe().unwrap())
            .args(["--serve-target", &target_port.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{target_port}/health");
    rt.block_on(wait_ok(&url));

    // Ours.
    let cfg = release_guardian::sources::probe::ProbeConfig {
        name: "bench".into(),
        url: url.clone(),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let prober = Arc::new(release_guardian::sources::probe::Prober::new(
        release_guardian::sources::probe::probe_client(),
    ));
    // Warm-up (connections, allocator).
    rt.block_on(drive(concurrency, 500, {
        let (p, c) = (prober.clone(), cfg.clone());
        move || {
            let (p, c) = (p.clone(), c.clone());
            async move { p.probe(&c).await.ok }
        }
    }));
    let cpu0 = cpu_seconds(std::process::id());
    let t0 = Instant::now();
    let failed = rt.block_on(drive(concurrency, probes, {
        let (p, c) = (prober.clone(), cfg.clone());
        move || {
            let (p, c) = (p.clone(), c.clone());
            async move { p.probe(&c).await.ok }
        }
    }));
    let ours = (
        t0.elapsed().as_secs_f64(),
        cpu_seconds(std::process::id()) - cpu0,
        failed,
    );

    // blackbox_exporter.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      method: GET\n      preferred_ip_protocol: ip4\n",
    )
    .unwrap();
    let bb_port = free_port();
    let bb = Guard(
        Command::new(BLACKBOX)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bb_pid = bb.0.id();
    rt.block_on(wait_ok(&format!("http://127.0.0.1:{bb_port}/metrics")));
    let probe_url = format!("http://127.0.0.1:{bb_port}/probe?module=http_2xx&target={url}");
    let http = reqwest::Client::new();
    let bb_probe = {
        let (h, u) = (http.clone(), probe_url.clone());
        move || {
            let (h, u) = (h.clone(), u.clone());
            async move {
                match h.get(&u).send().await {
                    Ok(r) => r.text().await.is_ok_and(|t| t.contains("probe_success 1")),
                    Err(_) => false,
                }
            }
        }
    };
    rt.block_on(drive(concurrency, 500, bb_probe.clone()));
    let cpu0 = cpu_seconds(bb_pid);
    let t0 = Instant::now();
    let failed = rt.block_on(drive(concurrency, probes, bb_probe));
    let theirs = (
        t0.elapsed().as_secs_f64(),
        cpu_seconds(bb_pid) - cpu0,
        failed,
    );
    drop(bb);
    target.0.kill().ok();

    let row = |name: &str, (wall, cpu, failed): (f64, f64, usize)| {
        println!(
            "| {name:<28} | {:>9.0} | {:>14.3} | {:>6} |",
            probes as f64 / wall,
            cpu * 1000.0 / probes as f64,
            failed
        );
    };
    println!(
        "\nprobe cost: {probes} probes of {url}, concurrency {concurrency}, {} CPUs\n",
        num_cpus()
    );
    println!("| prober                       | probes/s  | CPU ms / probe | failed |");
    println!("|------------------------------|-----------|----------------|--------|");
    row("release-guardian", ours);
    row("blackbox_exporter", theirs);
    let ratio = ours.1 / theirs.1;
    println!(
        "\nCPU per probe, release-guardian / blackbox_exporter: {ratio:.3} (target: at most 0.5); throughput ratio {:.2}x",
        theirs.0 / ours.0
    );
}

/// Runs `probes` calls of `probe` over `concurrency` tasks; the failures.
async fn drive<F, Fut>(concurrency: usize, probes: usize, probe: F) -> usize
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, failed, probe) = (next.clone(), failed.clone(), probe.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < probes {
                    if !probe().await {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    failed.load(Ordering::Relaxed)
}

fn serve_target(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

async fn wait_ok(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer within 30s");
}

fn ensure_blackbox() {
    if std::path::Path::new(BLACKBOX).exists() {
        return;
    }
    eprintln!("{BLACKBOX} is missing: installing Debian's prometheus-blackbox-exporter");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "prometheus-blackbox-exporter"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && std::path::Path::new(BLACKBOX).exists(),
        "cannot install prometheus-blackbox-exporter (run as root, or install it)"
    );
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clk_tck()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
