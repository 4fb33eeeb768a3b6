//! Faults: restarts of the traced process, garbage on the wire, connection
//! churn and a ring buffer overrun on purpose. Each is bounded in time.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    thread,
    time::Duration,
};

use common::{run_ok, servers, Tracer};
use serde_json::Value;

fn curl_ok(url: &str) {
    let code =
        run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", url]));
    assert_eq!(code.trim(), "200");
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[test]
fn traced_process_restarted_is_picked_up_by_comm() {
    let tracer = Tracer::start(&["--comm", "redis-server"]);
    let first = servers::redis();
    run_ok(Command::new("redis-cli").args(["-p", &first.port.to_string(), "SET", "a", "1"]));
    let first_pid = first.pid();
    drop(first); // killed
    let second = servers::redis();
    run_ok(Command::new("redis-cli").args(["-p", &second.port.to_string(), "SET", "b", "2"]));
    run_ok(Command::new("redis-cli").args(["-p", &second.port.to_string(), "GET", "b"]));
    let run = tracer.stop();
    let sets = named(&run.spans, "SET");
    assert_eq!(sets.len(), 2, "{:#?}", run.spans);
    assert_eq!(sets[0]["pid"], first_pid);
    assert_eq!(sets[1]["pid"], second.pid());
    assert_eq!(named(&run.spans, "GET").len(), 1);
}

#[test]
fn garbage_to_traced_servers_makes_no_spans_and_no_crash() {
    let nginx = servers::nginx(1);
    let redis = servers::redis();
    let tracer = Tracer::start(&["--pid", &format!("{},{}", nginx.pid(), redis.pid())]);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut garbage = |n: usize| {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng.to_le_bytes()[0]
            })
            .collect::<Vec<u8>>()
    };
    for port in [nginx.port, redis.port] {
        for size in [1, 7, 100, 3000, 20_000] {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            conn.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let _ = conn.write_all(&garbage(size));
            let mut sink = [0u8; 4096];
            let _ = conn.read(&mut sink);
        }
        // Truncated requests, then the connection closes.
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let _ = conn.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Le");
        let _ = conn.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\n");
    }
    thread::sleep(Duration::from_millis(300));
    // Real requests still work and are traced.
    curl_ok(&nginx.url("/hello"));
    run_ok(Command::new("redis-cli").args(["-p", &redis.port.to_string(), "PING"]));
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let complete: Vec<&Value> = common::complete(&run.spans);
    let names: Vec<&str> = complete.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        ["GET /hello", "PING"],
        "no spans from garbage: {:#?}",
        run.spans
    );
}

#[test]
fn connection_churn_frees_closed_connections() {
    let nginx = servers::nginx(1);
    let tracer = Tracer::start(&["--pid", &nginx.pid().to_string()]);
    // A new connection per request (wrk with Connection: close), until
    // 100k connections have come and gone, bounded to 12 runs of 5 s.
    let mut requests = 0u64;
    for _ in 0..12 {
        let out = run_ok(Command::new("wrk").args([
            "-t1",
            "-c8",
            "-d5s",
            "-H",
            "Connection: close",
            &nginx.url("/hello"),
        ]));
        requests += out
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(" requests in")
                    .and_then(|(n, _)| n.trim().parse::<u64>().ok())
            })
            .expect("wrk request count");
        if requests >= 100_000 {
            break;
        }
    }
    let tracer_pid = tracer.pid();
    let rss_kib = std::fs::read_to_string(format!("/proc/{tracer_pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let run = tracer.stop();
    let spans = named(&run.spans, "GET /hello").len() as u64;
    eprintln!(
        "churn: {requests} connections, {spans} spans, tracer RSS {rss_kib} KiB; {}",
        run.summary()
    );
    assert!(requests > 5_000, "too little churn to judge: {requests}");
    assert!(
        spans * 1000 >= requests * 999,
        "{spans} spans for {requests} requests"
    );
    assert!(run.stats().connections_open <= 16, "{}", run.summary());
    assert!(rss_kib < 128 * 1024, "tracer RSS {rss_kib} KiB after churn");
}

#[test]
fn ring_buffer_overrun_is_counted_and_recovered_from() {
    let redis = servers::redis();
    // A 1 MiB ring and 16 KiB payloads: large pipelined writes overrun it.
    let tracer = Tracer::start(&[
        "--pid",
        &redis.pid().to_string(),
        "--ring-buffer-mib",
        "1",
        "--max-payload",
        "16384",
    ]);
    run_ok(Command::new("redis-benchmark").args([
        "-p",
        &redis.port.to_string(),
        "-n",
        "100000",
        "-c",
        "16",
        "-P",
        "32",
        "-d",
        "16000",
        "-t",
        "set",
        "-q",
    ]));
    thread::sleep(Duration::from_millis(500));
    // After the storm: every request is traced again.
    for i in 0..10 {
        run_ok(Command::new("redis-cli").args([
            "-p",
            &redis.port.to_string(),
            "GET",
            &format!("after-{i}"),
        ]));
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let lost = run.stats().events_lost;
    eprintln!("overrun: {}", run.summary());
    assert!(
        lost > 0,
        "the overrun should lose events: {}",
        run.summary()
    );
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("events lost: ring buffer full")),
        "losses reported while running: {:?}",
        run.stderr
    );
    let gets: Vec<&Value> = named(&run.spans, "GET");
    assert_eq!(gets.len(), 10, "spans after the overrun: {}", run.summary());
    assert!(gets.iter().all(|s| s["status"] == "ok"));
}
