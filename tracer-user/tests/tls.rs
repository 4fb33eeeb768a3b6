//! TLS: plaintext from OpenSSL-encrypted connections, read with uprobes on
//! the library, for servers (nginx) and clients (curl, Python's ssl).
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use common::{run_ok, servers, Tracer};
use serde_json::Value;

fn curl_k(args: &[&str]) -> String {
    run_ok(
        Command::new("curl")
            .args(["-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}\n"])
            .args(args),
    )
}

fn named<'a>(spans: &'a [Value], kind: &str, name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["kind"] == kind && s["name"] == name)
        .collect()
}

fn assert_tls_http(span: &Value, status: u64, port: u16) {
    let attrs = &span["attributes"];
    assert_eq!(span["protocol"], "http");
    assert_eq!(attrs["tls.protocol.name"], "tls");
    assert_eq!(attrs["http.response.status_code"], status);
    assert_eq!(attrs["server.port"], port);
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert!(attrs["client.port"].as_u64().is_some_and(|p| p > 0));
}

#[test]
fn nginx_https_server_spans_match_plain_http() {
    let nginx = servers::nginx_tls(false);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    for _ in 0..5 {
        assert_eq!(curl_k(&[&nginx.https_url("/hello")]).trim(), "200");
    }
    assert_eq!(curl_k(&[&nginx.https_url("/fail")]).trim(), "503");
    // Keep-alive: three requests on one TLS connection.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "-w", "%{http_code}\n"]);
    for path in ["/index.html", "/hello", "/index.html"] {
        cmd.args(["-o", "/dev/null"]).arg(nginx.https_url(path));
    }
    assert_eq!(run_ok(&mut cmd).lines().count(), 3);
    let run = tracer.stop();
    let servers: Vec<&Value> = run.spans.iter().filter(|s| s["kind"] == "server").collect();
    assert_eq!(servers.len(), 9, "{:#?}\n{:?}", run.spans, run.stderr);
    let hello = named(&run.spans, "server", "GET /hello");
    assert_eq!(hello.len(), 6);
    for span in &hello {
        assert_tls_http(span, 200, nginx.port);
        assert_eq!(span["attributes"]["http.response.body.size"], 6);
        assert_eq!(span["process"], "nginx");
    }
    assert_eq!(
        named(&run.spans, "server", "GET /fail")[0]["status"],
        "error"
    );
    assert_eq!(named(&run.spans, "server", "GET /index.html").len(), 2);
    assert_eq!(run.stats().parser_desyncs, 0, "{}", run.summary());
}

#[test]
fn curl_https_client_spans() {
    let nginx = servers::nginx_tls(false);
    let tracer = Tracer::start(&["--comm", "curl"]);
    for _ in 0..4 {
        assert_eq!(curl_k(&[&nginx.https_url("/hello")]).trim(), "200");
    }
    let run = tracer.stop();
    let clients = named(&run.spans, "client", "GET /hello");
    assert_eq!(clients.len(), 4, "{:#?}\n{:?}", run.spans, run.stderr);
    for span in &clients {
        assert_tls_http(span, 200, nginx.port);
        assert_eq!(span["process"], "curl");
    }
    assert_eq!(
        run.spans.len(),
        4,
        "no spans from ciphertext: {:#?}",
        run.spans
    );
}

#[test]
fn python_ssl_client_spans_via_read_ex_write_ex() {
    let nginx = servers::nginx_tls(false);
    let dir = common::TempDir::new("pyssl");
    let go = dir.path().join("go");
    let script = format!(
        r#"
import http.client, os, ssl, time
ctx = ssl._create_unverified_context()
while not os.path.exists("{go}"):
    time.sleep(0.05)
conn = http.client.HTTPSConnection("127.0.0.1", {port}, context=ctx)
for path in ["/hello", "/index.html", "/hello"]:
    conn.request("GET", path); conn.getresponse().read()
print("done")
"#,
        port = nginx.port,
        go = go.display()
    );
    let client = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python client");
    thread::sleep(Duration::from_millis(500));
    let tracer = Tracer::start(&["--pid", &client.id().to_string()]);
    std::fs::write(&go, "").expect("go");
    let out = client.wait_with_output().expect("client");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
    let run = tracer.stop();
    let names: Vec<&str> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "client")
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["GET /hello", "GET /index.html", "GET /hello"],
        "{:?}",
        run.stderr
    );
    for span in &run.spans {
        assert_tls_http(span, 200, nginx.port);
        assert_eq!(span["process"], "python3");
    }
}

/// A TCP relay that never decrypts sees only ciphertext: it is counted as a
/// TLS connection, never parsed into spans.
#[test]
fn ciphertext_without_a_hooked_library_yields_no_spans() {
    let nginx = servers::nginx_tls(false);
    let relay = servers::python_script(
        "relay",
        &format!(
            r#"
import socket, threading
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    finally:
        b.close()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {{port}}))
srv.listen(8)
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", {upstream}))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
"#,
            upstream = nginx.port
        ),
    );
    let tracer = Tracer::start(&["--pid", &relay.pid().to_string()]);
    for _ in 0..3 {
        assert_eq!(
            curl_k(&[&format!("https://127.0.0.1:{}/hello", relay.port)]).trim(),
            "200"
        );
    }
    thread::sleep(Duration::from_millis(300));
    drop(relay);
    let run = tracer.stop();
    assert!(run.spans.is_empty(), "ciphertext parsed: {:#?}", run.spans);
    assert!(run.stats().tls_undecrypted >= 6, "{}", run.summary());
}

#[test]
fn postgres_over_ssl_server_spans() {
    let pg = servers::postgres_with_ssl(true);
    let tracer = Tracer::start(&["--pid", &pg.pid().to_string()]);
    for n in 1..=3 {
        run_ok(Command::new("psql").args([
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
                pg.port
            ),
            "-X",
            "-c",
            &format!("SELECT {n}"),
        ]));
    }
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["protocol"] == "postgresql")
        .collect();
    assert_eq!(spans.len(), 3, "{:#?}\n{:?}", run.spans, run.stderr);
    for span in &spans {
        assert_eq!(span["kind"], "server");
        assert_eq!(span["attributes"]["db.query.text"], "SELECT ?");
        assert_eq!(span["attributes"]["tls.protocol.name"], "tls");
    }
}

#[test]
fn redis_over_tls_server_spans() {
    let (redis, cert) = servers::redis_tls();
    let tracer = Tracer::start(&["--pid", &redis.pid().to_string()]);
    for args in [&["SET", "k", "v"][..], &["GET", "k"], &["INCR", "n"]] {
        run_ok(
            Command::new("redis-cli")
                .args([
                    "--tls",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &redis.port.to_string(),
                    "--cacert",
                ])
                .arg(&cert)
                .args(args),
        );
    }
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["protocol"] == "redis")
        .collect();
    for name in ["SET", "GET", "INCR"] {
        let found: Vec<&&Value> = spans.iter().filter(|s| s["name"] == name).collect();
        assert_eq!(found.len(), 1, "{name}: {:#?}\n{:?}", run.spans, run.stderr);
        assert_eq!(found[0]["attributes"]["tls.protocol.name"], "tls");
        assert_eq!(found[0]["kind"], "server");
    }
}

/// HTTP/2 negotiated by ALPN inside TLS: nginx with `http2` and curl --http2.
#[test]
fn http2_over_tls_negotiated_by_alpn() {
    let nginx = servers::nginx_tls(true);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    for _ in 0..3 {
        let out = run_ok(Command::new("curl").args([
            "-sS",
            "-k",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}\n",
            &nginx.https_url("/hello"),
        ]));
        assert_eq!(out.trim(), "2 200");
    }
    let run = tracer.stop();
    let spans: Vec<&Value> = run.spans.iter().filter(|s| s["kind"] == "server").collect();
    assert_eq!(spans.len(), 3, "{:#?}\n{:?}", run.spans, run.stderr);
    for span in &spans {
        assert_eq!(span["protocol"], "http2");
        assert_eq!(span["name"], "GET /hello");
        assert_eq!(span["attributes"]["network.protocol.version"], "2");
        assert_eq!(span["attributes"]["http.response.status_code"], 200);
        assert_eq!(span["attributes"]["tls.protocol.name"], "tls");
    }
}

/// A thread-per-connection HTTP server (no `http.server`, which imports
/// `ssl` at start) that makes one HTTPS call through Python's `ssl` per
/// `/call*` request it serves, importing `ssl` (so loading OpenSSL) only at
/// its first call; `/dlopen?PATH` loads the library at PATH; other paths
/// are answered at once. With `private_lib`, the dynamic loader finds `libssl.so.3`
/// there first: a copy of OpenSSL that is not the system's (as a bundled
/// or container library would be).
fn late_openssl_app(upstream: u16, private_lib: Option<&std::path::Path>) -> servers::Service {
    let script = r#"
import os, socketserver, sys
PRIVATE = "{private}"
if PRIVATE and os.environ.get("LD_LIBRARY_PATH") != PRIVATE:
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, LD_LIBRARY_PATH=PRIVATE))

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            body = b"plain\n"
            path = line.split()[1]
            if path.startswith(b"/dlopen?"):
                import ctypes
                ctypes.CDLL(path[len(b"/dlopen?"):].decode())
            if path.startswith(b"/call"):
                import http.client, ssl
                conn = http.client.HTTPSConnection(
                    "127.0.0.1", {upstream}, context=ssl._create_unverified_context())
                conn.request("GET", "/hello")
                body = conn.getresponse().read()
                conn.close()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(("127.0.0.1", {port}), Handler).serve_forever()
"#
    .replace("{upstream}", &upstream.to_string())
    .replace(
        "{private}",
        &private_lib.map(|p| p.display().to_string()).unwrap_or_default(),
    );
    servers::python_script("late-openssl", &script)
}

/// The `libssl.so*` files `pid` has mapped.
fn mapped_libssl(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("libssl.so"))
        })
        .map(str::to_owned)
        .collect();
    libs.dedup();
    libs
}

/// The system's `libssl.so.3` (as `ldconfig -p` lists it).
fn system_libssl3() -> std::path::PathBuf {
    let out = run_ok(Command::new("ldconfig").arg("-p"));
    out.lines()
        .filter(|l| l.trim_start().starts_with("libssl.so.3 "))
        .filter_map(|l| l.rsplit("=> ").next())
        .map(|p| std::path::PathBuf::from(p.trim()))
        .next()
        .unwrap_or_else(|| panic!("no libssl.so.3 in ldconfig -p: {out}"))
}

/// `n` requests one at a time to the app, the second one after a pause
/// longer than the tracer's housekeeping period (1 s).
fn call_app_one_at_a_time(app: &servers::Service, n: usize) {
    for i in 0..n {
        let out = run_ok(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &app.url("/call"),
        ]));
        assert_eq!(out.trim(), "200");
        if i == 0 {
            thread::sleep(Duration::from_millis(1500));
        }
    }
}

/// The app's server spans in time order, each with the app's client spans
/// it contains in time; and the client spans contained by none or several.
fn client_spans_by_request<'a>(
    run: &'a common::TracerRun,
    process: &str,
) -> (Vec<(&'a Value, Vec<&'a Value>)>, Vec<&'a Value>) {
    let time = |s: &Value, key: &str| s[key].as_u64().unwrap_or_default();
    let mut requests: Vec<(&Value, Vec<&Value>)> = run
        .spans
        .iter()
        .filter(|s| s["process"] == process && s["kind"] == "server")
        .map(|s| (s, Vec::new()))
        .collect();
    requests.sort_by_key(|(s, _)| time(s, "start_time_unix_nano"));
    let mut stray = Vec::new();
    for client in run
        .spans
        .iter()
        .filter(|s| s["process"] == process && s["kind"] == "client")
    {
        let start = time(client, "start_time_unix_nano");
        let around: Vec<usize> = (0..requests.len())
            .filter(|&i| {
                let server = requests[i].0;
                time(server, "start_time_unix_nano") <= start
                    && start <= time(server, "end_time_unix_nano")
            })
            .collect();
        match around[..] {
            [i] => requests[i].1.push(client),
            _ => stray.push(client),
        }
    }
    (requests, stray)
}

/// Issue #13: "the first of 50 TLS client requests was not linked to its
/// caller". A server that loads OpenSSL at its first HTTPS call, after the
/// tracer attached, had the library hooked only at the next housekeeping
/// (every second), so the calls before that were never decrypted and the
/// first request had no client span. The system's libssl is now hooked at
/// attach: the uprobes belong to the file, so they are in place from the
/// process's first call on.
#[test]
fn https_calls_of_a_server_that_loads_openssl_after_attach_are_all_linked() {
    let nginx = servers::nginx_tls(false);
    let app = late_openssl_app(nginx.port, None);
    let tracer = Tracer::start(&["--pid", &app.pid().to_string()]);
    assert!(
        mapped_libssl(app.pid()).is_empty(),
        "OpenSSL loaded before attach"
    );
    let n = 50;
    call_app_one_at_a_time(&app, n);
    assert!(!mapped_libssl(app.pid()).is_empty(), "OpenSSL never loaded");
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let (requests, stray) = client_spans_by_request(&run, "python3");
    assert_eq!(requests.len(), n, "{:#?}\n{:?}", run.spans, run.stderr);
    assert!(stray.is_empty(), "{stray:#?}");
    let linked: Vec<usize> = requests
        .iter()
        .map(|(server, clients)| {
            clients
                .iter()
                .filter(|c| c["parent_span_id"] == server["span_id"])
                .count()
        })
        .collect();
    assert!(
        linked.iter().all(|&l| l == 1),
        "client spans linked per request (in order): {linked:?}\n{}",
        run.summary()
    );
    for (_, clients) in &requests {
        assert_tls_http(clients[0], 200, nginx.port);
    }
    assert_eq!(run.stats().tls_undecrypted, 0, "{}", run.summary());
}

/// The same with a copy of OpenSSL that is not the system's: nothing names
/// it before the process maps it, so it is hooked at the next housekeeping
/// and the calls made before that cannot be decrypted (a race no hook can
/// close: user space attaches uprobes only after reading the maps). What
/// was missed is counted, never guessed: the first request has no client
/// span and its TLS connection is counted as not decrypted (unless the
/// housekeeping happened to come between the load and the first call), and
/// every client span there is has the right parent.
#[test]
fn a_private_openssl_loaded_after_attach_misses_only_the_calls_before_its_hooks() {
    let nginx = servers::nginx_tls(false);
    let lib = common::TempDir::new("private-libssl");
    std::fs::copy(system_libssl3(), lib.path().join("libssl.so.3")).expect("copy libssl");
    let app = late_openssl_app(nginx.port, Some(lib.path()));
    let tracer = Tracer::start(&["--pid", &app.pid().to_string()]);
    assert!(
        mapped_libssl(app.pid()).is_empty(),
        "OpenSSL loaded before attach"
    );
    let n = 50;
    call_app_one_at_a_time(&app, n);
    let private = lib.path().join("libssl.so.3").display().to_string();
    assert_eq!(mapped_libssl(app.pid()), [private], "not the private copy");
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let (requests, stray) = client_spans_by_request(&run, "python3");
    assert_eq!(requests.len(), n, "{:#?}\n{:?}", run.spans, run.stderr);
    assert!(stray.is_empty(), "{stray:#?}");
    for (i, (server, clients)) in requests.iter().enumerate() {
        for client in clients {
            assert_eq!(
                client["parent_span_id"], server["span_id"],
                "request {i}: {client:#}"
            );
        }
        if i > 0 {
            assert_eq!(clients.len(), 1, "request {i}: {}", run.summary());
        }
    }
    let first_missed = requests[0].1.is_empty();
    let undecrypted = run.stats().tls_undecrypted;
    eprintln!(
        "private OpenSSL: first call decrypted: {}; {}",
        !first_missed,
        run.summary()
    );
    assert_eq!(undecrypted, u64::from(first_missed), "{}", run.summary());
}

/// The descriptor numbers `pid` has open: the fewest of a few looks, so
/// that one a thread holds for a moment is not counted.
fn open_fds(pid: u32) -> Vec<usize> {
    (0..5)
        .map(|_| {
            thread::sleep(Duration::from_millis(20));
            let mut fds: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("fd dir")
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            fds.sort_unstable();
            fds
        })
        .min_by_key(Vec::len)
        .unwrap_or_default()
}

fn curl_status(url: &str) -> String {
    run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\n", url]))
        .trim()
        .to_owned()
}

/// Lowers the soft descriptor limit of `pid` so that exactly `room` more
/// descriptors can be opened. `RLIMIT_NOFILE` bounds descriptor numbers,
/// not their count: a new descriptor takes the lowest free number, which
/// must be below the limit, so the limit is placed after the `room`-th
/// free number. Descriptors numbered above it (one inherited from whoever
/// started the test, say) neither count nor leave room.
fn leave_descriptors(pid: u32, room: usize) {
    let open = open_fds(pid);
    let limit = (0..)
        .filter(|fd| open.binary_search(fd).is_err())
        .nth(room - 1)
        .expect("a free descriptor number")
        + 1;
    run_ok(Command::new("prlimit").args([
        "--pid",
        &pid.to_string(),
        &format!("--nofile={limit}:"),
    ]));
}

/// Waits until the tracer has logged `n` hook errors.
fn wait_for_hook_errors(tracer: &Tracer, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let errors: Vec<String> = tracer
            .stderr_so_far()
            .into_iter()
            .filter(|l| l.contains("hooking TLS in process"))
            .collect();
        if errors.len() >= n {
            return errors;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {n} hook errors: {:?}",
            tracer.stderr_so_far()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Issue #13 part 2: hooks that fail after attach are counted and the run
/// goes on, with the spans before and after. Provoked for real: the
/// tracer's descriptor limit is lowered (`prlimit`) to leave room for a
/// few more, then the traced app loads an OpenSSL the tracer has not
/// hooked yet, and at the next housekeeping a uprobe attach fails with
/// EMFILE. Each attach keeps one descriptor, its link, and needs a second
/// for the perf event while the link is made; attaching `SSL_write`'s
/// entry and return probes, then `SSL_write_ex`'s, the k-th attach fails
/// with room for k. Twice:
///
/// - room for 4: the return probe on `SSL_write_ex` fails, its entry probe
///   attached. That library is the one Python's `ssl` then uses for every
///   HTTPS call: an entry probe left without its return probe made the
///   calling thread's next socket syscalls, the app's plain HTTP response
///   among them, pass for ciphertext, so the server spans after the error
///   lost their responses. The library's probes are now all detached.
/// - room for 3, another copy loaded with `dlopen`: the entry probe on
///   `SSL_write_ex` fails, which used to be taken for a missing symbol:
///   not counted, the library left half hooked.
#[test]
fn hook_errors_after_attach_are_counted_and_tracing_goes_on() {
    let nginx = servers::nginx_tls(false);
    let libs = common::TempDir::new("unhookable-libssl");
    for copy in ["first", "second"] {
        std::fs::create_dir(libs.path().join(copy)).expect("lib dir");
        std::fs::copy(system_libssl3(), libs.path().join(copy).join("libssl.so.3"))
            .expect("copy libssl");
    }
    let app = late_openssl_app(nginx.port, Some(&libs.path().join("first")));
    let tracer = Tracer::start(&["--pid", &app.pid().to_string()]);
    for _ in 0..3 {
        assert_eq!(curl_status(&app.url("/before")), "200");
    }
    leave_descriptors(tracer.pid(), 4);
    // Loads the first copy (Python's `ssl`); the next housekeeping fails.
    assert_eq!(curl_status(&app.url("/call/load")), "200");
    let errors = wait_for_hook_errors(&tracer, 1);
    assert!(
        errors[0].contains("return probe on SSL_write_ex"),
        "{errors:?}"
    );
    for _ in 0..3 {
        assert_eq!(curl_status(&app.url("/call/after")), "200");
        assert_eq!(curl_status(&app.url("/after")), "200");
    }
    leave_descriptors(tracer.pid(), 3);
    let second = libs.path().join("second/libssl.so.3");
    assert_eq!(
        curl_status(&app.url(&format!("/dlopen?{}", second.display()))),
        "200"
    );
    let errors = wait_for_hook_errors(&tracer, 2);
    assert!(
        errors[1].contains("entry probe on SSL_write_ex"),
        "{errors:?}"
    );
    assert_eq!(curl_status(&app.url("/after")), "200");
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.stats().hook_errors, 2, "{}", run.summary());
    let servers: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["process"] == "python3" && s["kind"] == "server")
        .collect();
    let complete = |name: &str| {
        servers
            .iter()
            .filter(|s| s["name"] == name)
            .filter(|s| s["attributes"]["http.response.status_code"] == 200)
            .count()
    };
    assert_eq!(complete("GET /before"), 3, "{servers:#?}");
    assert_eq!(complete("GET /call/load"), 1, "{servers:#?}");
    assert_eq!(complete("GET /call/after"), 3, "{servers:#?}");
    assert_eq!(complete("GET /after"), 4, "{servers:#?}");
    assert_eq!(servers.len(), 12, "{servers:#?}");
    // Nothing of the library that failed is hooked: its HTTPS calls are
    // seen and counted, not half decrypted.
    let clients = run.spans.iter().filter(|s| s["kind"] == "client").count();
    assert_eq!(clients, 0, "{:#?}", run.spans);
    assert_eq!(run.stats().tls_undecrypted, 4, "{}", run.summary());
}

/// Ids of the maps the process `pid` holds, from `/proc/PID/fdinfo`.
fn map_ids_of(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("fdinfo")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The u64 keys of the tracer's map `name`, read with bpftool.
fn map_keys(tracer_pid: u32, name: &str) -> Vec<u64> {
    let id = map_ids_of(tracer_pid)
        .into_iter()
        .find(|id| {
            let out =
                run_ok(Command::new("bpftool").args(["map", "show", "id", &id.to_string(), "-j"]));
            serde_json::from_str::<Value>(&out).is_ok_and(|m| m["name"] == name)
        })
        .unwrap_or_else(|| panic!("the tracer holds no map {name}"));
    let out = run_ok(Command::new("bpftool").args(["map", "dump", "id", &id.to_string(), "-j"]));
    let entries: Value = serde_json::from_str(&out).expect("bpftool map dump JSON");
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| match &entry["key"] {
            // Without BTF: the key's bytes, in hex.
            Value::Array(bytes) => bytes.iter().rev().fold(0, |key, byte| {
                let byte = byte
                    .as_str()
                    .and_then(|b| b.strip_prefix("0x"))
                    .unwrap_or("0");
                key << 8 | u64::from_str_radix(byte, 16).expect("hex byte")
            }),
            key => key.as_u64().unwrap_or_else(|| panic!("key {key}")),
        })
        .collect()
}

/// `SSL_IN_FLIGHT` holds a TLS call between its uprobe and its uretprobe,
/// per thread. A thread that dies inside the call never reaches the
/// uretprobe; its entry is removed when the thread exits
/// (`sched_process_exit`), else dead threads' calls would pile up until the
/// map is full and no TLS call could be traced. Here two threads of a
/// traced Python client block in `SSL_read_ex` (nginx waits for the rest of
/// a request that never comes); one of them is ended inside the call (its
/// SIGUSR1 handler is `pthread_exit`) while the process goes on, then the
/// whole process is killed.
#[test]
fn a_thread_that_dies_inside_an_ssl_call_leaves_no_call_in_flight() {
    let nginx = servers::nginx_tls(false);
    let dir = common::TempDir::new("ssl-in-flight");
    let gate = |name: &str| dir.path().join(name).display().to_string();
    let script = r#"
import ctypes, os, signal, socket, ssl, sys, threading, time
def wait_for(name):
    while not os.path.exists(name):
        time.sleep(0.02)
libc = ctypes.CDLL(None)
libc.signal.restype = ctypes.c_void_p
libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
# The C handler is pthread_exit itself: a thread signalled inside a
# blocking call ends right there, and its process goes on.
libc.signal(signal.SIGUSR1, ctypes.cast(libc.pthread_exit, ctypes.c_void_p))
wait_for("{go}")
readers = []
def reader():
    s = ssl._create_unverified_context().wrap_socket(
        socket.create_connection(("127.0.0.1", {port})))
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # headers never end
    readers.append((threading.get_ident(), threading.get_native_id()))
    s.recv(100)  # blocks inside SSL_read_ex
for _ in range(2):
    threading.Thread(target=reader, daemon=True).start()
while len(readers) < 2:
    time.sleep(0.01)
print("readers", readers[0][1], readers[1][1], flush=True)
wait_for("{end_one}")
signal.pthread_kill(readers[0][0], signal.SIGUSR1)
while os.path.exists("/proc/self/task/%d" % readers[0][1]):
    time.sleep(0.01)
print("ended", flush=True)
time.sleep(60)
"#
    .replace("{go}", &gate("go"))
    .replace("{end_one}", &gate("end-one"))
    .replace("{port}", &nginx.port.to_string());
    let mut client = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python client");
    let pid = client.id();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        client.stdout.take().expect("stdout"),
    ));
    let mut next_line = || {
        lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("client {pid} ended early"))
    };
    let tracer = Tracer::start(&["--pid", &pid.to_string()]);
    std::fs::write(gate("go"), "").expect("go");
    let readers: Vec<u32> = next_line()
        .split_whitespace()
        .skip(1)
        .map(|tid| tid.parse().expect("tid"))
        .collect();
    let key = |tid: u32| u64::from(pid) << 32 | u64::from(tid);
    let (first, second) = (key(readers[0]), key(readers[1]));
    // Both calls are in flight (else the test would prove nothing).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let keys = map_keys(tracer.pid(), "SSL_IN_FLIGHT");
        if keys.contains(&first) && keys.contains(&second) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "calls of {readers:?} not in flight: {keys:x?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // One thread ends inside SSL_read_ex; its process lives on.
    std::fs::write(gate("end-one"), "").expect("end-one");
    assert_eq!(next_line(), "ended");
    assert!(std::path::Path::new(&format!("/proc/{pid}/task/{}", readers[1])).exists());
    let keys = map_keys(tracer.pid(), "SSL_IN_FLIGHT");
    assert!(!keys.contains(&first), "dead thread's call left: {keys:x?}");
    assert!(keys.contains(&second), "live thread's call gone: {keys:x?}");
    // The whole process is killed with its other call in flight.
    client.kill().expect("kill client");
    client.wait().expect("client reaped");
    let keys = map_keys(tracer.pid(), "SSL_IN_FLIGHT");
    assert!(
        keys.iter().all(|k| k >> 32 != u64::from(pid)),
        "calls of killed process {pid} left: {keys:x?}"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
}
