//! `tracer report --traces / --service-map / --html` on files the tracer
//! really wrote: the proxy chain curl → nginx → python → redis + postgres
//! (every process but curl traced) and a single nginx. The waterfall must
//! put every parent before its children, the service map must count
//! exactly the requests sent, and the HTML must render in a real browser.
//!
//! With `TRACER_RECORD_TESTDATA=DIR` the recorded files are also copied to
//! DIR: that is how `tracer-user/src/report/testdata/*.jsonl` were made.
//! The chain's page is kept as a screenshot in `target/tmp`.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{run_ok, servers, tracer_binary, TempDir, Tracer};

/// Requests sent through the chain, one at a time.
const CHAIN_REQUESTS: u32 = 6;

fn traceparent(id: u32) -> (String, String) {
    let trace = format!("{:032x}", 0x7ace_0000_u64 + u64::from(id));
    let parent = format!("{:016x}", 0x9a7e_0000_u64 + u64::from(id));
    (format!("00-{trace}-{parent}-01"), trace)
}

fn curl(url: &str, traceparent: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(tp) = traceparent {
        cmd.args(["-H", &format!("traceparent: {tp}")]);
    }
    run_ok(cmd.arg(url))
}

fn report(args: &[&str]) -> Output {
    Command::new(tracer_binary())
        .arg("report")
        .args(args)
        .output()
        .expect("run tracer report")
}

fn report_ok(args: &[&str]) -> String {
    let out = report(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tracer report {args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn keep(file: &Path, name: &str) {
    if let Some(dir) = std::env::var_os("TRACER_RECORD_TESTDATA") {
        let to = PathBuf::from(dir).join(name);
        std::fs::copy(file, &to).expect("copy the recording");
        eprintln!("recorded {}", to.display());
    }
}

/// Records the chain: odd requests without a `traceparent`, even ones with
/// one (their root's parent, curl's, is not in the file).
fn record_chain(dir: &TempDir) -> PathBuf {
    let redis = servers::redis();
    let pg = servers::postgres();
    let app = servers::python_chain_app(redis.port, pg.port, false);
    let nginx = servers::nginx_proxy(app.port, true);
    let file = dir.path().join("chain.jsonl");
    let pids = [nginx.pid(), app.pid(), redis.pid(), pg.pid()]
        .map(|p| p.to_string())
        .join(",");
    let tracer = Tracer::start(&[
        "--pid",
        &pids,
        "--output-file",
        file.to_str().expect("utf-8 path"),
    ]);
    for id in 1..=CHAIN_REQUESTS {
        let tp = (id % 2 == 0).then(|| traceparent(id).0);
        assert_eq!(
            curl(&nginx.url(&format!("/chain/{id}")), tp.as_deref()),
            "200"
        );
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.stats().linking.expired, 0, "{}", run.summary());
    keep(&file, "chain.jsonl");
    file
}

/// One waterfall line: its depth (two spaces a level) and its columns.
struct WaterfallLine {
    depth: usize,
    process: String,
    kind: String,
    text: String,
}

/// The waterfalls of `--traces` output, one per trace id.
fn waterfalls(out: &str) -> Vec<(String, Vec<WaterfallLine>)> {
    let mut traces: Vec<(String, Vec<WaterfallLine>)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("trace ") {
            let id = rest.split_whitespace().next().expect("trace id");
            traces.push((id.to_owned(), Vec::new()));
        } else if let Some(body) = line.strip_prefix("  ") {
            let depth = body.len() - body.trim_start().len();
            let mut words = body.split_whitespace();
            let process = words.next().expect("process").to_owned();
            let kind = words.next().expect("kind").to_owned();
            traces
                .last_mut()
                .expect("a trace first")
                .1
                .push(WaterfallLine {
                    depth: depth / 2,
                    process,
                    kind,
                    text: line.to_owned(),
                });
        }
    }
    traces
}

#[test]
fn chain_traces_service_map_and_html() {
    let dir = TempDir::new("report-chain");
    let file = record_chain(&dir);
    let path = file.to_str().unwrap();

    // Waterfalls: one trace per request, 9 spans each, parent before child.
    let out = report_ok(&["--traces", "--limit", "100", path]);
    let traces = waterfalls(&out);
    assert_eq!(traces.len(), CHAIN_REQUESTS as usize, "{out}");
    for (id, lines) in &traces {
        assert_eq!(lines.len(), 9, "trace {id}:\n{out}");
        assert_eq!(lines[0].depth, 0, "{out}");
        assert_eq!(
            (lines[0].process.as_str(), lines[0].kind.as_str()),
            ("nginx", "server")
        );
        for pair in lines.windows(2) {
            assert!(pair[1].depth <= pair[0].depth + 1, "{out}");
        }
        // Every span's parent is the nearest line above it one level up.
        let parent_of = |i: usize| {
            (0..i)
                .rev()
                .find(|&j| lines[j].depth + 1 == lines[i].depth)
                .map(|j| (lines[j].process.as_str(), lines[j].kind.as_str()))
        };
        for (i, line) in lines.iter().enumerate().skip(1) {
            let expected = match (line.process.as_str(), line.kind.as_str()) {
                ("nginx", "client") => ("nginx", "server"),
                ("python3", "server") => ("nginx", "client"),
                ("python3", "client") => ("python3", "server"),
                ("redis-server" | "postgres", "server") => ("python3", "client"),
                other => panic!("unexpected span {other:?}:\n{out}"),
            };
            assert_eq!(parent_of(i), Some(expected), "{}\n{out}", line.text);
        }
    }
    // A root whose parent (curl's span, sent in traceparent) is not in the
    // file is shown as a root, and marked.
    let (_, sent) = traceparent(2);
    let one = report_ok(&["--trace-id", &sent, path]);
    let traces = waterfalls(&one);
    assert_eq!(traces.len(), 1, "{one}");
    assert_eq!(traces[0].0, sent);
    assert!(traces[0].1[0].text.contains("parent not in files"), "{one}");
    let (_, unsent) = traceparent(1);
    let missing = report(&["--trace-id", &unsent, path]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!("trace {unsent} is not in")) && stderr.lines().count() == 1,
        "{stderr}"
    );

    // Service map: edge counts are the requests sent.
    let map = report_ok(&["--service-map", path]);
    let requests = |client: &str, server: &str, protocol: &str| -> u64 {
        let row = map
            .lines()
            .find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() > 3 && w[0] == client && w[1] == server && w[2] == protocol
            })
            .unwrap_or_else(|| panic!("no edge {client} -> {server} {protocol}:\n{map}"));
        row.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    let n = u64::from(CHAIN_REQUESTS);
    assert_eq!(requests("127.0.0.1", "nginx", "http"), n, "{map}");
    assert_eq!(requests("nginx", "python3", "http"), n, "{map}");
    assert_eq!(requests("python3", "redis-server", "redis"), 2 * n, "{map}");
    assert_eq!(requests("python3", "postgres", "postgresql"), n, "{map}");
    assert_eq!(map.lines().count(), 1 + 4, "{map}");

    // The HTML, rendered by a real browser.
    let html = dir.path().join("report.html");
    report_ok(&["--html", html.to_str().unwrap(), path]);
    let dom = chromium_dom(&html);
    for service in ["nginx", "python3", "redis-server", "postgres"] {
        assert!(dom.contains(service), "{service} missing from the DOM");
    }
    assert!(dom.contains("<svg"), "no svg in the DOM");
    assert!(dom.contains(&sent), "trace {sent} missing from the DOM");
    // Kept after the run (target/tmp), for a look at what was checked.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-chain.png");
    chromium_screenshot(&html, &shot);
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn single_process_run_and_bad_input() {
    let nginx = servers::nginx(1);
    let dir = TempDir::new("report-single");
    let file = dir.path().join("nginx.jsonl");
    let tracer = Tracer::start(&[
        "--pid",
        &nginx.pid().to_string(),
        "--output-file",
        file.to_str().unwrap(),
    ]);
    for _ in 0..3 {
        assert_eq!(curl(&nginx.url("/hello"), None), "200");
    }
    assert_eq!(curl(&nginx.url("/fail"), None), "503");
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    keep(&file, "nginx.jsonl");
    let path = file.to_str().unwrap();

    let out = report_ok(&["--traces", path]);
    let traces = waterfalls(&out);
    assert_eq!(traces.len(), 4, "{out}");
    assert!(traces.iter().all(|(_, lines)| lines.len() == 1), "{out}");
    assert!(out.contains("GET /fail") && out.contains("error"), "{out}");
    let out = report_ok(&["--traces", "--limit", "1", path]);
    assert_eq!(waterfalls(&out).len(), 1, "{out}");

    let map = report_ok(&["--service-map", path]);
    let row = map
        .lines()
        .find(|l| l.starts_with("127.0.0.1 ") && l.contains(" nginx "))
        .unwrap_or_else(|| panic!("{map}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[3], "4", "{map}");
    assert_eq!(fields[4], "25.0%", "{map}");

    let html = dir.path().join("nginx.html");
    report_ok(&["--html", html.to_str().unwrap(), path]);
    let dom = chromium_dom(&html);
    assert!(dom.contains("GET /fail") && dom.contains("<svg"));

    // Bad input: one clear line and a failure exit, never a panic.
    for args in [
        vec!["--trace-id", "zz", path],
        vec!["--traces", "/nonexistent/spans.jsonl"],
        vec!["--html", "/nonexistent/dir/out.html", path],
    ] {
        let out = report(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.starts_with("tracer: "), "{args:?}: {stderr}");
    }
}

fn chromium(args: &[&str], html: &Path) -> Output {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(args)
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium (Debian package `chromium`: cargo xtask setup --test-deps)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The DOM after the page's scripts ran.
fn chromium_dom(html: &Path) -> String {
    String::from_utf8(chromium(&["--dump-dom"], html).stdout).expect("utf-8 DOM")
}

fn chromium_screenshot(html: &Path, png: &Path) {
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1600",
            "--hide-scrollbars",
        ],
        html,
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
}

/// The value of one sample line of a Prometheus text scrape.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn live_service_graph_metrics_count_the_requests_sent() {
    let redis = servers::redis();
    let pg = servers::postgres();
    let app = servers::python_chain_app(redis.port, pg.port, false);
    let nginx = servers::nginx_proxy(app.port, true);
    let pids = [nginx.pid(), app.pid(), redis.pid(), pg.pid()]
        .map(|p| p.to_string())
        .join(",");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let tracer = Tracer::start(&["--pid", &pids, "--metrics-addr", &addr]);
    // Three requests from curl, untraced, and one more carrying a
    // traceparent: its server span names a parent that never comes, so it
    // is counted after the wait for the other end.
    for id in 1..=3 {
        assert_eq!(curl(&nginx.url(&format!("/chain/{id}")), None), "200");
    }
    assert_eq!(curl(&nginx.url("/chain/4"), Some(&traceparent(4).0)), "200");
    let total = |client: &str, server: &str, connection_type: &str| {
        format!(
            "traces_service_graph_request_total{{client=\"{client}\",server=\"{server}\",connection_type=\"{connection_type}\"}}"
        )
    };
    let expected = [
        (total("127.0.0.1", "nginx", "virtual_node"), 4.0),
        (total("nginx", "python3", ""), 4.0),
        (total("python3", "redis-server", "database"), 8.0),
        (total("python3", "postgres", "database"), 4.0),
    ];
    // Spans reach the sink within a poll interval; the lone end waits 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let body = loop {
        let body = run_ok(Command::new("curl").args(["-sS", &format!("http://{addr}/metrics")]));
        let done = expected
            .iter()
            .all(|(series, n)| sample(&body, series) == Some(*n));
        if done || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    for (series, n) in &expected {
        assert_eq!(sample(&body, series), Some(*n), "{series}\n{body}");
    }
    // Nothing else, and nothing failed.
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("traces_service_graph_request_total{"))
            .count(),
        expected.len(),
        "{body}"
    );
    assert!(body
        .lines()
        .filter(|l| l.starts_with("traces_service_graph_request_failed_total{"))
        .all(|l| l.ends_with(" 0")));
    // Both sides timed for linked pairs, the server side only for the
    // virtual client.
    let labels = "client=\"python3\",server=\"redis-server\",connection_type=\"database\"";
    for side in ["server", "client"] {
        let count = format!("traces_service_graph_request_{side}_seconds_count{{{labels}}}");
        assert_eq!(sample(&body, &count), Some(8.0), "{body}");
    }
    let virtual_client = "client=\"127.0.0.1\",server=\"nginx\",connection_type=\"virtual_node\"";
    assert_eq!(
        sample(
            &body,
            &format!("traces_service_graph_request_server_seconds_count{{{virtual_client}}}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("traces_service_graph_request_client_seconds_count{{{virtual_client}}}")
        ),
        None
    );
}
