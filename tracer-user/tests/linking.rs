//! Trace linking end to end: curl → nginx (reverse proxy, one event loop)
//! → a Python thread-per-connection app → Redis and PostgreSQL, all but
//! curl traced at once, and every request's spans checked to form the
//! exact tree, one by one and under concurrent load.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{collections::HashMap, process::Command, thread};

use common::{run_ok, servers, Tracer, TracerRun};
use serde_json::Value;

/// The spans one `GET /chain/ID` should produce, by role.
const ROLES: usize = 9;

fn curl_chain(port: u16, ids: &[u32], traceparent: Option<&str>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "%{http_code}\n"]);
    if let Some(tp) = traceparent {
        cmd.args(["-H", &format!("traceparent: {tp}")]);
    }
    for id in ids {
        cmd.args([
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/chain/{id}"),
        ]);
    }
    let out = run_ok(&mut cmd);
    assert!(out.lines().all(|l| l == "200"), "{out}");
}

fn traceparent(id: u32) -> (String, String, String) {
    let trace = format!("{:032x}", 0x7ace_0000_u64 + u64::from(id));
    let parent = format!("{:016x}", 0x9a7e_0000_u64 + u64::from(id));
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

/// Everything traced: nginx, the app, redis and postgres.
struct Chain {
    nginx: servers::Service,
    app: servers::Service,
    redis: servers::Service,
    pg: servers::Service,
}

impl Chain {
    fn start(keepalive: bool, pool: bool) -> Chain {
        let redis = servers::redis();
        let pg = servers::postgres();
        let app = servers::python_chain_app(redis.port, pg.port, pool);
        let nginx = servers::nginx_proxy(app.port, keepalive);
        Chain {
            nginx,
            app,
            redis,
            pg,
        }
    }

    fn trace(&self) -> Tracer {
        let pids = [
            self.nginx.pid(),
            self.app.pid(),
            self.redis.pid(),
            self.pg.pid(),
        ]
        .map(|p| p.to_string())
        .join(",");
        // Statements with their literals: the request id in them is the
        // ground truth the links are checked against.
        Tracer::start(&["--pid", &pids, "--raw-statements"])
    }
}

/// Which request a span belongs to, from what it carries.
fn request_id(span: &Value) -> Option<u32> {
    let attrs = &span["attributes"];
    let text = attrs["url.path"]
        .as_str()
        .or(attrs["db.query.text"].as_str())?;
    let digits = |s: &str| {
        s.split(|c: char| !c.is_ascii_digit())
            .find(|d| !d.is_empty())?
            .parse()
            .ok()
    };
    if let Some(rest) = text.strip_prefix("/chain/") {
        return digits(rest);
    }
    if let Some(rest) = text.split("k:").nth(1) {
        return digits(rest);
    }
    text.strip_prefix("SELECT ").and_then(digits)
}

/// A span's place in the chain.
fn role(span: &Value) -> Option<&'static str> {
    let process = span["process"].as_str()?;
    let kind = span["kind"].as_str()?;
    let op = span["attributes"]["db.operation.name"]
        .as_str()
        .unwrap_or("");
    Some(match (process, kind, span["protocol"].as_str()?, op) {
        ("nginx", "server", "http", _) => "nginx server",
        ("nginx", "client", "http", _) => "nginx client",
        ("python3", "server", "http", _) => "app server",
        ("python3", "client", "redis", "SET") => "app SET",
        ("python3", "client", "redis", "GET") => "app GET",
        ("python3", "client", "postgresql", _) => "app SELECT",
        ("redis-server", "server", "redis", "SET") => "redis SET",
        ("redis-server", "server", "redis", "GET") => "redis GET",
        ("postgres", "server", "postgresql", _) => "pg SELECT",
        _ => return None,
    })
}

/// The role of each role's parent, and which rule makes that link.
const EXPECTED: [(&str, &str, &str); ROLES - 1] = [
    ("nginx client", "nginx server", "event loop"),
    ("app server", "nginx client", "cross-process"),
    ("app SET", "app server", "app in-process"),
    ("app GET", "app server", "app in-process"),
    ("app SELECT", "app server", "app in-process"),
    ("redis SET", "app SET", "cross-process"),
    ("redis GET", "app GET", "cross-process"),
    ("pg SELECT", "app SELECT", "cross-process"),
];

/// Right links and all links, by rule.
#[derive(Default, Debug)]
struct Shares {
    by_rule: HashMap<&'static str, (usize, usize)>,
    /// Links that point at a span of the wrong request (not just missing).
    wrong: usize,
    requests: usize,
    /// Requests whose spans all carry the trace id of their root.
    whole_traces: usize,
}

impl Shares {
    /// Whether `rule` linked every span it saw (and saw some).
    fn all_right(&self, rule: &str) -> bool {
        matches!(self.by_rule.get(rule), Some(&(right, all)) if all > 0 && right == all)
    }

    fn share(&self, rule: &str) -> f64 {
        let (right, all) = self.by_rule.get(rule).copied().unwrap_or((0, 0));
        if all == 0 {
            return 0.0;
        }
        right as f64 / all as f64
    }

    fn report(&self, label: &str, run: &TracerRun) {
        let mut rules: Vec<_> = self.by_rule.iter().collect();
        rules.sort();
        for (rule, (right, all)) in rules {
            eprintln!(
                "{label}: {rule}: {right}/{all} links right ({:.1}%)",
                100.0 * *right as f64 / *all as f64
            );
        }
        eprintln!(
            "{label}: {} requests, {} of them one whole trace, {} links to a wrong span; {}",
            self.requests,
            self.whole_traces,
            self.wrong,
            run.summary()
        );
    }
}

/// Checks every request's spans against the expected tree: each span's
/// parent, and one trace id for the whole request (the incoming
/// `traceparent`'s when one was sent).
fn check(run: &TracerRun, ids: &[u32], with_traceparent: &[u32]) -> Shares {
    let mut by_request: HashMap<u32, HashMap<&str, &Value>> = HashMap::new();
    for span in &run.spans {
        let (Some(id), Some(role)) = (request_id(span), role(span)) else {
            continue;
        };
        let previous = by_request.entry(id).or_default().insert(role, span);
        assert!(
            previous.is_none(),
            "two {role} spans for request {id}: {span:#}"
        );
    }
    let owner: HashMap<&str, u32> = by_request
        .iter()
        .flat_map(|(id, spans)| {
            spans
                .values()
                .filter_map(move |s| Some((s["span_id"].as_str()?, *id)))
        })
        .collect();
    let mut shares = Shares {
        requests: ids.len(),
        ..Shares::default()
    };
    for id in ids {
        let spans = by_request
            .get(id)
            .unwrap_or_else(|| panic!("no spans for request {id}"));
        assert_eq!(
            spans.len(),
            ROLES,
            "request {id}: {:?}",
            spans.keys().collect::<Vec<_>>()
        );
        let root = spans["nginx server"];
        if with_traceparent.contains(id) {
            let (_, trace, parent) = traceparent(*id);
            assert_eq!(root["trace_id"], trace.as_str(), "request {id}");
            assert_eq!(root["parent_span_id"], parent.as_str(), "request {id}");
        } else {
            assert!(root["parent_span_id"].is_null(), "request {id}: {root:#}");
        }
        if spans.values().all(|s| s["trace_id"] == root["trace_id"]) {
            shares.whole_traces += 1;
        }
        for (child, parent, rule) in EXPECTED {
            let entry = shares.by_rule.entry(rule).or_default();
            entry.1 += 1;
            let got = spans[child]["parent_span_id"].as_str();
            if got == spans[parent]["span_id"].as_str() {
                entry.0 += 1;
            } else if got.is_some_and(|p| owner.get(p).is_some_and(|owner| owner != id)) {
                shares.wrong += 1;
                eprintln!("request {id}: {child} linked to another request's span");
            }
        }
    }
    shares
}

#[test]
fn one_request_at_a_time_every_request_is_one_trace_with_the_exact_tree() {
    let chain = Chain::start(true, false);
    let tracer = chain.trace();
    let ids: Vec<u32> = (1..=10).collect();
    let mut with_traceparent = Vec::new();
    for &id in &ids {
        if id % 2 == 0 {
            curl_chain(chain.nginx.port, &[id], Some(&traceparent(id).0));
            with_traceparent.push(id);
        } else {
            curl_chain(chain.nginx.port, &[id], None);
        }
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let shares = check(&run, &ids, &with_traceparent);
    shares.report("one at a time", &run);
    for (_, _, rule) in EXPECTED {
        assert!(shares.all_right(rule), "{rule}: {shares:?}");
    }
    assert_eq!(shares.whole_traces, ids.len());
    assert_eq!(run.stats().linking.expired, 0, "{}", run.summary());
    assert_eq!(run.stats().events_lost, 0, "{}", run.summary());
}

/// 8 clients at once, each with its own keep-alive connection to nginx.
fn concurrent(chain: &Chain, clients: u32, per_client: u32) -> Vec<u32> {
    let port = chain.nginx.port;
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let ids: Vec<u32> = (0..per_client).map(|i| 1000 + c * per_client + i).collect();
                // A few requests per curl: new and reused connections both.
                for batch in ids.chunks(5) {
                    curl_chain(port, batch, None);
                }
                ids
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("client thread"))
        .collect()
}

#[test]
fn under_concurrent_load_threads_and_connections_link_exactly() {
    let chain = Chain::start(true, false);
    let tracer = chain.trace();
    let ids = concurrent(&chain, 8, 25);
    let run = tracer.stop();
    let shares = check(&run, &ids, &[]);
    shares.report("8 concurrent clients, keep-alive upstream", &run);
    assert!(shares.all_right("app in-process"), "{shares:?}");
    assert!(shares.all_right("cross-process"), "{shares:?}");
    // nginx: the request its event loop read last before writing upstream
    // on a reused connection. Measured 100% here; allow a little.
    assert!(shares.share("event loop") >= 0.95, "{shares:?}");
    assert!(shares.whole_traces * 100 >= ids.len() * 95, "{shares:?}");
    assert_eq!(run.stats().events_lost, 0, "{}", run.summary());
}

#[test]
fn under_concurrent_load_a_fresh_upstream_connection_per_request() {
    let chain = Chain::start(false, false);
    let tracer = chain.trace();
    let ids = concurrent(&chain, 8, 25);
    let run = tracer.stop();
    let shares = check(&run, &ids, &[]);
    shares.report(
        "8 concurrent clients, upstream connection per request",
        &run,
    );
    assert!(shares.all_right("app in-process"), "{shares:?}");
    assert!(shares.all_right("cross-process"), "{shares:?}");
    // nginx writes to a new upstream connection in a later loop iteration
    // than the one that read the request: other requests may be read in
    // between, and then the clue is wrong. Measured, not proven.
    assert!(shares.share("event loop") >= 0.5, "{shares:?}");
}

/// The app hands Redis and PostgreSQL work to a pool of worker threads: a
/// hand-off the tracer does not see. One request at a time, the only
/// request around a call is its parent.
#[test]
fn worker_pool_hand_off_one_request_at_a_time_is_linked() {
    let chain = Chain::start(true, true);
    let tracer = chain.trace();
    let ids: Vec<u32> = (1..=5).collect();
    for &id in &ids {
        curl_chain(chain.nginx.port, &[id], None);
    }
    let run = tracer.stop();
    let shares = check(&run, &ids, &[]);
    shares.report("worker pool, one at a time", &run);
    for (_, _, rule) in EXPECTED {
        assert!(shares.all_right(rule), "{rule}: {shares:?}");
    }
    assert_eq!(shares.whole_traces, ids.len());
}

/// With several requests around a call on a pool thread, no guess is made.
#[test]
fn worker_pool_hand_off_under_load_never_guesses() {
    let chain = Chain::start(true, true);
    let tracer = chain.trace();
    let ids = concurrent(&chain, 4, 10);
    let run = tracer.stop();
    let shares = check(&run, &ids, &[]);
    shares.report("worker pool, 4 concurrent clients", &run);
    assert_eq!(
        shares.wrong, 0,
        "a guess among several requests: {shares:?}"
    );
    assert!(shares.all_right("cross-process"), "{shares:?}");
}

/// Spans that cannot get a parent are not held: the callers of nginx and
/// redis here are untraced curl and redis-cli.
#[test]
fn spans_without_a_traced_caller_are_not_held() {
    let nginx = servers::nginx(1);
    let redis = servers::redis();
    let pids = format!("{},{}", nginx.pid(), redis.pid());
    let tracer = Tracer::start(&["--pid", &pids]);
    for _ in 0..20 {
        run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", &nginx.url("/hello")]));
        run_ok(Command::new("redis-cli").args(["-p", &redis.port.to_string(), "SET", "k", "v"]));
    }
    let run = tracer.stop();
    assert!(run.spans.len() >= 40, "{}", run.summary());
    eprintln!("untraced callers: {}", run.summary());
    assert_eq!(run.stats().linking.held, 0, "{}", run.summary());
    assert!(run.spans.iter().all(|s| s["parent_span_id"].is_null()));
}

/// `--link-window-ms 0` turns linking off: every span is its own trace.
#[test]
fn linking_can_be_turned_off() {
    let chain = Chain::start(true, false);
    let pids = [
        chain.nginx.pid(),
        chain.app.pid(),
        chain.redis.pid(),
        chain.pg.pid(),
    ]
    .map(|p| p.to_string())
    .join(",");
    let tracer = Tracer::start(&["--pid", &pids, "--link-window-ms", "0"]);
    curl_chain(chain.nginx.port, &[1, 2], None);
    let run = tracer.stop();
    assert!(run.spans.len() >= 2 * ROLES, "{}", run.summary());
    assert!(run.spans.iter().all(|s| s["parent_span_id"].is_null()));
    assert_eq!(run.stats().linking.linked, 0);
}

/// Both ends of pipelined Redis connections traced: every server span is
/// paired with the client span that sent that very command (the n-th on
/// the connection), at the rate redis-benchmark drives.
#[test]
fn pipelined_commands_pair_across_processes() {
    let redis = servers::redis();
    let tracer = Tracer::start(&[
        "--pid",
        &redis.pid().to_string(),
        "--comm",
        "redis-benchmark",
    ]);
    let n = 5000;
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
        "4",
        "-t",
        "set,get",
        "-q",
    ]));
    let run = tracer.stop();
    let clients: HashMap<&str, &Value> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "client" && s["process"] == "redis-benchmark")
        .filter_map(|s| Some((s["span_id"].as_str()?, s)))
        .collect();
    let servers: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "server" && (s["name"] == "SET" || s["name"] == "GET"))
        .collect();
    let right = servers
        .iter()
        .filter(|s| {
            s["parent_span_id"]
                .as_str()
                .and_then(|p| clients.get(p))
                .is_some_and(|c| {
                    c["name"] == s["name"]
                        && c["trace_id"] == s["trace_id"]
                        && c["attributes"]["client.port"] == s["attributes"]["client.port"]
                })
        })
        .count();
    eprintln!(
        "pipelined redis: {right}/{} server spans paired with their command; {}",
        servers.len(),
        run.summary()
    );
    // redis-benchmark adds a few commands of its own (e.g. CONFIG GET).
    assert!(servers.len() >= 2 * n, "{}", run.summary());
    assert_eq!(right, servers.len(), "{}", run.summary());
}
