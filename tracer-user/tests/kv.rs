//! Redis, memcached and DNS end to end: the real tracer against
//! redis-server, memcached and dnsmasq with their own clients.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use common::{run_ok, servers, Tracer};
use serde_json::Value;

fn by_kind<'a>(spans: &'a [Value], kind: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["kind"] == kind).collect()
}

fn count_named(spans: &[&Value], name: &str) -> usize {
    spans.iter().filter(|s| s["name"] == name).count()
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    run_ok(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
    )
}

#[test]
fn redis_commands_from_server_side() {
    let redis = servers::redis();
    let tracer = Tracer::start(&["--pid", &redis.pid().to_string()]);
    redis_cli(redis.port, &["SET", "user:1", "s3cret-value"]);
    redis_cli(redis.port, &["GET", "user:1"]);
    redis_cli(redis.port, &["INCR", "counter"]);
    // WRONGTYPE error reply.
    redis_cli(redis.port, &["LPUSH", "user:1", "x"]);
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "server");
    // redis-cli sends COMMAND DOCS (or similar) first on some versions: count ours.
    assert_eq!(count_named(&spans, "SET"), 1, "{spans:#?}");
    assert_eq!(count_named(&spans, "GET"), 1);
    assert_eq!(count_named(&spans, "INCR"), 1);
    let lpush: Vec<&&Value> = spans.iter().filter(|s| s["name"] == "LPUSH").collect();
    assert_eq!(lpush.len(), 1);
    assert_eq!(lpush[0]["status"], "error");
    assert_eq!(
        lpush[0]["attributes"]["db.response.status_code"],
        "WRONGTYPE"
    );
    let set = spans.iter().find(|s| s["name"] == "SET").expect("SET span");
    assert_eq!(set["protocol"], "redis");
    assert_eq!(set["attributes"]["db.system.name"], "redis");
    assert_eq!(set["attributes"]["db.operation.name"], "SET");
    assert_eq!(set["attributes"]["db.query.text"], "SET ? ?");
    assert_eq!(set["attributes"]["server.port"], redis.port);
    let everything: String = run.spans.iter().map(Value::to_string).collect();
    assert!(!everything.contains("s3cret-value"), "values must not leak");
}

#[test]
fn redis_benchmark_pipelined_every_command_is_a_span() {
    let redis = servers::redis();
    let tracer = Tracer::start(&["--pid", &redis.pid().to_string()]);
    let n = 20_000;
    run_ok(Command::new("redis-benchmark").args([
        "-h",
        "127.0.0.1",
        "-p",
        &redis.port.to_string(),
        "-n",
        &n.to_string(),
        "-P",
        "16",
        "-c",
        "8",
        "-t",
        "set,get",
        "-q",
    ]));
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "server");
    let sets = count_named(&spans, "SET");
    let gets = count_named(&spans, "GET");
    eprintln!(
        "redis-benchmark -P 16: {sets} SET and {gets} GET spans for {n} each; {}",
        run.summary()
    );
    assert_eq!(sets, n, "{}", run.summary());
    assert_eq!(gets, n, "{}", run.summary());
    assert_eq!(run.stats().events_lost, 0);
}

#[test]
fn redis_client_side_via_comm() {
    let redis = servers::redis();
    let tracer = Tracer::start(&["--comm", "redis-cli"]);
    redis_cli(redis.port, &["SET", "k", "v"]);
    redis_cli(redis.port, &["GET", "k"]);
    redis_cli(redis.port, &["DEL", "k"]);
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "client");
    for name in ["SET", "GET", "DEL"] {
        assert_eq!(count_named(&spans, name), 1, "{name}: {spans:#?}");
    }
    assert!(spans.iter().all(|s| s["process"] == "redis-cli"));
    assert!(by_kind(&run.spans, "server").is_empty());
}

fn memcached_session(port: u16, script: &[u8], expect_end: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect memcached");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn.write_all(script).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(expect_end) {
        let n = conn.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "memcached closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn memcached_commands_from_server_side() {
    let mc = servers::memcached();
    let tracer = Tracer::start(&["--pid", &mc.pid().to_string()]);
    memcached_session(mc.port, b"set a 0 0 5\r\nhello\r\n", b"STORED\r\n");
    memcached_session(
        mc.port,
        b"set b 0 0 5 noreply\r\nworld\r\nget a b c\r\n",
        b"END\r\n",
    );
    memcached_session(mc.port, b"incr missing 1\r\n", b"NOT_FOUND\r\n");
    memcached_session(mc.port, b"delete a\r\n", b"DELETED\r\n");
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "server");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "set").count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "get").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "incr").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "delete").count(),
        1,
        "{names:?}"
    );
    let get = spans.iter().find(|s| s["name"] == "get").expect("get");
    assert_eq!(get["protocol"], "memcached");
    assert_eq!(get["attributes"]["db.system.name"], "memcached");
    assert_eq!(get["attributes"]["db.operation.batch.size"], 3);
    let everything: String = run.spans.iter().map(Value::to_string).collect();
    assert!(!everything.contains("hello") && !everything.contains("world"));
}

#[test]
fn dns_queries_from_dig_client_side() {
    let port = common::free_port();
    let dns = servers::dnsmasq_on(port);
    let tracer = Tracer::start(&["--comm", "dig"]);
    let dig = |name: &str, qtype: &str| {
        run_ok(Command::new("dig").args([
            "+short",
            "+tries=1",
            "+time=2",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
            qtype,
        ]))
    };
    assert_eq!(dig("www.example.test", "A").trim(), "10.1.2.3");
    assert_eq!(dig("www.example.test", "AAAA").trim(), "fd00::7");
    dig("nothing.invalid", "A");
    let run = tracer.stop();
    drop(dns);
    let spans = by_kind(&run.spans, "client");
    assert_eq!(spans.len(), 3, "{:#?}", run.spans);
    let a = spans
        .iter()
        .find(|s| s["name"] == "A www.example.test")
        .expect("A span");
    assert_eq!(a["protocol"], "dns");
    assert_eq!(a["attributes"]["dns.question.name"], "www.example.test");
    assert_eq!(a["attributes"]["dns.response.code"], "NOERROR");
    assert_eq!(a["attributes"]["server.port"], port);
    assert!(spans.iter().any(|s| s["name"] == "AAAA www.example.test"));
    let refused = spans
        .iter()
        .find(|s| s["name"] == "A nothing.invalid")
        .expect("third query");
    assert_eq!(refused["attributes"]["dns.response.code"], "REFUSED");
}

#[test]
fn dns_queries_from_dnsmasq_server_side() {
    let port = common::free_port();
    let dns = servers::dnsmasq_on(port);
    let tracer = Tracer::start(&["--pid", &dns.pid().to_string()]);
    for _ in 0..3 {
        run_ok(Command::new("dig").args([
            "+short",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            "api.example.test",
            "A",
        ]));
    }
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "server");
    assert_eq!(
        count_named(&spans, "A api.example.test"),
        3,
        "{:#?}",
        run.spans
    );
}

#[test]
fn memcached_client_side() {
    let mc = servers::memcached();
    let client = common::GatedClient::spawn(&format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}))
def ask(cmd, end):
    s.sendall(cmd)
    got = b""
    while not got.endswith(end):
        got += s.recv(4096)
ask(b"set k 0 0 3\r\nabc\r\n", b"STORED\r\n")
ask(b"get k\r\n", b"END\r\n")
ask(b"delete k\r\n", b"DELETED\r\n")
print("done")
"#,
        port = mc.port
    ));
    let tracer = Tracer::start(&["--pid", &client.pid().to_string()]);
    assert_eq!(client.run().trim(), "done");
    let run = tracer.stop();
    let spans = by_kind(&run.spans, "client");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["set", "get", "delete"], "{:#?}", run.spans);
    assert!(spans
        .iter()
        .all(|s| s["attributes"]["server.port"] == mc.port));
}

/// glibc's resolver sends the A and AAAA queries together with one
/// `sendmmsg`: both must become spans. The resolver only talks to port 53
/// of /etc/resolv.conf, so the client runs in a private mount namespace
/// whose resolv.conf points at a dnsmasq on 127.0.0.1:53.
#[test]
fn glibc_resolver_sendmmsg_queries_are_spans() {
    let dns = servers::dnsmasq_on(53);
    let dir = common::TempDir::new("resolv");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n",
    )
    .expect("resolv.conf");
    let tracer = Tracer::start(&["--comm", "getent"]);
    let out = run_ok(Command::new("unshare").args([
        "-m",
        "sh",
        "-c",
        &format!(
            "mount --bind {} /etc/resolv.conf && getent ahosts www.example.test",
            resolv.display()
        ),
    ]));
    assert!(out.contains("10.1.2.3"), "{out}");
    let run = tracer.stop();
    drop(dns);
    let spans = by_kind(&run.spans, "client");
    let mut names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["A www.example.test", "AAAA www.example.test"],
        "{:#?}",
        run.spans
    );
    assert!(spans
        .iter()
        .all(|s| s["process"] == "getent" && s["protocol"] == "dns"));
}
