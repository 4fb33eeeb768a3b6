//! The binary's edges: bad input gives one clear line and a non-zero exit;
//! exit, however it happens, leaves nothing of ours attached.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{our_programs_loaded, servers, tracer_binary, wait_until_detached, Tracer};

fn run_tracer(args: &[&str]) -> (bool, String) {
    let out = Command::new(tracer_binary())
        .args(args)
        .output()
        .expect("run tracer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_such_pid_is_one_clear_error() {
    let (ok, stderr) = run_tracer(&["--pid", "4000000"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "tracer: no such process: 4000000");
}

#[test]
fn nothing_to_trace_is_an_error() {
    let (ok, stderr) = run_tracer(&[]);
    assert!(!ok);
    assert!(stderr.contains("nothing to trace"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn malformed_arguments_are_refused() {
    for args in [
        &["--pid", "nginx"][..],
        &["--pid", "1", "--max-payload", "99999999"],
        &["--pid", "1", "--protocols", "gopher"],
        &["--pid", "1", "--output", "xml"],
        &["--pid", "1", "--duration", "0"],
    ] {
        let (ok, stderr) = run_tracer(args);
        assert!(!ok, "{args:?} accepted");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn no_capabilities_is_one_clear_error() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            tracer_binary(),
            "--pid",
            "1",
        ])
        .output()
        .expect("run setpriv");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tracer: missing capabilities CAP_BPF ("),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// A kernel without BTF (here: /sys/kernel/btf hidden by an empty tmpfs in
/// a private mount namespace) gets one line naming the kernel option.
#[test]
fn kernel_without_btf_is_one_clear_error() {
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /sys/kernel/btf && exec \"$0\" --pid 1",
            tracer_binary(),
        ])
        .output()
        .expect("run unshare");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CONFIG_DEBUG_INFO_BTF"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `--socket-hooks` takes only the paths it knows (the refusal of
/// `tracepoint` on kernels without the tracepoints is checked by the kernel
/// matrix, `cargo xtask vm`).
#[test]
fn socket_hooks_values_are_checked() {
    let (ok, stderr) = run_tracer(&["--pid", "1", "--socket-hooks", "kprobe"]);
    assert!(!ok);
    assert!(stderr.contains("invalid value 'kprobe'"), "{stderr}");
    let (ok, stderr) = run_tracer(&[
        "--pid",
        "1",
        "--socket-hooks",
        "fd-table",
        "--duration",
        "0.1",
    ]);
    assert!(ok, "{stderr}");
}

/// A `--comm` longer than the kernel keeps, cut inside a UTF-8 character,
/// is warned about and traced, never a panic.
#[test]
fn long_multibyte_comm_is_matched_not_a_panic() {
    let (ok, stderr) = run_tracer(&["--comm", "ééééééééé", "--duration", "0.1"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("keeps 15 bytes"), "{stderr}");
}

#[test]
fn duration_ends_the_run_and_detaches_everything() {
    let nginx = servers::nginx(1);
    let started = Instant::now();
    let out = Command::new(tracer_binary())
        .args(["--pid", &nginx.pid().to_string(), "--duration", "1.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run tracer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // The text summary: its first line always, then only topics with a
    // non-zero number (an idle nginx has none).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("tracer: 0 spans emitted"))
        .collect();
    assert!(!summary.is_empty(), "{stderr}");
    assert!(
        summary[0].ends_with(" events read, 0 events lost"),
        "{stderr}"
    );
    assert!(summary[1..].iter().all(|l| l.starts_with("  ")), "{stderr}");
    wait_until_detached();
}

/// `--summary-format json`: the exit summary is one JSON line with every
/// counter and the latency table, and no text table is printed.
#[test]
fn json_summary_is_one_line_with_every_counter() {
    let nginx = servers::nginx(1);
    // The harness asks for `--summary-format json`.
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    let tracer_pid = tracer.pid();
    let loaded = common::programs_held_by(tracer_pid);
    for _ in 0..2 {
        common::run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", &nginx.url("/hello")]));
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.spans.len(), 2, "{:?}", run.stderr);
    // It parses into every key the harness knows.
    let stats = run.stats();
    assert_eq!(stats.version, 1);
    assert_eq!(stats.spans, 2, "{}", run.summary());
    assert!(stats.events_read > 0, "{}", run.summary());
    assert_eq!(stats.events_lost, stats.lost.values().sum::<u64>());
    for reason in [
        "ring_buffer_full",
        "in_flight_table_full",
        "socket_table_full",
        "payload_unreadable",
        "tls_socket_unknown",
        "malformed",
    ] {
        assert!(
            stats.lost.contains_key(reason),
            "{reason}: {}",
            run.summary()
        );
    }
    assert_eq!(stats.spans_dropped, 0);
    assert_eq!(stats.hook_errors, 0);
    assert_eq!(stats.sink("stdout-json").written, 2);
    assert_eq!(stats.sink("summary").written, 2);
    let row = stats
        .latency
        .iter()
        .find(|r| r.kind == "server" && r.operation == "GET /hello")
        .unwrap_or_else(|| panic!("no GET /hello row: {}", run.summary()));
    assert_eq!((row.count, row.errors), (2, 0));
    assert!(row.p50_ns > 0 && row.p50_ns <= row.p90_ns && row.p90_ns <= row.p99_ns);
    // Where attaching spent its time: every program the tracer loaded, each
    // within the whole.
    let attach = &stats.attach;
    let timed: std::collections::BTreeSet<String> = attach.programs_ms.keys().cloned().collect();
    assert_eq!(timed, loaded, "{}", run.summary());
    assert!(attach
        .programs_ms
        .values()
        .all(|&ms| ms > 0.0 && ms <= attach.total_ms));
    assert!(attach.offsets_ms > 0.0 && attach.object_ms > 0.0);
    assert!(attach.offsets_ms + attach.object_ms < attach.total_ms);
    // Nothing of the text summary.
    assert!(
        !run.stderr.iter().any(|l| l.contains("latency by service")
            || l.starts_with("tracer: 2 spans emitted")
            || l.starts_with("SERVICE")),
        "{:?}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .iter()
            .filter(|l| l.contains("tracer_summary"))
            .count(),
        1,
        "{:?}",
        run.stderr
    );
}

/// The format also comes from `TRACER_SUMMARY_FORMAT`; a bad one is refused
/// before anything is attached.
#[test]
fn summary_format_from_the_environment_and_bad_values() {
    let (ok, stderr) = run_tracer(&["--pid", "1", "--summary-format", "yaml"]);
    assert!(!ok);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("invalid value 'yaml' for '--summary-format"),
        "{stderr}"
    );
    assert!(stderr.contains("text, json"), "{stderr}");
    assert!(!stderr.contains("attached"), "{stderr}");

    let out = Command::new(tracer_binary())
        .args(["--comm", "no-such-comm", "--duration", "0.1"])
        .env("TRACER_SUMMARY_FORMAT", "json")
        .output()
        .expect("run tracer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let summary: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(summary["tracer_summary"], 1, "{last}");
    assert_eq!(summary["spans"], 0, "{last}");
}

#[test]
fn sigterm_and_sigkill_leave_nothing_attached() {
    let nginx = servers::nginx(1);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    assert!(
        !our_programs_loaded().is_empty(),
        "programs should be loaded while tracing"
    );
    assert!(
        common::our_maps_loaded().len() >= 8,
        "maps should be loaded: {:?}",
        common::loaded_map_names()
    );
    common::signal(tracer.pid(), "-TERM");
    wait_until_detached();

    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    common::signal(tracer.pid(), "-KILL");
    wait_until_detached();

    // And a fresh start works after a SIGKILL.
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    common::run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", &nginx.url("/hello")]));
    let run = tracer.stop();
    assert_eq!(run.spans.len(), 1, "{:?}", run.stderr);
    wait_until_detached();
}
