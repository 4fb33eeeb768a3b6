//! TLS of event loops (issue #16 part 1): Node.js and Python asyncio
//! decrypt from memory BIOs, so no socket syscall happens inside their SSL
//! calls; user space ties each `SSL *` to the socket whose ciphertext the
//! thread moved next to the call. Real `node` (OpenSSL linked into the
//! executable) and `python3` (the system libssl) as servers and clients.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{free_port, servers, wait_for_port, GatedClient, Tracer, TracerRun};
use serde_json::Value;

/// An `https` server and an HTTP/2 (`http2.createSecureServer`) one.
const NODE_SERVERS: &str = r"
const fs = require('fs'), https = require('https'), http2 = require('http2');
const [cert, key, port, h2port] = process.argv.slice(2);
const tls = {cert: fs.readFileSync(cert), key: fs.readFileSync(key)};
const answer = (req, res) => {
  res.writeHead(req.url === '/missing' ? 404 : 200, {'content-type': 'text/plain'});
  res.end('node ' + req.url + '\n');
};
https.createServer(tls, answer).listen(Number(port), '127.0.0.1');
http2.createSecureServer(tls, answer).listen(Number(h2port), '127.0.0.1');
";

/// HTTP/1.1 over `asyncio.start_server(ssl=...)`, keep-alive.
const ASYNCIO_SERVER: &str = r#"
import asyncio, ssl, sys
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1]
            body = b"asyncio " + path + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[3]), ssl=ctx)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

fn spans_of<'a>(run: &'a TracerRun, process: &str, kind: &str) -> Vec<&'a Value> {
    run.spans
        .iter()
        .filter(|s| s["process"] == process && s["kind"] == kind)
        .collect()
}

/// Every TLS call was tied to its socket and every connection decrypted.
fn assert_all_decrypted(run: &TracerRun) {
    let stats = run.stats();
    assert_eq!(stats.lost["tls_socket_unknown"], 0, "{}", run.summary());
    assert_eq!(stats.tls_undecrypted, 0, "{}", run.summary());
    assert_eq!(stats.parser_desyncs, 0, "{}", run.summary());
}

fn assert_tls(spans: &[&Value], protocol: &str) {
    for span in spans {
        assert_eq!(span["protocol"], protocol, "{span:#}");
        assert_eq!(span["attributes"]["tls.protocol.name"], "tls", "{span:#}");
    }
}

/// The client calls of `process` in `run`: `/hello` three times and `/fail`
/// once, all to nginx on `port`, decrypted.
fn assert_three_hellos_and_a_fail(run: &TracerRun, process: &str, port: u16) {
    assert!(run.exit_ok, "{:?}", run.stderr);
    let calls = spans_of(run, process, "client");
    assert_eq!(
        common::names_and_statuses(&calls),
        [
            "GET /fail 503",
            "GET /hello 200",
            "GET /hello 200",
            "GET /hello 200"
        ],
        "{:#?}",
        run.spans
    );
    assert_tls(&calls, "http");
    for call in &calls {
        assert_eq!(call["attributes"]["server.port"], port, "{call:#}");
    }
    assert_all_decrypted(run);
}

fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    path.display().to_string()
}

#[test]
fn node_https_and_http2_servers_are_decrypted() {
    let dir = common::TempDir::new("node-servers");
    let (cert, key) = servers::self_signed_cert(dir.path());
    let (port, h2port) = (free_port(), free_port());
    let server = servers::spawn_service(
        Command::new("node")
            .arg(script(dir.path(), "servers.js", NODE_SERVERS))
            .args([&cert, &key])
            .args([port.to_string(), h2port.to_string()]),
        port,
    );
    wait_for_port(h2port, Duration::from_secs(10));
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    let url = |port: u16, path: &str| format!("https://127.0.0.1:{port}{path}");
    // Two requests on one connection, then two connections of their own.
    assert_eq!(
        common::curl_statuses(&[], &[&url(port, "/a"), &url(port, "/missing")]),
        "200\n404\n"
    );
    for path in ["/b", "/c"] {
        assert_eq!(common::curl_statuses(&[], &[&url(port, path)]), "200\n");
    }
    assert_eq!(
        common::curl_statuses(&["--http2"], &[&url(h2port, "/h2a"), &url(h2port, "/h2b")]),
        "200\n200\n"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let served = spans_of(&run, "node", "server");
    let http1: Vec<&Value> = served
        .iter()
        .copied()
        .filter(|s| s["attributes"]["server.port"] == port)
        .collect();
    let http2: Vec<&Value> = served
        .iter()
        .copied()
        .filter(|s| s["attributes"]["server.port"] == h2port)
        .collect();
    assert_eq!(
        common::names_and_statuses(&http1),
        ["GET /a 200", "GET /b 200", "GET /c 200", "GET /missing 404"],
        "{:#?}",
        run.spans
    );
    assert_eq!(
        common::names_and_statuses(&http2),
        ["GET /h2a 200", "GET /h2b 200"]
    );
    assert_tls(&http1, "http");
    assert_tls(&http2, "http2");
    assert_eq!(served.len(), 6, "{served:#?}");
    assert_all_decrypted(&run);
}

/// `--comm node`: a Node.js server started after the tracer is hooked when
/// its exec is seen, and its requests decrypted from then on.
#[test]
fn node_https_server_started_after_the_tracer_is_decrypted() {
    let dir = common::TempDir::new("node-late");
    let (cert, key) = servers::self_signed_cert(dir.path());
    let (port, h2port) = (free_port(), free_port());
    let tracer = Tracer::start(&["--comm", "node", "-v"]);
    let server = servers::spawn_service(
        Command::new("node")
            .arg(script(dir.path(), "servers.js", NODE_SERVERS))
            .args([&cert, &key])
            .args([port.to_string(), h2port.to_string()]),
        port,
    );
    let hooked = format!("OpenSSL functions in /proc/{}/exe", server.pid());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tracer
        .stderr_so_far()
        .iter()
        .any(|line| line.contains(&hooked))
    {
        assert!(Instant::now() < deadline, "node not hooked within 20 s");
        thread::sleep(Duration::from_millis(100));
    }
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    assert_eq!(
        common::curl_statuses(&[], &[&url("/late"), &url("/missing")]),
        "200\n404\n"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let served: Vec<&Value> = spans_of(&run, "node", "server")
        .into_iter()
        .filter(|s| s["pid"] == server.pid())
        .collect();
    assert_eq!(
        common::names_and_statuses(&served),
        ["GET /late 200", "GET /missing 404"],
        "{:#?}",
        run.spans
    );
    assert_tls(&served, "http");
    assert_all_decrypted(&run);
}

#[test]
fn node_https_client_is_decrypted() {
    let nginx = servers::nginx_tls(false);
    // Three requests on one kept-alive connection, then one on a new one.
    let client = GatedClient::spawn_node(&format!(
        r"
const https = require('https');
const agent = new https.Agent({{keepAlive: true, maxSockets: 1}});
const get = (path, options, next) => https.get(
  {{host: '127.0.0.1', port: {port}, path, rejectUnauthorized: false, ...options}},
  res => {{ res.resume(); res.on('end', next); }});
get('/hello', {{agent}}, () => get('/hello?2', {{agent}}, () => get('/fail', {{agent}}, () => {{
  agent.destroy();
  get('/hello?new', {{agent: false}}, () => console.log('done'));
}})));
",
        port = nginx.port
    ));
    let tracer = Tracer::start(&["--pid", &client.pid().to_string()]);
    assert!(client.run().contains("done"));
    assert_three_hellos_and_a_fail(&tracer.stop(), "node", nginx.port);
}

/// An asyncio TLS client (`asyncio.open_connection(ssl=...)`: a memory
/// BIO): GETs `kept_alive` on one connection, then `fresh` on a new one.
fn asyncio_client(port: u16, kept_alive: &[&str], fresh: &str) -> GatedClient {
    let paths: Vec<String> = kept_alive.iter().map(|p| format!("b{p:?}")).collect();
    GatedClient::spawn(&format!(
        r#"
import asyncio, ssl
async def exchange(reader, writer, path):
    writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
async def main():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", {port}, ssl=ctx)
    for path in ({paths},):
        await exchange(reader, writer, path)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", {port}, ssl=ctx)
    await exchange(reader, writer, b{fresh:?})
    writer.close()
asyncio.run(main())
print("done")
"#,
        paths = paths.join(", "),
    ))
}

#[test]
fn asyncio_tls_client_of_nginx_is_decrypted() {
    let nginx = servers::nginx_tls(false);
    let client = asyncio_client(nginx.port, &["/hello", "/fail", "/hello"], "/hello");
    let tracer = Tracer::start(&["--pid", &client.pid().to_string()]);
    assert!(client.run().contains("done"));
    assert_three_hellos_and_a_fail(&tracer.stop(), "python3", nginx.port);
}

#[test]
fn asyncio_tls_server_and_client_are_decrypted_and_linked() {
    let dir = common::TempDir::new("asyncio");
    let (cert, key) = servers::self_signed_cert(dir.path());
    let port = free_port();
    let server = servers::spawn_service(
        Command::new("/usr/bin/python3")
            .arg(script(dir.path(), "server.py", ASYNCIO_SERVER))
            .args([&cert, &key])
            .arg(port.to_string()),
        port,
    );
    let client = asyncio_client(port, &["/one", "/two", "/three"], "/again");
    let tracer = Tracer::start(&[
        "--pid",
        &server.pid().to_string(),
        "--pid",
        &client.pid().to_string(),
    ]);
    assert!(client.run().contains("done"));
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let served: Vec<&Value> = spans_of(&run, "python3", "server");
    let calls: Vec<&Value> = spans_of(&run, "python3", "client");
    let expected = [
        "GET /again 200",
        "GET /one 200",
        "GET /three 200",
        "GET /two 200",
    ];
    assert_eq!(
        common::names_and_statuses(&served),
        expected,
        "{:#?}",
        run.spans
    );
    assert_eq!(
        common::names_and_statuses(&calls),
        expected,
        "{:#?}",
        run.spans
    );
    assert_tls(&served, "http");
    assert_tls(&calls, "http");
    // Both ends traced: each server span is the child of its client span.
    for span in &served {
        let parent = calls
            .iter()
            .find(|c| c["span_id"] == span["parent_span_id"])
            .unwrap_or_else(|| panic!("no client parent for {span:#}"));
        assert_eq!(parent["name"], span["name"]);
        assert_eq!(parent["trace_id"], span["trace_id"]);
    }
    assert_all_decrypted(&run);
}
