//! Go's own TLS (issue #16 part 2): uprobes on `crypto/tls.(*Conn).Write`
//! and `.Read` (its return instructions, found by decoding) in Go programs
//! built here with Debian's Go, as an HTTPS server (HTTP/1.1 and HTTP/2;
//! also stripped of its symbol table, issue #16 part 4) and as a client of
//! nginx.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{free_port, servers, wait_for_port, TempDir, Tracer, TracerRun};
use serde_json::Value;

const SERVER: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprintf(w, "go %s\n", r.URL.Path)
	})
	err := http.ListenAndServeTLS("127.0.0.1:"+os.Args[1], os.Args[2], os.Args[3], nil)
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
"#;

/// Waits for its gate file, then GETs each URL on one client (kept-alive
/// connections) and prints the statuses.
const CLIENT: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	for {
		if _, err := os.Stat(os.Args[1]); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	for _, url := range os.Args[2:] {
		res, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		fmt.Println(res.StatusCode, res.Proto)
	}
}
"#;

fn by_port<'a>(spans: &[&'a Value], port: u16) -> Vec<&'a Value> {
    spans
        .iter()
        .copied()
        .filter(|s| s["attributes"]["server.port"] == port)
        .collect()
}

fn assert_go_tls(spans: &[&Value], protocol: &str) {
    for span in spans {
        assert_eq!(span["protocol"], protocol, "{span:#}");
        assert_eq!(span["attributes"]["tls.protocol.name"], "tls", "{span:#}");
        assert_eq!(span["attributes"]["tracer.tls.library"], "go", "{span:#}");
    }
}

fn assert_all_decrypted(run: &TracerRun) {
    let stats = run.stats();
    assert_eq!(stats.tls_undecrypted, 0, "{}", run.summary());
    assert_eq!(stats.parser_desyncs, 0, "{}", run.summary());
    assert_eq!(stats.hook_errors, 0, "{:?}", run.stderr);
}

/// Runs the Go HTTPS server built in `dir` from [`SERVER`] with `flags`,
/// traces it while `requests` (given the URL of a path) calls it, and
/// returns the run and the server's pid.
fn trace_go_server(
    dir: &TempDir,
    flags: &[&str],
    requests: impl FnOnce(&dyn Fn(&str) -> String),
) -> (TracerRun, u32) {
    let binary = common::go_build(dir.path(), "server", SERVER, flags);
    let (cert, key) = servers::self_signed_cert(dir.path());
    let port = free_port();
    let server = servers::spawn_service(
        Command::new(&binary)
            .arg(port.to_string())
            .args([&cert, &key])
            .stdout(Stdio::null()),
        port,
    );
    wait_for_port(port, Duration::from_secs(10));
    let tracer = Tracer::start(&["--pid", &server.pid().to_string()]);
    requests(&|path| format!("https://127.0.0.1:{port}{path}"));
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    (run, server.pid())
}

/// The server spans of `pid` in `run` over `protocol` (`http`, `http2`).
fn served<'a>(run: &'a TracerRun, pid: u32, protocol: &str) -> Vec<&'a Value> {
    run.spans
        .iter()
        .filter(|s| s["kind"] == "server" && s["pid"] == pid && s["protocol"] == protocol)
        .collect()
}

fn served_count(run: &TracerRun, pid: u32) -> usize {
    run.spans
        .iter()
        .filter(|s| s["kind"] == "server" && s["pid"] == pid)
        .count()
}

#[test]
fn go_https_server_http1_and_http2_are_decrypted() {
    let dir = TempDir::new("go-server");
    let (run, pid) = trace_go_server(&dir, &[], |url| {
        assert_eq!(
            common::curl_statuses(&["--http1.1"], &[url("/a"), url("/missing")]),
            "200\n404\n"
        );
        assert_eq!(common::curl_statuses(&["--http1.1"], &[url("/b")]), "200\n");
        assert_eq!(
            common::curl_statuses(&["--http2"], &[url("/h2a"), url("/h2b")]),
            "200\n200\n"
        );
    });
    let http1 = served(&run, pid, "http");
    let http2 = served(&run, pid, "http2");
    assert_eq!(
        common::names_and_statuses(&http1),
        ["GET /a 200", "GET /b 200", "GET /missing 404"],
        "{:#?}",
        run.spans
    );
    assert_eq!(
        common::names_and_statuses(&http2),
        ["GET /h2a 200", "GET /h2b 200"],
        "{:#?}",
        run.spans
    );
    assert_eq!(served_count(&run, pid), 5, "{:#?}", run.spans);
    assert_go_tls(&http1, "http");
    assert_go_tls(&http2, "http2");
    assert_all_decrypted(&run);
}

/// Without `.symtab` (`-s -w`), the functions come from `.gopclntab` and
/// the `*net.TCPConn` itab from the module data.
#[test]
fn stripped_go_https_server_is_decrypted() {
    assert_go_server_http1_decrypted("go-server-stripped", &["-ldflags=-s -w"]);
}

/// As a PIE from Go's own linker (linked at 0x400000, mapped elsewhere),
/// stripped: the itab's run-time address is shifted by the load bias.
#[test]
fn stripped_go_pie_https_server_is_decrypted() {
    assert_go_server_http1_decrypted("go-pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]);
}

/// The Go server built with `flags` serves three HTTP/1.1 requests from
/// curl; the tracer decrypts each.
fn assert_go_server_http1_decrypted(tag: &str, flags: &[&str]) {
    let dir = TempDir::new(tag);
    let (run, pid) = trace_go_server(&dir, flags, |url| {
        assert_eq!(
            common::curl_statuses(&["--http1.1"], &[url("/a"), url("/missing")]),
            "200\n404\n"
        );
        assert_eq!(common::curl_statuses(&["--http1.1"], &[url("/b")]), "200\n");
    });
    let http1 = served(&run, pid, "http");
    assert_eq!(
        common::names_and_statuses(&http1),
        ["GET /a 200", "GET /b 200", "GET /missing 404"],
        "{:#?}",
        run.spans
    );
    assert_eq!(served_count(&run, pid), 3, "{:#?}", run.spans);
    assert_go_tls(&http1, "http");
    assert_all_decrypted(&run);
}

#[test]
fn go_https_client_is_decrypted_over_http1_and_http2() {
    let dir = TempDir::new("go-client");
    let binary = common::go_build(dir.path(), "client", CLIENT, &[]);
    let http1 = servers::nginx_tls(false);
    let http2 = servers::nginx_tls(true);
    let gate = dir.path().join("go");
    let mut urls: Vec<String> = Vec::new();
    for _ in 0..3 {
        urls.push(http1.https_url("/hello"));
    }
    urls.push(http1.https_url("/fail"));
    for _ in 0..2 {
        urls.push(http2.https_url("/hello"));
    }
    let client = Command::new(&binary)
        .arg(&gate)
        .args(&urls)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Go client");
    let tracer = Tracer::start(&["--pid", &client.id().to_string()]);
    std::fs::write(&gate, "").expect("open the gate");
    let out = client.wait_with_output().expect("Go client finished");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 HTTP/1.1\n200 HTTP/1.1\n200 HTTP/1.1\n503 HTTP/1.1\n200 HTTP/2.0\n200 HTTP/2.0\n"
    );
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    let calls: Vec<&Value> = run.spans.iter().filter(|s| s["kind"] == "client").collect();
    let over_http1 = by_port(&calls, http1.port);
    let over_http2 = by_port(&calls, http2.port);
    assert_eq!(
        common::names_and_statuses(&over_http1),
        [
            "GET /fail 503",
            "GET /hello 200",
            "GET /hello 200",
            "GET /hello 200"
        ],
        "{:#?}",
        run.spans
    );
    assert_eq!(
        common::names_and_statuses(&over_http2),
        ["GET /hello 200", "GET /hello 200"],
        "{:#?}",
        run.spans
    );
    assert_go_tls(&over_http1, "http");
    assert_go_tls(&over_http2, "http2");
    assert_all_decrypted(&run);
}
