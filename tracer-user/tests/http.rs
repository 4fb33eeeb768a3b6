//! HTTP/1.x end to end: the real tracer and kernel programs against nginx,
//! Python's http.server, curl and wrk on 127.0.0.1.

mod common;

use std::{process::Command, thread, time::Duration};

use common::{complete, run_ok, servers, Tracer};
use serde_json::Value;

fn curl(args: &[&str]) -> String {
    run_ok(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\n"])
            .args(args),
    )
}

fn server_spans(spans: &[Value]) -> Vec<&Value> {
    spans.iter().filter(|s| s["kind"] == "server").collect()
}

fn find<'a>(spans: &[&'a Value], name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .copied()
        .filter(|s| s["name"] == name)
        .collect()
}

#[test]
fn nginx_server_spans_for_each_curl_request() {
    let nginx = servers::nginx(1);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    for _ in 0..5 {
        assert_eq!(curl(&[&nginx.url("/hello")]).trim(), "200");
    }
    assert_eq!(curl(&[&nginx.url("/index.html")]).trim(), "200");
    assert_eq!(curl(&[&nginx.url("/teapot")]).trim(), "418");
    assert_eq!(curl(&[&nginx.url("/fail")]).trim(), "503");
    assert_eq!(curl(&[&nginx.url("/missing")]).trim(), "404");
    assert_eq!(curl(&[&nginx.url("/big.bin")]).trim(), "200");
    assert_eq!(curl(&["-I", &nginx.url("/index.html")]).trim(), "200");
    assert_eq!(
        curl(&["-d", "name=value&password=hunter2", &nginx.url("/echo")]).trim(),
        "200"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Authorization: Bearer sekrit-token",
            &nginx.url("/hello?api_key=qwerty")
        ])
        .trim(),
        "200"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "tracer failed: {:?}", run.stderr);
    let spans = server_spans(&run.spans);
    assert_eq!(spans.len(), 13, "one server span per request: {spans:#?}");

    let hello = find(&spans, "GET /hello");
    assert_eq!(hello.len(), 6);
    for span in &hello {
        let attrs = &span["attributes"];
        assert_eq!(attrs["http.request.method"], "GET");
        assert_eq!(attrs["url.path"], "/hello");
        assert_eq!(attrs["http.response.status_code"], 200);
        assert_eq!(attrs["http.response.body.size"], 6);
        assert_eq!(attrs["server.address"], "127.0.0.1");
        assert_eq!(attrs["server.port"], nginx.port);
        assert_eq!(attrs["client.address"], "127.0.0.1");
        assert!(attrs["client.port"].as_u64().is_some_and(|p| p > 0));
        assert_eq!(span["status"], "ok");
        assert_eq!(span["protocol"], "http");
        assert_eq!(span["process"], "nginx");
        assert!(span["duration_ns"]
            .as_u64()
            .is_some_and(|d| d > 0 && d < 1_000_000_000));
        assert_eq!(span["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(span["span_id"].as_str().map(str::len), Some(16));
    }
    let status_of =
        |name: &str| find(&spans, name)[0]["attributes"]["http.response.status_code"].clone();
    assert_eq!(status_of("GET /teapot"), 418);
    assert_eq!(
        find(&spans, "GET /teapot")[0]["status"],
        "ok",
        "4xx is not a server error"
    );
    assert_eq!(status_of("GET /fail"), 503);
    assert_eq!(find(&spans, "GET /fail")[0]["status"], "error");
    assert_eq!(status_of("GET /missing"), 404);
    let big = find(&spans, "GET /big.bin");
    assert_eq!(
        big[0]["attributes"]["http.response.body.size"], 200_000,
        "sendfile body counted"
    );
    assert_eq!(status_of("HEAD /index.html"), 200);
    let post = find(&spans, "POST /echo");
    assert_eq!(post[0]["attributes"]["http.request.body.size"], 27);

    let everything = run.spans.iter().map(Value::to_string).collect::<String>();
    for secret in ["hunter2", "sekrit-token", "qwerty", "api_key"] {
        assert!(!everything.contains(secret), "{secret} leaked into spans");
    }
    assert_eq!(run.stats().events_lost, 0, "{}", run.summary());
    common::wait_until_detached();
}

#[test]
fn keep_alive_connection_carries_several_requests() {
    let nginx = servers::nginx(1);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    // One curl, one connection, four requests.
    let urls = ["/hello", "/index.html", "/hello", "/teapot"].map(|p| nginx.url(p));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "%{http_code}\n"]);
    for url in &urls {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = run_ok(&mut cmd);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["200", "200", "200", "418"]
    );
    let run = tracer.stop();
    let spans = server_spans(&run.spans);
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        ["GET /hello", "GET /index.html", "GET /hello", "GET /teapot"]
    );
    let ports: Vec<&Value> = spans
        .iter()
        .map(|s| &s["attributes"]["client.port"])
        .collect();
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "same connection: {ports:?}"
    );
}

#[test]
fn nginx_under_wrk_every_completed_request_is_a_span() {
    let nginx = servers::nginx(1);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    let out = run_ok(Command::new("wrk").args(["-t1", "-c16", "-d5s", &nginx.url("/hello")]));
    let requests: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in")
                .map(|(n, _)| n.trim().parse().ok())
        })
        .flatten()
        .unwrap_or_else(|| panic!("no request count in wrk output: {out}"));
    let run = tracer.stop();
    let spans = complete(&run.spans);
    let hello = spans
        .iter()
        .filter(|s| {
            s["name"] == "GET /hello"
                && s["kind"] == "server"
                && s["attributes"]["http.response.status_code"] == 200
        })
        .count() as u64;
    eprintln!(
        "wrk completed {requests} requests; tracer emitted {hello} spans; {}",
        run.summary()
    );
    assert!(requests > 1000, "wrk made too few requests to judge: {out}");
    assert!(
        hello * 1000 >= requests * 999,
        "only {hello} spans for {requests} requests: {}",
        run.summary()
    );
    // wrk stops counting with up to one request in flight per connection.
    assert!(
        hello <= requests + 16,
        "{hello} spans for {requests} requests"
    );
    assert_eq!(spans.len() as u64, hello, "no other spans expected");
}

#[test]
fn python_http_server_spans() {
    let server = servers::python_http();
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    for _ in 0..3 {
        assert_eq!(curl(&[&server.url("/index.html")]).trim(), "200");
    }
    assert_eq!(curl(&[&server.url("/nope")]).trim(), "404");
    let run = tracer.stop();
    let spans = server_spans(&run.spans);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let index = find(&spans, "GET /index.html");
    assert_eq!(index.len(), 3);
    for span in index {
        assert_eq!(span["attributes"]["http.response.status_code"], 200);
        assert_eq!(span["attributes"]["http.response.body.size"], 20);
        assert_eq!(span["attributes"]["network.protocol.version"], "1.1");
        assert_eq!(span["process"], "python3");
    }
    assert_eq!(
        find(&spans, "GET /nope")[0]["attributes"]["http.response.status_code"],
        404
    );
}

#[test]
fn curl_client_spans_via_comm() {
    let nginx = servers::nginx(1);
    // curl starts after the tracer: --comm picks each new curl up at exec.
    let tracer = Tracer::start(&["--comm", "curl"]);
    for _ in 0..10 {
        assert_eq!(curl(&[&nginx.url("/hello")]).trim(), "200");
    }
    assert_eq!(curl(&[&nginx.url("/fail")]).trim(), "503");
    assert_eq!(curl(&[&nginx.url("/teapot")]).trim(), "418");
    let run = tracer.stop();
    let clients: Vec<&Value> = run.spans.iter().filter(|s| s["kind"] == "client").collect();
    assert_eq!(clients.len(), 12, "{clients:#?}");
    assert_eq!(run.spans.len(), 12, "only client spans: {:#?}", run.spans);
    let hello = find(&clients, "GET /hello");
    assert_eq!(hello.len(), 10);
    for span in &hello {
        assert_eq!(span["process"], "curl");
        assert_eq!(span["attributes"]["server.port"], nginx.port);
        assert_eq!(span["attributes"]["http.response.status_code"], 200);
        assert_eq!(span["status"], "ok");
    }
    assert_eq!(
        find(&clients, "GET /teapot")[0]["status"],
        "error",
        "4xx is a client error"
    );
    assert_eq!(find(&clients, "GET /fail")[0]["status"], "error");
}

/// A server that forks a child per connection: the children, forked after
/// the tracer attached, are traced too.
#[test]
fn children_forked_after_attach_are_traced() {
    let server = servers::python_script(
        "forking",
        r#"
import http.server, socketserver
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"forked\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ForkingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
Server(("127.0.0.1", {port}), Handler).serve_forever()
"#,
    );
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    for _ in 0..4 {
        assert_eq!(curl(&[&server.url("/work")]).trim(), "200");
    }
    let run = tracer.stop();
    let spans = server_spans(&run.spans);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for span in &spans {
        assert_eq!(span["name"], "GET /work");
        assert_ne!(span["pid"], server.pid(), "handled in a forked child");
    }
}

/// Each connection is served with a different pair of syscalls, so every
/// capture path of the kernel side is exercised against real bytes.
#[test]
fn every_socket_syscall_variant_is_captured() {
    let server = servers::python_script(
        "syscalls",
        r#"
import os, socket
variants = ["recv/send", "recvmsg/sendmsg", "readv/writev", "read/write", "recvfrom/sendto", "recv_into/sendall"]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port}))
srv.listen(16)
n = 0
while True:
    conn, _ = srv.accept()
    variant = variants[n % len(variants)]
    n += 1
    fd = conn.fileno()
    data = b""
    while b"\r\n\r\n" not in data:
        if variant == "recvmsg/sendmsg":
            chunk = conn.recvmsg(4096)[0]
        elif variant == "readv/writev":
            buf = bytearray(4096)
            got = os.readv(fd, [buf])
            chunk = bytes(buf[:got])
        elif variant == "read/write":
            chunk = os.read(fd, 4096)
        elif variant == "recvfrom/sendto":
            chunk = conn.recvfrom(4096)[0]
        elif variant == "recv_into/sendall":
            buf = bytearray(4096)
            got = conn.recv_into(buf)
            chunk = bytes(buf[:got])
        else:
            chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    body = variant.encode() + b"\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    if variant == "recvmsg/sendmsg":
        conn.sendmsg([head, body])
    elif variant == "readv/writev":
        os.writev(fd, [head, body])
    elif variant == "read/write":
        os.write(fd, head + body)
    elif variant == "recvfrom/sendto":
        conn.sendto(head + body, ("127.0.0.1", 1))
    elif variant == "recv_into/sendall":
        conn.sendall(head + body)
    else:
        conn.send(head + body)
    conn.close()
"#,
    );
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    for i in 0..6 {
        assert_eq!(curl(&[&server.url(&format!("/v{i}"))]).trim(), "200");
    }
    let run = tracer.stop();
    let spans = server_spans(&run.spans);
    let mut names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["GET /v0", "GET /v1", "GET /v2", "GET /v3", "GET /v4", "GET /v5"],
        "{spans:#?}"
    );
    for span in &spans {
        assert_eq!(span["attributes"]["http.response.status_code"], 200);
        assert!(span["attributes"]["http.response.body.size"]
            .as_u64()
            .is_some_and(|n| n > 5));
    }
}

/// A keep-alive connection opened before the tracer started is traced from
/// its next request on.
#[test]
fn connection_open_before_start_is_traced_from_next_request() {
    let nginx = servers::nginx(1);
    let dir = common::TempDir::new("early");
    let go = dir.path().join("go");
    let script = format!(
        r#"
import http.client, os, time
conn = http.client.HTTPConnection("127.0.0.1", {port})
conn.request("GET", "/hello"); conn.getresponse().read()
while not os.path.exists("{go}"):
    time.sleep(0.05)
for path in ["/hello", "/index.html", "/teapot"]:
    conn.request("GET", path); conn.getresponse().read()
print("done")
"#,
        port = nginx.port,
        go = go.display()
    );
    let client = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client");
    thread::sleep(Duration::from_millis(500));
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    std::fs::write(&go, "").expect("signal the client");
    let out = client.wait_with_output().expect("client finished");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
    let run = tracer.stop();
    let names: Vec<&str> = server_spans(&run.spans)
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["GET /hello", "GET /index.html", "GET /teapot"]);
}
