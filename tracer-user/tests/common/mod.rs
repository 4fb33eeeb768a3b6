//! Harness for integration tests: the real tracer binary (with its real
//! eBPF programs) against real servers and clients on 127.0.0.1, all
//! started and stopped by the test.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

pub mod servers;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::Value;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tracer-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// The tracer binary under test, running with `--output json` and
/// `--summary-format json`.
pub struct Tracer {
    child: Child,
    stdout: mpsc::Receiver<String>,
    /// Lines already taken by `spans_so_far`, kept for `stop`.
    early: Vec<String>,
    stderr_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// What a finished tracer run printed.
pub struct TracerRun {
    pub spans: Vec<Value>,
    pub stderr: Vec<String>,
    pub exit_ok: bool,
}

/// The tracer's exit summary as `--summary-format json` writes it: every
/// key the line must have (a missing or renamed one fails the parse).
#[derive(Debug, Deserialize)]
pub struct Summary {
    /// The layout version, the line's first key.
    #[serde(rename = "tracer_summary")]
    pub version: u32,
    pub spans: u64,
    pub events_read: u64,
    pub events_lost: u64,
    /// By reason: the metrics' `reason` labels.
    pub lost: BTreeMap<String, u64>,
    pub spans_dropped: u64,
    pub parser_desyncs: u64,
    pub connections_over_limit: u64,
    pub tls_undecrypted: u64,
    pub connections_open: u64,
    pub processes_untraced: u64,
    pub hook_errors: u64,
    pub linking: LinkingSummary,
    pub sinks: Vec<SinkSummary>,
    pub latency: Vec<LatencyRow>,
    pub attach: AttachSummary,
}

/// Where the time to attach went, in ms (the JSON keys, unit included, as
/// the tracer writes them), and the iovec walk taken.
#[derive(Debug, Deserialize)]
pub struct AttachSummary {
    pub total_ms: f64,
    pub offsets_ms: f64,
    pub object_ms: f64,
    pub programs_ms: BTreeMap<String, f64>,
    /// `bpf_loop` or `unrolled`.
    pub iovec_walk: String,
}

#[derive(Debug, Deserialize)]
pub struct LinkingSummary {
    pub held: u64,
    pub hold_mean_ms: f64,
    pub hold_max_ms: f64,
    pub linked: u64,
    pub expired: u64,
    pub over_limit: u64,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct SinkSummary {
    pub name: String,
    pub written: u64,
    pub failed: u64,
    pub queue_full: u64,
}

#[derive(Debug, Deserialize)]
pub struct LatencyRow {
    pub service: String,
    pub kind: String,
    pub operation: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
}

impl Summary {
    /// The line of the exit summary among stderr lines.
    pub fn find(stderr: &[String]) -> Option<&str> {
        stderr
            .iter()
            .rev()
            .find(|l| l.starts_with(r#"{"tracer_summary":"#))
            .map(String::as_str)
    }

    /// What the sink named `name` did; panics if there is none.
    pub fn sink(&self, name: &str) -> &SinkSummary {
        self.sinks
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no sink {name} in the summary: {self:?}"))
    }
}

impl TracerRun {
    /// The exit summary line (JSON) as printed, for messages; empty if the
    /// tracer printed none.
    pub fn summary(&self) -> &str {
        Summary::find(&self.stderr).unwrap_or("")
    }

    /// The exit summary, parsed, e.g. `run.stats().events_lost`; panics if
    /// the tracer printed none or it does not parse.
    pub fn stats(&self) -> Summary {
        let Some(line) = Summary::find(&self.stderr) else {
            panic!("no exit summary on stderr: {:?}", self.stderr);
        };
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad summary {line:?}: {e}"))
    }

    pub fn spans_with(&self, key: &str, value: &str) -> Vec<&Value> {
        self.spans.iter().filter(|s| s[key] == value).collect()
    }
}

pub fn tracer_binary() -> &'static str {
    env!("CARGO_BIN_EXE_tracer")
}

impl Tracer {
    /// Starts the tracer and waits until its programs are attached.
    pub fn start(args: &[&str]) -> Tracer {
        Self::start_with_env(args, &[])
    }

    /// Starts the tracer with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tracer {
        let mut cmd = Command::new(tracer_binary());
        cmd.args(["--output", "json", "--summary-format", "json"])
            .args(args)
            .envs(env.iter().copied());
        Self::start_command(cmd)
    }

    /// Starts the tracer as `cmd` says (e.g. under `setpriv`, with all its
    /// arguments) and waits until its programs are attached. Spans are
    /// read from stdout as JSON lines, if `cmd` asks for them.
    pub fn start_command(mut cmd: Command) -> Tracer {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tracer");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = stderr_lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Kept before the signal: a test that looks at the attach
                // line right after `start` must find it.
                let attached = line.contains("attached");
                sink.lock().expect("stderr lock").push(line);
                if attached {
                    let _ = ready_tx.send(());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "tracer exited before attaching ({status}): {}",
                    stderr_lines.lock().expect("stderr lock").join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "tracer did not attach within 60 s"
            );
        }
        Tracer {
            child,
            stdout: line_rx,
            early: Vec::new(),
            stderr_lines,
        }
    }

    /// Spans printed so far (they are still returned by `stop`).
    pub fn spans_so_far(&mut self) -> Vec<Value> {
        while let Ok(line) = self.stdout.try_recv() {
            self.early.push(line);
        }
        self.early
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
            })
            .collect()
    }

    /// Stderr lines so far.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr_lines.lock().expect("stderr lock").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the tracer with SIGINT, after letting the last events drain.
    pub fn stop(mut self) -> TracerRun {
        // Events wait at most the poll interval (50 ms) in the ring buffer.
        thread::sleep(Duration::from_millis(300));
        signal(self.child.id(), libc_sigint());
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(30));
        let mut spans: Vec<Value> = std::mem::take(&mut self.early)
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
            })
            .collect();
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
            spans.push(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}")),
            );
        }
        // Give the stderr reader a moment to collect the summary.
        thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr_lines.lock().expect("stderr lock").clone();
        TracerRun {
            spans,
            stderr,
            exit_ok: status.is_some_and(|s| s.success()),
        }
    }
}

fn libc_sigint() -> &'static str {
    "-INT"
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion and returns its stdout; panics on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the Go program `source` as `dir/name` with Debian's Go (offline:
/// stdlib only; static, `CGO_ENABLED=0`) and more `go build` `flags`; the
/// build cache is kept between runs.
pub fn go_build(dir: &std::path::Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.go"));
    std::fs::write(&src, source).expect("write Go source");
    std::fs::write(dir.join("go.mod"), "module tracertest\n\ngo 1.19\n").expect("go.mod");
    let out = dir.join(name);
    let cache = std::env::temp_dir().join("tracer-test-gocache");
    run_ok(
        Command::new("go")
            .current_dir(dir)
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src),
    );
    out
}

/// Reads everything a child printed, for diagnostics.
pub fn read_all(mut reader: impl Read) -> String {
    let mut s = String::new();
    let _ = reader.read_to_string(&mut s);
    s
}

/// Names of loaded eBPF programs (from `bpftool prog show`).
pub fn loaded_program_names() -> Vec<String> {
    loaded_programs()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// Every loaded eBPF program, as `bpftool prog show --json` describes it.
fn loaded_programs() -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("run bpftool");
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(programs)) => programs,
        _ => Vec::new(),
    }
}

/// Names of the eBPF programs process `pid` holds open: the `prog_id`s of
/// its fds, named by `bpftool prog show`. Only that tracer's programs,
/// whatever else runs on the machine (bpftool here lists no owner pids).
pub fn programs_held_by(pid: u32) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process's fds");
    for fd in fds.flatten() {
        let is_prog = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|id| id.trim().parse::<u64>().ok()),
        );
    }
    loaded_programs()
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// Our programs' names all start with `tracer_` (kernel names keep 15 bytes).
pub fn our_programs_loaded() -> Vec<String> {
    loaded_program_names()
        .into_iter()
        .filter(|n| n.starts_with("tracer_"))
        .collect()
}

/// Waits until none of our programs and maps is loaded. The kernel drops
/// them asynchronously after the tracer's exit: maps after their last
/// program, and since 6.9 a tracing link's program only after an RCU grace
/// period, which takes longer on a busy machine.
pub fn wait_until_detached() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !our_programs_loaded().is_empty() || !our_maps_loaded().is_empty() {
        assert!(
            Instant::now() < deadline,
            "still attached 10 s after exit: {:?} {:?}",
            our_programs_loaded(),
            our_maps_loaded()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Names of loaded eBPF maps (from `bpftool map show`).
pub fn loaded_map_names() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["map", "show", "--json"])
        .output()
        .expect("run bpftool");
    let maps: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    maps.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Maps the tracer creates (every name fits the kernel's 15 bytes).
pub fn our_maps_loaded() -> Vec<String> {
    loaded_map_names()
        .into_iter()
        .filter(|n| tracer_common::maps::names::ALL.contains(&n.as_str()))
        .collect()
}

/// Server spans with a complete response.
pub fn complete(spans: &[Value]) -> Vec<&Value> {
    spans
        .iter()
        .filter(|s| s["attributes"].get("tracer.response.missing").is_none())
        .collect()
}

/// curl's status line for each URL (after `flags`), one connection for
/// them all; `-k` accepts the tests' self-signed certificates.
pub fn curl_statuses<U: AsRef<std::ffi::OsStr>>(flags: &[&str], urls: &[U]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "-w", "%{http_code}\n"]).args(flags);
    for url in urls {
        cmd.args(["-o", "/dev/null"]).arg(url);
    }
    run_ok(&mut cmd)
}

/// "NAME STATUS" of each span, sorted.
pub fn names_and_statuses(spans: &[&Value]) -> Vec<String> {
    let mut names: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["name"].as_str().unwrap_or_default(),
                s["attributes"]["http.response.status_code"]
            )
        })
        .collect();
    names.sort();
    names
}

/// A Python or Node.js client that waits for a go signal before doing its work, so a
/// test can attach the tracer to its pid first.
pub struct GatedClient {
    child: Child,
    go: PathBuf,
    _dir: TempDir,
}

impl GatedClient {
    /// `body` runs after the gate opens; it should print "done" at the end.
    pub fn spawn(body: &str) -> GatedClient {
        Self::spawn_with("/usr/bin/python3", |go| {
            format!("import os, time\nwhile not os.path.exists({go:?}):\n    time.sleep(0.02)\n{body}\n")
        })
    }

    /// A Node.js client: `body` runs once the gate opens.
    pub fn spawn_node(body: &str) -> GatedClient {
        Self::spawn_with("node", |go| {
            format!(
                "const fs = require('fs');\nfunction main() {{\n{body}\n}}\n(function wait() {{ if (fs.existsSync({go:?})) main(); else setTimeout(wait, 20); }})();\n"
            )
        })
    }

    /// Runs `script(gate path)` with `interpreter`, given on its command
    /// line (`-c` for Python, `-e` for Node.js).
    fn spawn_with(interpreter: &str, script: impl FnOnce(&str) -> String) -> GatedClient {
        let dir = TempDir::new("client");
        let go = dir.path().join("go");
        let script = script(&go.display().to_string());
        let flag = if interpreter == "node" { "-e" } else { "-c" };
        let child = Command::new(interpreter)
            .args([flag, &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the client");
        thread::sleep(Duration::from_millis(300));
        GatedClient {
            child,
            go,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens the gate and waits for the client; returns its stdout.
    pub fn run(self) -> String {
        std::fs::write(&self.go, "").expect("open the gate");
        let out = self.child.wait_with_output().expect("client finished");
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
