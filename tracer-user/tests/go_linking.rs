//! Linking in Go processes (issue #16 part 3): a plaintext Go `net/http`
//! server whose handler calls a backend (nginx) twice with Go's HTTP
//! client, itself or from a goroutine it starts, under concurrent clients. Goroutines move between threads and
//! the client writes each request from its connection's own goroutine, so
//! the links come from goroutines: the one that read the request, and the
//! one whose round trip a writer goroutine writes. Every backend call must
//! be the child of its own request's server span, never of another's.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{free_port, run_ok, servers, TempDir, Tracer, TracerRun};
use serde_json::Value;

/// `goserver PORT BACKEND`: `GET /call/N` calls `BACKEND/backend/N/a` and
/// `/b` (default client: kept-alive connections, two idle per host) and
/// answers 200; `GET /spawn/N` makes the same calls from a goroutine it
/// starts. Each request waits 10 ms first, so that requests overlap.
const SERVER: &str = r#"package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func call(url string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	return res.Body.Close()
}

func main() {
	backend := os.Args[2]
	calls := func(id string) error {
		// Requests overlap, so containment alone could not tell them apart.
		time.Sleep(10 * time.Millisecond)
		for _, part := range []string{"a", "b"} {
			if err := call(backend + "/backend/" + id + "/" + part); err != nil {
				return err
			}
		}
		return nil
	}
	answer := func(w http.ResponseWriter, err error) {
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	http.HandleFunc("/call/", func(w http.ResponseWriter, r *http.Request) {
		answer(w, calls(r.URL.Path[len("/call/"):]))
	})
	// The calls made by a goroutine the handler starts, and waits for.
	http.HandleFunc("/spawn/", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan error)
		go func() { done <- calls(r.URL.Path[len("/spawn/"):]) }()
		answer(w, <-done)
	})
	err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
"#;

/// The Go server, built into `dir` and started (by path, so `--comm`
/// finds it as `goserver`).
fn start_server(binary: &Path, backend: &servers::Service) -> servers::Service {
    let port = free_port();
    servers::spawn_service(
        Command::new(binary)
            .arg(port.to_string())
            .arg(backend.url(""))
            .stdout(Stdio::null()),
        port,
    )
}

fn call(port: u16, ids: &[u32]) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "%{http_code}\n"]);
    for id in ids {
        cmd.args([
            "-o",
            "/dev/null",
            &format!("http://127.0.0.1:{port}/call/{id}"),
        ]);
    }
    let out = run_ok(&mut cmd);
    assert!(out.lines().all(|l| l == "200"), "{out}");
}

/// The request a span of the Go server belongs to: `/call/N`,
/// `/spawn/N` or `/backend/N/...`.
fn request_id(span: &Value) -> Option<u32> {
    let path = span["attributes"]["url.path"].as_str()?;
    let rest = path
        .strip_prefix("/call/")
        .or_else(|| path.strip_prefix("/spawn/"))
        .or_else(|| path.strip_prefix("/backend/"))?;
    rest.split('/').next()?.parse().ok()
}

/// Backend calls linked to their own request's server span, and to
/// another's; of them, those made from a goroutine the handler started.
#[derive(Debug, Default)]
struct Links {
    calls: usize,
    right: usize,
    wrong: usize,
    spawned_calls: usize,
    spawned_right: usize,
}

fn links(run: &TracerRun, pid: u32, ids: &[u32]) -> Links {
    let of_server: Vec<&Value> = run.spans.iter().filter(|s| s["pid"] == pid).collect();
    let mut served: HashMap<u32, &Value> = HashMap::new();
    let mut span_owner: HashMap<&str, u32> = HashMap::new();
    for span in of_server.iter().filter(|s| s["kind"] == "server") {
        let id = request_id(span).expect("a server span of /call/N");
        assert!(served.insert(id, span).is_none(), "request {id} twice");
        span_owner.insert(span["span_id"].as_str().expect("span id"), id);
    }
    let mut ids_served: Vec<u32> = served.keys().copied().collect();
    ids_served.sort_unstable();
    let mut expected = ids.to_vec();
    expected.sort_unstable();
    assert_eq!(ids_served, expected, "server spans");
    let mut links = Links::default();
    for span in of_server.iter().filter(|s| s["kind"] == "client") {
        let id = request_id(span).expect("a client span of /backend/N");
        links.calls += 1;
        links.spawned_calls += usize::from(id % 2 == 1);
        match span["parent_span_id"].as_str() {
            Some(parent) if parent == served[&id]["span_id"] => {
                links.right += 1;
                links.spawned_right += usize::from(id % 2 == 1);
            }
            Some(parent) if span_owner.contains_key(parent) => {
                eprintln!(
                    "call of request {id} linked to request {}",
                    span_owner[parent]
                );
                links.wrong += 1;
            }
            _ => {}
        }
    }
    assert_eq!(links.calls, 2 * ids.len(), "two backend calls per request");
    links
}

/// `clients` curl processes at once, each sending `per_client` requests
/// a few per connection; the request ids sent.
fn concurrent(port: u16, clients: u32, per_client: u32) -> Vec<u32> {
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let ids: Vec<u32> = (0..per_client).map(|i| 1000 + c * per_client + i).collect();
                // A few requests per curl: new and kept-alive connections.
                for batch in ids.chunks(5) {
                    call(port, batch);
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

fn assert_linked(run: &TracerRun, pid: u32, ids: &[u32], label: &str) {
    assert!(run.exit_ok, "{:?}", run.stderr);
    let links = links(run, pid, ids);
    eprintln!("{label}: {links:?}");
    assert_eq!(links.wrong, 0, "{links:?}");
    assert!(
        links.right * 100 >= links.calls * 95,
        "{links:?}: under 95% linked; {}",
        run.summary()
    );
    assert!(
        links.spawned_calls > 0 && links.spawned_right * 100 >= links.spawned_calls * 95,
        "{links:?}: calls of started goroutines under 95% linked"
    );
}

#[test]
fn a_go_handlers_calls_are_children_of_its_request_under_concurrent_clients() {
    let dir = TempDir::new("go-linking");
    let binary = common::go_build(dir.path(), "goserver", SERVER, &[]);
    let backend = servers::nginx(1);
    let server = start_server(&binary, &backend);
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    let ids = concurrent(server.port, 8, 25);
    let run = tracer.stop();
    assert_linked(&run, server.pid(), &ids, "8 concurrent clients");
}

#[test]
fn a_stripped_go_server_started_after_the_tracer_is_followed_by_goroutine() {
    let dir = TempDir::new("go-linking-late");
    // Stripped: the probes' functions come from Go's own tables.
    let binary = common::go_build(dir.path(), "goserver", SERVER, &["-ldflags=-s -w"]);
    let backend = servers::nginx(1);
    let tracer = Tracer::start(&["--comm", "goserver", "-v"]);
    let server = start_server(&binary, &backend);
    // The hooks follow the exec by a housekeeping turn.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tracer
        .stderr_so_far()
        .iter()
        .any(|line| line.contains("hooked Go net/http's client"))
    {
        assert!(Instant::now() < deadline, "not hooked within 20 s");
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    let ids = concurrent(server.port, 4, 10);
    let run = tracer.stop();
    assert_linked(
        &run,
        server.pid(),
        &ids,
        "stripped, started after the tracer, 4 concurrent clients",
    );
}
