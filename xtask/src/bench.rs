//! `cargo xtask bench`: what tracing costs the traced service, how complete
//! it is at saturation, what the kernel programs cost per run, and what the
//! user side sustains. Writes BENCHMARKS.md with every figure's command.
//!
//! Runs of the configurations are interleaved round by round, so drifting
//! machine speed hits all of them alike.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use tracer_common::programs::PROGRAMS;

use crate::{tracer_binary, workspace_root};

mod attach;
mod fixed_rate;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    /// The tracer with the socket path its kernel picks (`auto`).
    Tracer,
    /// The tracer with `--socket-hooks fd-table`, the path of kernels
    /// before 6.3, forced on this one.
    TracerFdTable,
    /// The tracer exporting over OTLP/gRPC to a local receiver as its only
    /// sink (`--output none`).
    TracerOtlp,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Tracer => "tracer",
            Mode::TracerFdTable => "tracer, --socket-hooks fd-table",
            Mode::TracerOtlp => "tracer, OTLP/gRPC export only",
            Mode::Bpftrace => "bpftrace floor",
        }
    }

    fn socket_hooks(self) -> &'static str {
        match self {
            Mode::TracerFdTable => "fd-table",
            _ => "auto",
        }
    }
}

const MODES: [Mode; 3] = [Mode::Untraced, Mode::Tracer, Mode::Bpftrace];
/// nginx also runs with the file-table socket path, to show its cost.
const NGINX_MODES: [Mode; 4] = [
    Mode::Untraced,
    Mode::Tracer,
    Mode::Bpftrace,
    Mode::TracerFdTable,
];

/// The syscalls the tracer hooks, in the order of its program table, for
/// the bpftrace floor: the entry and exit tracepoints of each with a pid
/// filter and a per-CPU count, the least any tracepoint-based tracer pays.
fn hooked_syscalls() -> Vec<&'static str> {
    let mut syscalls: Vec<&'static str> = Vec::new();
    for syscall in PROGRAMS.iter().filter_map(|p| p.hook.syscall()) {
        if !syscalls.contains(&syscall) {
            syscalls.push(syscall);
        }
    }
    syscalls
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port}")
}

/// A service in its own process group, killed with it on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        thread::sleep(Duration::from_millis(200));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn spawn_group(cmd: &mut Command) -> Result<Group> {
    use std::os::unix::process::CommandExt as _;
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok(Group(child))
}

/// Whatever watches the service during one run.
enum Observer {
    None,
    Tracer {
        child: Child,
        stderr: thread::JoinHandle<Vec<String>>,
        span_name: String,
        rss_peak_kib: Arc<AtomicU64>,
        /// The OTLP receiver of [`Mode::TracerOtlp`], stopped with it.
        receiver: Option<Group>,
    },
    Bpftrace(Child),
}

impl Observer {
    /// The tracer's pid, when a tracer observes.
    fn tracer_pid(&self) -> Option<u32> {
        match self {
            Observer::Tracer { child, .. } => Some(child.id()),
            Observer::None | Observer::Bpftrace(_) => None,
        }
    }
}

/// CPU time `pid` has used so far, all threads, user and system (ns, from
/// schedstat: exact, unlike the clock ticks of /proc/PID/stat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The OTLP/gRPC receiver example, listening on a free port.
fn start_otlp_receiver() -> Result<(Group, u16)> {
    let port = free_port()?;
    let binary = tracer_binary()
        .with_file_name("examples")
        .join("otlp_receiver");
    let receiver = spawn_group(Command::new(binary).arg(port.to_string()))?;
    wait_port(port)?;
    Ok((receiver, port))
}

fn start_observer(mode: Mode, pids: &[u32], span_name: &str) -> Result<Observer> {
    match mode {
        Mode::Untraced => Ok(Observer::None),
        Mode::Tracer | Mode::TracerFdTable | Mode::TracerOtlp => {
            let pid_list = pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // Spans are encoded as JSON lines like a user's stdout sink would,
            // but not read back here: a reader would compete for the same cores.
            // They are counted from the tracer's exit summary instead.
            let mut tracer = Command::new(tracer_binary());
            tracer
                .args(["--pid", &pid_list])
                .args(["--summary-format", "json"])
                .args(["--socket-hooks", mode.socket_hooks()]);
            let receiver = if mode == Mode::TracerOtlp {
                let (receiver, port) = start_otlp_receiver()?;
                tracer.args(["--output", "none", "--otlp-protocol", "grpc"]);
                tracer.arg("--otlp-endpoint");
                tracer.arg(format!("http://127.0.0.1:{port}"));
                Some(receiver)
            } else {
                tracer.args(["--output", "json"]);
                None
            };
            let mut child = tracer
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting the tracer")?;
            let stderr = child
                .stderr
                .take()
                .ok_or_else(|| anyhow!("no tracer stderr"))?;
            let mut lines = BufReader::new(stderr).lines();
            loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("attached") => break,
                    Some(Ok(_)) => {}
                    _ => bail!("tracer exited before attaching"),
                }
            }
            let stderr = thread::spawn(move || lines.map_while(Result::ok).collect());
            let rss_peak_kib = Arc::new(AtomicU64::new(0));
            let peak = rss_peak_kib.clone();
            let tracer_pid = child.id();
            thread::spawn(move || {
                while let Some(rss) = rss_kib(tracer_pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(200));
                }
            });
            Ok(Observer::Tracer {
                child,
                stderr,
                span_name: span_name.to_string(),
                rss_peak_kib,
                receiver,
            })
        }
        Mode::Bpftrace => {
            let filter = pids
                .iter()
                .map(|p| format!("pid == {p}"))
                .collect::<Vec<_>>()
                .join(" || ");
            let probes = hooked_syscalls()
                .into_iter()
                .flat_map(|s| {
                    [
                        format!("tracepoint:syscalls:sys_enter_{s}"),
                        format!("tracepoint:syscalls:sys_exit_{s}"),
                    ]
                })
                .collect::<Vec<_>>()
                .join(",\n");
            let script = format!("{probes}\n/{filter}/ {{ @[cpu] = count(); }}");
            let child = Command::new("bpftrace")
                .args(["-e", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting bpftrace")?;
            // bpftrace prints "Attaching N probes..." once attached.
            let mut child = child;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("no bpftrace stdout"))?;
            let mut lines = BufReader::new(stdout).lines();
            match lines.next() {
                Some(Ok(line)) if line.contains("Attaching") => {}
                other => bail!("bpftrace did not attach: {other:?}"),
            }
            thread::sleep(Duration::from_millis(500));
            thread::spawn(move || for _ in lines {});
            Ok(Observer::Bpftrace(child))
        }
    }
}

/// Stops the observer; for the tracer returns (matching spans, summary line, peak RSS KiB).
fn stop_observer(observer: Observer) -> Result<Option<TracerRun>> {
    match observer {
        Observer::None => Ok(None),
        Observer::Bpftrace(mut child) => {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
            Ok(None)
        }
        Observer::Tracer {
            mut child,
            stderr,
            span_name,
            rss_peak_kib,
            receiver,
        } => {
            thread::sleep(Duration::from_millis(500));
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            child.wait().context("waiting for the tracer")?;
            let lines = stderr
                .join()
                .map_err(|_| anyhow!("tracer stderr reader panicked"))?;
            let summary = exit_summary(&lines)
                .ok_or_else(|| anyhow!("no exit summary from the tracer: {lines:?}"))?;
            let spans = server_spans_named(&summary, &span_name).ok_or_else(|| {
                anyhow!("no `server {span_name}` row in the tracer's exit summary: {summary}")
            })?;
            let events_lost = summary["events_lost"].as_u64().ok_or_else(|| {
                anyhow!("no `events_lost` in the tracer's exit summary: {summary}")
            })?;
            drop(receiver);
            Ok(Some(TracerRun {
                spans,
                events_lost,
                rss_peak_kib: rss_peak_kib.load(Ordering::Relaxed),
            }))
        }
    }
}

/// The tracer's exit summary (`--summary-format json`): the last stderr
/// line that is a JSON object with the `tracer_summary` key.
fn exit_summary(lines: &[String]) -> Option<Value> {
    lines.iter().rev().find_map(|l| {
        let value: Value = serde_json::from_str(l).ok()?;
        value.get("tracer_summary").is_some().then_some(value)
    })
}

/// The count of the exit summary's latency-table rows for server spans
/// named `name` (`{"kind":"server","operation":"GET /hello","count":155380,...}`),
/// less any the sinks dropped (`spans_dropped`).
fn server_spans_named(summary: &Value, name: &str) -> Option<u64> {
    let rows: Vec<&Value> = summary["latency"]
        .as_array()?
        .iter()
        .filter(|r| r["kind"] == "server" && r["operation"] == name)
        .collect();
    if rows.is_empty() {
        return None;
    }
    let spans = rows
        .iter()
        .map(|r| r["count"].as_u64())
        .sum::<Option<u64>>()?;
    let dropped = summary["spans_dropped"].as_u64().unwrap_or(0);
    Some(spans.saturating_sub(dropped))
}

/// What one traced run reported.
struct TracerRun {
    /// Server spans of the benchmarked name, less any the sinks dropped.
    spans: u64,
    /// Kernel-side losses of every kind (ring buffer full, tables full, ...).
    events_lost: u64,
    rss_peak_kib: u64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size: unlike RSS it counts the ring buffer's pages
/// once, though the kernel maps them twice (so records that wrap around the
/// end read as one contiguous block).
fn pss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// A `Name:  1234 kB` field of a /proc file.
fn kib_field(path: &str, name: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output();
    let mut pids = vec![pid];
    if let Ok(out) = out {
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
    }
    pids
}

struct WrkResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_latency(value: &str) -> f64 {
    let value = value.trim();
    let (number, factor) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

fn run_wrk(url: &str, seconds: u32) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .ok_or_else(|| anyhow!("no request count in wrk output: {text}"))?;
    let rps = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Requests/sec:")
                .and_then(|n| n.trim().parse().ok())
        })
        .ok_or_else(|| anyhow!("no Requests/sec in wrk output: {text}"))?;
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(parse_latency))
            .unwrap_or(f64::NAN)
    };
    Ok(WrkResult {
        requests,
        rps,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
    })
}

fn start_nginx(scratch: &Path) -> Result<(Group, u16)> {
    let port = free_port()?;
    let root = scratch.join("nginx");
    fs::create_dir_all(&root)?;
    let conf = format!(
        "daemon off; master_process on; worker_processes 1; worker_rlimit_nofile 65536;\n\
         pid {r}/nginx.pid; error_log {r}/error.log warn;\n\
         events {{ worker_connections 30000; }}\n\
         http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;\n\
           client_body_temp_path {r}/body; proxy_temp_path {r}/proxy; fastcgi_temp_path {r}/fcgi;\n\
           uwsgi_temp_path {r}/uwsgi; scgi_temp_path {r}/scgi;\n\
           server {{ listen 127.0.0.1:{port} backlog=4096; location = /hello {{ default_type text/plain; return 200 \"hello\\n\"; }} }} }}\n",
        r = root.display()
    );
    fs::write(root.join("nginx.conf"), conf)?;
    let group = spawn_group(
        Command::new("nginx")
            .arg("-p")
            .arg(&root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(root.join("nginx.conf")),
    )?;
    wait_port(port)?;
    Ok((group, port))
}

struct NginxRow {
    mode: Mode,
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    requests: u64,
    spans: u64,
    events_lost: u64,
    rss_kib: u64,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn bench_nginx(scratch: &Path, seconds: u32, rounds: u32, report: &mut String) -> Result<()> {
    let (nginx, port) = start_nginx(scratch)?;
    let pids = children_of(nginx.0.id());
    let url = format!("http://127.0.0.1:{port}/hello");
    run_wrk(&url, 1)?; // warm-up
    let mut rows: Vec<NginxRow> = NGINX_MODES
        .iter()
        .map(|&mode| NginxRow {
            mode,
            rps: vec![],
            p50: vec![],
            p99: vec![],
            requests: 0,
            spans: 0,
            events_lost: 0,
            rss_kib: 0,
        })
        .collect();
    for round in 0..rounds {
        for row in &mut rows {
            let observer = start_observer(row.mode, &pids, "GET /hello")?;
            let result = run_wrk(&url, seconds)?;
            if let Some(run) = stop_observer(observer)? {
                row.spans += run.spans;
                row.events_lost += run.events_lost;
                row.rss_kib = row.rss_kib.max(run.rss_peak_kib);
            }
            eprintln!(
                "bench: nginx round {} {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                round + 1,
                row.mode.name(),
                result.rps,
                result.p50_ms,
                result.p99_ms
            );
            row.rps.push(result.rps);
            row.p50.push(result.p50_ms);
            row.p99.push(result.p99_ms);
            row.requests += result.requests;
        }
    }
    let base = mean(&rows[0].rps);
    let floor = mean(&rows[2].rps);
    let _ = writeln!(report, "## nginx under wrk (saturation)\n");
    let _ = writeln!(
        report,
        "`wrk -t1 -c16 -d{seconds}s --latency http://127.0.0.1:PORT/hello` against nginx (1 worker, 6-byte body), \
         {rounds} interleaved rounds per configuration; the tracer ran as `tracer --pid MASTER,WORKER --output json \
         --summary-format json` with stdout to /dev/null (every span still encoded and written; spans counted \
         from the JSON exit summary's latency table, less any the sinks dropped); the floor is bpftrace counting the same {n} syscall tracepoint pairs with a pid filter. \
         The last row forces the socket path of kernels before 6.3 (`--socket-hooks fd-table`) on this kernel.\n",
        n = hooked_syscalls().len()
    );
    let _ = writeln!(
        report,
        "| configuration | requests/s (mean) | vs untraced | p50 ms | p99 ms |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.1}% | {:.3} | {:.3} |",
            row.mode.name(),
            mean(&row.rps),
            100.0 * mean(&row.rps) / base,
            mean(&row.p50),
            mean(&row.p99)
        );
    }
    let tracer = &rows[1];
    let tracer_cost = base - mean(&tracer.rps);
    let floor_cost = base - floor;
    let _ = writeln!(
        report,
        "\nThroughput lost: tracer {:.0} req/s, bpftrace floor {:.0} req/s; tracer/floor = {:.2}x.\n",
        tracer_cost,
        floor_cost,
        if floor_cost > 0.0 { tracer_cost / floor_cost } else { f64::NAN }
    );
    let completeness = 100.0 * tracer.spans as f64 / tracer.requests.max(1) as f64;
    let _ = writeln!(
        report,
        "Completeness at saturation: {} `GET /hello` server spans for {} requests wrk completed ({completeness:.3}%; \
         wrk does not count requests still in flight when it stops, so a few more spans than requests is expected); \
         events lost in the kernel over all traced rounds: {}. Tracer peak RSS during these runs: {:.1} MiB.\n",
        tracer.spans,
        tracer.requests,
        tracer.events_lost,
        tracer.rss_kib as f64 / 1024.0
    );
    let fd_table = &rows[3];
    let _ = writeln!(
        report,
        "With `--socket-hooks fd-table`: {} `GET /hello` server spans for {} requests ({:.3}%), {} events lost.\n",
        fd_table.spans,
        fd_table.requests,
        100.0 * fd_table.spans as f64 / fd_table.requests.max(1) as f64,
        fd_table.events_lost
    );
    drop(nginx);
    Ok(())
}

/// Requests per `redis-benchmark` test (SET, then GET).
const REDIS_REQUESTS: u64 = 200_000;

fn redis_rps(port: u16, pipeline: u32) -> Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            &REDIS_REQUESTS.to_string(),
            "-c",
            "16",
            "-P",
            &pipeline.to_string(),
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rps = |cmd: &str| {
        text.lines()
            .rev()
            .filter(|l| l.starts_with(cmd))
            .find_map(|l| {
                l.split(':')
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    };
    Ok((rps("SET"), rps("GET")))
}

fn bench_redis(scratch: &Path, rounds: u32, report: &mut String) -> Result<()> {
    let port = free_port()?;
    let dir = scratch.join("redis");
    fs::create_dir_all(&dir)?;
    let redis = spawn_group(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir),
    )?;
    wait_port(port)?;
    let pids = vec![redis.0.id()];
    let _ = writeln!(report, "## redis-server under redis-benchmark\n");
    let _ = writeln!(
        report,
        "`redis-benchmark -n {REDIS_REQUESTS} -c 16 -P {{1,16}} -t set,get -q`, {rounds} interleaved rounds; requests/s \
         (mean). Tracer CPU per command: schedstat run time of every tracer thread over the `-P 16` runs, divided by \
         the commands they sent.\n"
    );
    let _ = writeln!(
        report,
        "| configuration | SET -P1 | GET -P1 | SET -P16 | GET -P16 | tracer CPU µs/command (-P16) |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    for &mode in &MODES {
        let mut cells = [0.0f64; 4];
        let mut tracer_cpu_ns = 0;
        for _ in 0..rounds {
            let observer = start_observer(mode, &pids, "GET")?;
            let (set1, get1) = redis_rps(port, 1)?;
            let tracer = observer.tracer_pid();
            let before = tracer.map_or(0, cpu_ns);
            let (set16, get16) = redis_rps(port, 16)?;
            tracer_cpu_ns += tracer.map_or(0, |pid| cpu_ns(pid).saturating_sub(before));
            stop_observer(observer)?;
            for (cell, value) in cells.iter_mut().zip([set1, get1, set16, get16]) {
                *cell += value / f64::from(rounds);
            }
        }
        eprintln!("bench: redis {}: {cells:?}", mode.name());
        let per_command = if tracer_cpu_ns > 0 {
            let commands = 2 * REDIS_REQUESTS * u64::from(rounds);
            format!("{:.2}", tracer_cpu_ns as f64 / 1000.0 / commands as f64)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {per_command} |",
            mode.name(),
            cells[0],
            cells[1],
            cells[2],
            cells[3]
        );
    }
    let _ = writeln!(report);
    drop(redis);
    Ok(())
}

/// Run count and total run time of one of our programs (`bpf_stats`).
struct ProgramCost {
    runs: u64,
    time_ns: u64,
}

/// Average run time of our programs while the tracer traces nginx under wrk,
/// once per socket path.
fn bench_kernel_cost(scratch: &Path, seconds: u32, report: &mut String) -> Result<()> {
    let (nginx, port) = start_nginx(scratch)?;
    let pids = children_of(nginx.0.id());
    let url = format!("http://127.0.0.1:{port}/hello");
    let _ = Command::new("sysctl")
        .args(["-q", "kernel.bpf_stats_enabled=1"])
        .status();
    let mut per_path = Vec::new();
    for mode in [Mode::Tracer, Mode::TracerFdTable] {
        let observer = start_observer(mode, &pids, "GET /hello")?;
        let wrk = run_wrk(&url, seconds)?;
        let out = Command::new("bpftool")
            .args(["prog", "show", "--json"])
            .output()
            .context("bpftool")?;
        stop_observer(observer)?;
        per_path.push((
            mode,
            wrk.requests,
            program_costs(&String::from_utf8_lossy(&out.stdout)),
        ));
    }
    let _ = Command::new("sysctl")
        .args(["-q", "kernel.bpf_stats_enabled=0"])
        .status();
    let _ = writeln!(report, "## Kernel cost per program run\n");
    let _ = writeln!(
        report,
        "`sysctl kernel.bpf_stats_enabled=1`, then `bpftool prog show --json` after {seconds} s of wrk against traced nginx, \
         once with the socket path this kernel picks (`tracepoint`: the `sock_*_length` tp_btf hooks mark socket \
         syscalls) and once with `--socket-hooks fd-table` (kernels before 6.3: each payload syscall's fd resolved \
         through the task's file table at its exit, no sock hooks). Average = run_time_ns / run_cnt; programs that did \
         not run are left out.\n"
    );
    let _ = writeln!(
        report,
        "| program | runs (tracepoint) | avg ns/run (tracepoint) | runs (fd-table) | avg ns/run (fd-table) |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    // In the order of the program table: by hook family.
    let names = PROGRAMS.iter().map(|p| p.name).filter(|name| {
        per_path
            .iter()
            .any(|(_, _, costs)| costs.contains_key(*name))
    });
    let cell = |costs: &std::collections::BTreeMap<String, ProgramCost>, name: &str| {
        costs.get(name).map_or_else(
            || ("–".to_owned(), "–".to_owned()),
            |c| (c.runs.to_string(), (c.time_ns / c.runs).to_string()),
        )
    };
    for name in names {
        let (runs_tp, ns_tp) = cell(&per_path[0].2, name);
        let (runs_fd, ns_fd) = cell(&per_path[1].2, name);
        let _ = writeln!(
            report,
            "| {name} | {runs_tp} | {ns_tp} | {runs_fd} | {ns_fd} |"
        );
    }
    let _ = writeln!(report);
    for (mode, requests, costs) in &per_path {
        let total: u64 = costs.values().map(|c| c.time_ns).sum();
        let _ = writeln!(
            report,
            "- {}: {:.2} µs of our programs per HTTP request ({} requests).",
            mode.name(),
            total as f64 / 1000.0 / (*requests).max(1) as f64,
            requests
        );
    }
    let _ = writeln!(report);
    drop(nginx);
    Ok(())
}

/// Our programs (those of the table) that ran, from `bpftool prog show --json`.
fn program_costs(json: &str) -> std::collections::BTreeMap<String, ProgramCost> {
    let mut costs = std::collections::BTreeMap::new();
    // Minimal JSON scan: objects with "name", "run_time_ns", "run_cnt".
    for object in json.split('{').skip(1) {
        let field = |key: &str| {
            object.split(&format!("\"{key}\":")).nth(1).map(|rest| {
                rest.trim_start_matches('"')
                    .split(['"', ',', '}'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
        };
        let (Some(name), Some(time), Some(count)) =
            (field("name"), field("run_time_ns"), field("run_cnt"))
        else {
            continue;
        };
        if !PROGRAMS.iter().any(|p| p.name == name) {
            continue;
        }
        let (Ok(time_ns), Ok(runs)) = (time.parse::<u64>(), count.parse::<u64>()) else {
            continue;
        };
        if runs > 0 {
            costs.insert(name, ProgramCost { runs, time_ns });
        }
    }
    costs
}

/// The OTLP receiver of [`Mode::TracerOtlp`], next to the tracer binary.
fn build_otlp_receiver() -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "--release", "-q", "-p", "tracer-user"])
        .args(["--example", "otlp_receiver"])
        .status()
        .context("building the otlp_receiver example")?;
    if !status.success() {
        bail!("building the otlp_receiver example failed");
    }
    Ok(())
}

fn bench_pipeline(report: &mut String) -> Result<()> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "tracer-user",
            "--example",
            "pipeline_throughput",
        ])
        .output()
        .context("running the pipeline_throughput example")?;
    if !out.status.success() {
        bail!(
            "pipeline_throughput failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = writeln!(report, "## User-side pipeline capacity (one core)\n");
    let _ = writeln!(
        report,
        "`cargo run --release -p tracer-user --example pipeline_throughput`: recorded HTTP/1.1 keep-alive events \
         (ring-buffer records as the kernel writes them) replayed through decode → connections → HTTP parser → spans, \
         without sinks.\n"
    );
    let _ = writeln!(report, "{}", String::from_utf8_lossy(&out.stdout).trim());
    let _ = writeln!(report);
    Ok(())
}

/// Tracer RSS with 10k traced connections open at once.
fn bench_rss_10k(scratch: &Path, report: &mut String) -> Result<()> {
    let (nginx, port) = start_nginx(scratch)?;
    let pids = children_of(nginx.0.id());
    let observer = start_observer(Mode::Tracer, &pids, "GET /hello")?;
    let tracer_pid = match &observer {
        Observer::Tracer { child, .. } => child.id(),
        _ => bail!("no tracer"),
    };
    let script = format!(
        r#"
import resource, socket, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
conns = []
for i in range(10000):
    s = socket.create_connection(("127.0.0.1", {port}))
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(s)
for s in conns:
    s.recv(4096)
print("open", flush=True)
time.sleep(4)
"#
    );
    let mut client = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the 10k-connection client")?;
    let stdout = client
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no client stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let opened = matches!(lines.next(), Some(Ok(ref l)) if l == "open");
    thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(tracer_pid).unwrap_or(0);
    let pss = pss_kib(tracer_pid).unwrap_or(0);
    let _ = client.wait();
    let spans = stop_observer(observer)?.map_or(0, |run| run.spans);
    let _ = writeln!(report, "## Memory at 10k concurrent traced connections\n");
    let _ = writeln!(
        report,
        "A Python client opens 10,000 keep-alive connections to traced nginx, sends one request on each and holds \
         them open; tracer RSS (VmRSS) read while all are open: **{:.1} MiB**, PSS {:.1} MiB ({} spans for the \
         10,000 requests{}). RSS counts the ring buffer (`--ring-buffer-mib`, default 8) twice: the kernel maps its \
         pages twice in a row so that a record wrapping around the end reads as one block; PSS counts them once.\n",
        rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        spans,
        if opened { "" } else { "; the client failed to open all connections" }
    );
    drop(nginx);
    Ok(())
}

fn machine_facts() -> String {
    let cmd = |c: &str, args: &[&str]| {
        Command::new(c)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "Machine: {} cores ({cpu}), {} memory, kernel {}; nginx {}, {}, redis {}.\n",
        cmd("nproc", &[]),
        cmd("sh", &["-c", "free -h | awk '/Mem:/ {print $2}'"]),
        cmd("uname", &["-r"]),
        cmd("sh", &["-c", "nginx -v 2>&1 | cut -d/ -f2"]),
        cmd(
            "sh",
            &["-c", "wrk --version 2>&1 | head -1 | cut -d' ' -f1-2"]
        ),
        cmd("sh", &["-c", "redis-server --version | cut -d' ' -f3"]),
    )
}

pub fn run(seconds: u32, rounds: u32, only: &[String]) -> Result<()> {
    const SECTIONS: [&str; 7] = [
        "nginx",
        "fixed-rate",
        "redis",
        "attach",
        "kernel",
        "pipeline",
        "rss",
    ];
    if let Some(unknown) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        bail!(
            "--only {unknown}: not a section (one of {})",
            SECTIONS.join(", ")
        );
    }
    let wanted = |section: &str| only.is_empty() || only.iter().any(|s| s == section);
    let scratch =
        Scratch(std::env::temp_dir().join(format!("tracer-bench-{}", std::process::id())));
    fs::create_dir_all(&scratch.0)?;
    let mut report = String::new();
    let _ = writeln!(report, "# Benchmarks\n");
    let _ = writeln!(
        report,
        "Produced by `cargo xtask bench --seconds {seconds} --rounds {rounds}` (as root); every figure below comes from \
         that one run. Load generators and servers share the machine's cores with the tracer, so compare rows of one \
         run, never figures from different days.\n"
    );
    report.push_str(&machine_facts());
    report.push('\n');
    build_otlp_receiver()?;
    if wanted("nginx") {
        bench_nginx(&scratch.0, seconds, rounds, &mut report)?;
    }
    if wanted("fixed-rate") {
        fixed_rate::bench(&scratch.0, seconds.max(5), rounds, &mut report)?;
    }
    if wanted("redis") {
        bench_redis(&scratch.0, rounds, &mut report)?;
    }
    if wanted("attach") {
        attach::bench(&scratch.0, &mut report)?;
    }
    if wanted("kernel") {
        bench_kernel_cost(&scratch.0, seconds, &mut report)?;
    }
    if wanted("pipeline") {
        bench_pipeline(&mut report)?;
    }
    if wanted("rss") {
        bench_rss_10k(&scratch.0, &mut report)?;
    }
    if !only.is_empty() {
        println!("{report}");
        return Ok(());
    }
    let path = workspace_root().join("BENCHMARKS.md");
    let previous = fs::read_to_string(&path).unwrap_or_default();
    // Hand-written analysis below the marker survives a re-run.
    let marker = "<!-- analysis -->";
    if let Some(at) = previous.find(marker) {
        report.push('\n');
        report.push_str(&previous[at..]);
    }
    fs::write(&path, &report).context("writing BENCHMARKS.md")?;
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_come_from_the_json_exit_summary() {
        let lines: Vec<String> = [
            "tracer: attached; tracing 2 process(es); Ctrl-C to stop",
            r#"{"tracer_latency":1,"spans":9,"latency":[]}"#,
            r#"{"tracer_summary":1,"spans":160,"events_lost":2,"spans_dropped":5,"latency":[
                {"service":"nginx","kind":"server","operation":"GET /hello","count":150},
                {"service":"nginx","kind":"client","operation":"GET /hello","count":7},
                {"service":"nginx","kind":"server","operation":"GET /other","count":3}]}"#,
        ]
        .iter()
        .map(|l| l.replace('\n', ""))
        .collect();
        let summary = exit_summary(&lines).unwrap();
        assert_eq!(server_spans_named(&summary, "GET /hello"), Some(145));
        assert_eq!(server_spans_named(&summary, "GET /nope"), None);
        assert_eq!(summary["events_lost"].as_u64(), Some(2));
        assert!(exit_summary(&lines[..2]).is_none());
    }
}
