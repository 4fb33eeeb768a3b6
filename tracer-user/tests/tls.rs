//! TLS: plaintext from OpenSSL-encrypted connections, read with uprobes on
//! the library, for servers (nginx) and clients (curl, Python's ssl).

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
