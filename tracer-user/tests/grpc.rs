//! HTTP/2 and gRPC end to end: the real tracer and kernel programs against
//! a Python grpcio server and client, and nginx serving h2c to curl, on
//! 127.0.0.1.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    fs,
    io::Write as _,
    process::{Command, Stdio},
};

use common::{run_ok, servers, TempDir, Tracer};
use serde_json::Value;

/// The interpreter the test dependencies install grpcio for (Debian's
/// python3-grpcio).
const PYTHON: &str = "/usr/bin/python3";

/// A gRPC service without generated stubs: generic handlers on raw bytes
/// (the tracer never looks at messages).
const GRPC_SERVER: &str = r#"
import grpc
from concurrent import futures

def say_hello(request, context):
    return b"hello " + request

def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such greeting")

def crash(request, context):
    context.abort(grpc.StatusCode.INTERNAL, "boom")

def stream_hellos(request, context):
    for i in range(3):
        yield b"part %d" % i

handlers = {
    "SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Crash": grpc.unary_unary_rpc_method_handler(crash),
    "StreamHellos": grpc.unary_stream_rpc_method_handler(stream_hellos),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.v1.Greeter", handlers),))
server.add_insecure_port("127.0.0.1:{port}")
server.start()
server.wait_for_termination()
"#;

/// Waits for a line on stdin (so a tracer can attach first), makes the
/// calls on one channel, prints one line per call.
const GRPC_CLIENT: &str = r#"
import sys, grpc
sys.stdin.readline()
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
metadata = [("authorization", "Bearer grpc-sekrit-token")]
def call(method, request, streaming=False):
    path = "/demo.v1.Greeter/" + method
    try:
        if streaming:
            replies = list(channel.unary_stream(path)(request, metadata=metadata))
            print("OK", len(replies))
        else:
            channel.unary_unary(path)(request, metadata=metadata)
            print("OK")
    except grpc.RpcError as error:
        print(error.code().name)
for name in (b"alice", b"bob", b"carol"):
    call("SayHello", name)
call("Fail", b"x")
call("Crash", b"x")
call("StreamHellos", b"x", streaming=True)
channel.close()
"#;

/// What the client prints for its calls.
const CLIENT_OUTPUT: [&str; 6] = ["OK", "OK", "OK", "NOT_FOUND", "INTERNAL", "OK 3"];

/// (name, grpc status, span status) of each call, in order.
const EXPECTED_CALLS: [(&str, i64); 6] = [
    ("demo.v1.Greeter/SayHello", 0),
    ("demo.v1.Greeter/SayHello", 0),
    ("demo.v1.Greeter/SayHello", 0),
    ("demo.v1.Greeter/Fail", 5),
    ("demo.v1.Greeter/Crash", 13),
    ("demo.v1.Greeter/StreamHellos", 0),
];

fn require_grpcio() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{PYTHON} lacks grpcio: run `cargo xtask setup --test-deps`"
    );
}

/// A client process, started and waiting for `go`.
struct Client {
    child: std::process::Child,
    _dir: TempDir,
}

impl Client {
    fn start(port: u16) -> Client {
        let dir = TempDir::new("grpc-client");
        let script = dir.path().join("client.py");
        fs::write(&script, GRPC_CLIENT).expect("client script");
        let child = Command::new(PYTHON)
            .arg("-u")
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gRPC client");
        Client { child, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the client make its calls; returns what it printed.
    fn go(mut self) -> Vec<String> {
        let mut stdin = self.child.stdin.take().expect("client stdin");
        stdin.write_all(b"go\n").expect("signal the client");
        drop(stdin);
        let out = self.child.wait_with_output().expect("client output");
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn of_kind<'a>(spans: &'a [Value], kind: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["kind"] == kind).collect()
}

fn check_calls(spans: &[&Value], kind: &str) {
    let calls: Vec<(String, i64)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["attributes"]["rpc.grpc.status_code"]
                    .as_i64()
                    .unwrap_or(-1),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = EXPECTED_CALLS
        .iter()
        .map(|(n, c)| ((*n).to_owned(), *c))
        .collect();
    assert_eq!(calls, expected, "{spans:#?}");
    for span in spans {
        let attrs = &span["attributes"];
        assert_eq!(span["protocol"], "grpc");
        assert_eq!(attrs["rpc.system"], "grpc");
        assert_eq!(attrs["rpc.service"], "demo.v1.Greeter");
        assert_eq!(attrs["network.protocol.name"], "http");
        assert_eq!(attrs["network.protocol.version"], "2");
        assert!(attrs.get("tracer.response.missing").is_none(), "{span:#}");
        assert!(span["duration_ns"]
            .as_u64()
            .is_some_and(|d| d > 0 && d < 5_000_000_000));
    }
    let status = |i: usize| spans[i]["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status(0), "ok");
    assert_eq!(status(4), "error", "INTERNAL is an error on both sides");
    // NOT_FOUND is the caller's problem: an error on the client span only.
    assert_eq!(status(3), if kind == "client" { "error" } else { "ok" });
}

fn no_secrets(spans: &[Value]) {
    let everything = spans.iter().map(Value::to_string).collect::<String>();
    for secret in ["grpc-sekrit-token", "Bearer", "no such greeting", "boom"] {
        assert!(!everything.contains(secret), "{secret} leaked into spans");
    }
}

#[test]
fn grpc_server_spans_per_call() {
    require_grpcio();
    let server = servers::python_script("grpc-server", GRPC_SERVER);
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    let client = Client::start(server.port);
    assert_eq!(client.go(), CLIENT_OUTPUT);
    let run = tracer.stop();
    assert!(run.exit_ok, "tracer failed: {:?}", run.stderr);
    let spans = of_kind(&run.spans, "server");
    assert_eq!(spans.len(), EXPECTED_CALLS.len(), "{:#?}", run.spans);
    assert_eq!(
        run.spans.len(),
        spans.len(),
        "only server spans: {:#?}",
        run.spans
    );
    check_calls(&spans, "server");
    for span in &spans {
        assert_eq!(span["attributes"]["server.port"], server.port);
    }
    no_secrets(&run.spans);
}

#[test]
fn grpc_client_spans_per_call() {
    require_grpcio();
    let server = servers::python_script("grpc-server", GRPC_SERVER);
    let client = Client::start(server.port);
    let tracer = Tracer::start(&["--pid", &client.pid().to_string()]);
    assert_eq!(client.go(), CLIENT_OUTPUT);
    let run = tracer.stop();
    assert!(run.exit_ok, "tracer failed: {:?}", run.stderr);
    let spans = of_kind(&run.spans, "client");
    assert_eq!(spans.len(), EXPECTED_CALLS.len(), "{:#?}", run.spans);
    assert_eq!(
        run.spans.len(),
        spans.len(),
        "only client spans: {:#?}",
        run.spans
    );
    check_calls(&spans, "client");
    for span in &spans {
        assert_eq!(span["attributes"]["server.port"], server.port);
    }
    no_secrets(&run.spans);
}

/// nginx serving HTTP/2 over cleartext with prior knowledge (h2c).
fn nginx_h2c() -> servers::Service {
    servers::nginx_with("nginx-h2c", 1, |root, port| {
        format!(
            r#"    server {{
        listen 127.0.0.1:{port} http2;
        root {root}/www;
        location = /hello {{ default_type text/plain; return 200 "hello\n"; }}
        location = /teapot {{ return 418; }}
        location = /fail {{ return 503; }}
    }}"#,
            root = root.display(),
        )
    })
}

fn curl_h2(args: &[&str]) -> String {
    let out = run_ok(
        Command::new("curl")
            .args([
                "-sS",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}\n",
            ])
            .args(args),
    );
    out.trim().to_owned()
}

#[test]
fn http2_nginx_server_spans_for_curl() {
    let features = run_ok(Command::new("curl").arg("-V"));
    assert!(
        features.contains("HTTP2"),
        "curl without HTTP/2: {features}"
    );
    let nginx = nginx_h2c();
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    for _ in 0..3 {
        assert_eq!(curl_h2(&[&nginx.url("/hello")]), "2 200");
    }
    assert_eq!(curl_h2(&[&nginx.url("/index.html?token=qwerty")]), "2 200");
    assert_eq!(curl_h2(&[&nginx.url("/fail")]), "2 503");
    assert_eq!(curl_h2(&[&nginx.url("/teapot")]), "2 418");
    assert_eq!(curl_h2(&["-I", &nginx.url("/index.html")]), "2 200");
    assert_eq!(
        curl_h2(&[
            "-H",
            "Authorization: Bearer sekrit-token",
            &nginx.url("/hello")
        ]),
        "2 200"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "tracer failed: {:?}", run.stderr);
    let spans = of_kind(&run.spans, "server");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /hello",
            "GET /hello",
            "GET /hello",
            "GET /index.html",
            "GET /fail",
            "GET /teapot",
            "HEAD /index.html",
            "GET /hello"
        ],
        "{:#?}",
        run.spans
    );
    for span in &spans {
        let attrs = &span["attributes"];
        assert_eq!(span["protocol"], "http2");
        assert_eq!(attrs["network.protocol.version"], "2");
        assert_eq!(attrs["server.port"], nginx.port);
        assert_eq!(span["process"], "nginx");
    }
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .copied()
            .unwrap_or(&Value::Null)
    };
    assert_eq!(
        by_name("GET /hello")["attributes"]["http.response.status_code"],
        200
    );
    assert_eq!(
        by_name("GET /hello")["attributes"]["http.response.body.size"],
        6
    );
    assert_eq!(by_name("GET /fail")["status"], "error");
    assert_eq!(
        by_name("GET /teapot")["status"],
        "ok",
        "4xx is not a server error"
    );
    assert_eq!(
        by_name("GET /index.html")["attributes"]["http.response.body.size"],
        38
    );
    assert!(by_name("GET /index.html")["attributes"]
        .get("url.query")
        .is_none());
    let everything = run.spans.iter().map(Value::to_string).collect::<String>();
    for secret in ["sekrit-token", "qwerty"] {
        assert!(!everything.contains(secret), "{secret} leaked into spans");
    }
    assert_eq!(run.stats().events_lost, 0, "{}", run.summary());
}

#[test]
fn http2_curl_client_spans_via_comm() {
    let nginx = nginx_h2c();
    let tracer = Tracer::start(&["--comm", "curl"]);
    for _ in 0..3 {
        assert_eq!(curl_h2(&[&nginx.url("/hello")]), "2 200");
    }
    assert_eq!(curl_h2(&[&nginx.url("/fail")]), "2 503");
    let run = tracer.stop();
    let spans = of_kind(&run.spans, "client");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        ["GET /hello", "GET /hello", "GET /hello", "GET /fail"],
        "{:#?}",
        run.spans
    );
    for span in &spans {
        assert_eq!(span["protocol"], "http2");
        assert_eq!(span["process"], "curl");
        assert_eq!(span["attributes"]["server.port"], nginx.port);
    }
    assert_eq!(spans[3]["status"], "error");
}
