//! The two ways the kernel programs find a syscall's socket (`--socket-hooks`),
//! each forced on this kernel, which has both: the `sock_*_length`
//! tracepoints (Linux 6.3+) and the file-table walk every kernel with BTF
//! allows. Both must give the same spans and never take file or pipe I/O
//! for socket I/O, also when a socket's fd number is reused by a file.
//! Each loads exactly the programs `tracer_common::programs` gives its path.

mod common;

use std::{collections::BTreeSet, process::Command};

use common::{programs_held_by, run_ok, servers, Tracer};
use tracer_common::{programs::PROGRAMS, IovecWalk, SocketLookup};

/// Serves each connection, then does file and pipe I/O with HTTP-looking
/// bytes on the fd number the socket just had (closed, then reused by a
/// file; and a file `dup2`'d over a live socket fd): none of it may become a
/// span.
const SERVER: &str = r#"
import os, socket
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", {port}))
srv.listen(16)
scratch = "/tmp/tracer-socket-hooks-%d" % os.getpid()
while True:
    conn, _ = srv.accept()
    fd = conn.fileno()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    body = b"ok\n"
    os.write(fd, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n" + body)
    # A file dup2'd over the live socket's fd: its bytes are file bytes.
    spare = os.dup(fd)
    f = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.dup2(f, fd)
    os.write(fd, b"GET /from-dup2-file HTTP/1.1\r\nHost: x\r\n\r\n")
    os.lseek(fd, 0, 0)
    os.read(fd, 4096)
    os.close(f)
    conn.close()
    os.close(spare)
    # The socket's fd number reused by a file, then by a pipe.
    f = os.open(scratch, os.O_RDWR | os.O_TRUNC)
    os.write(f, b"GET /from-reused-fd HTTP/1.1\r\nHost: x\r\n\r\n")
    os.write(f, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    os.lseek(f, 0, 0)
    os.read(f, 4096)
    os.close(f)
    r, w = os.pipe()
    os.write(w, b"GET /from-pipe HTTP/1.1\r\nHost: x\r\n\r\n")
    os.read(r, 4096)
    os.close(r)
    os.close(w)
"#;

fn curl(url: &str) -> String {
    run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\n", url]))
}

/// What a forced path loads: the programs of the table for it (with the
/// iovec walk this kernel takes), no others. Returns that walk.
fn assert_loads_its_programs(tracer: &Tracer, lookup: SocketLookup) -> IovecWalk {
    let want = |walk| -> BTreeSet<String> {
        PROGRAMS
            .iter()
            .filter(|p| p.runs_with(lookup, walk))
            .map(|p| p.name.to_owned())
            .collect()
    };
    let held = programs_held_by(tracer.pid());
    let walk = if held.contains("tracer_exit_readv_loop") {
        IovecWalk::BpfLoop
    } else {
        IovecWalk::Unrolled
    };
    assert_eq!(held, want(walk), "{lookup:?}, {walk:?}");
    walk
}

fn spans_and_hooks_line(hooks: &str, requests: usize) -> (Vec<String>, String) {
    let server = servers::python_script("socket-hooks", SERVER);
    let tracer = Tracer::start(&[
        "--pid",
        &server.pid().to_string(),
        "--socket-hooks",
        hooks,
        "-v",
    ]);
    let walk = match hooks {
        "tracepoint" => Some(assert_loads_its_programs(&tracer, SocketLookup::Tracepoint)),
        "fd-table" => Some(assert_loads_its_programs(&tracer, SocketLookup::FdTable)),
        _ => None,
    };
    for i in 0..requests {
        assert_eq!(curl(&server.url(&format!("/r{i}"))).trim(), "200");
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(run.stats().events_lost, 0, "{}", run.summary());
    // The summary names the walk whose programs were loaded.
    if let Some(walk) = walk {
        assert_eq!(
            run.stats().attach.iovec_walk,
            walk.name(),
            "{}",
            run.summary()
        );
    }
    let hooks_line = run
        .stderr
        .iter()
        .find(|l| l.contains("socket hooks:"))
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = run
        .spans
        .iter()
        .map(|s| format!("{} {} {}", s["kind"], s["name"], s["status"]))
        .collect();
    names.sort();
    (names, hooks_line)
}

fn expected(requests: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..requests)
        .map(|i| format!("\"server\" \"GET /r{i}\" \"ok\""))
        .collect();
    names.sort();
    names
}

#[test]
fn file_table_path_gives_exact_spans_and_ignores_files_on_reused_fds() {
    let (spans, hooks) = spans_and_hooks_line("fd-table", 5);
    assert!(
        hooks.contains("socket hooks: fd-table (forced by --socket-hooks)"),
        "{hooks:?}"
    );
    assert_eq!(spans, expected(5));
}

#[test]
fn tracepoint_path_gives_exact_spans_and_ignores_files_on_reused_fds() {
    let (spans, hooks) = spans_and_hooks_line("tracepoint", 5);
    assert!(
        hooks.contains("socket hooks: tracepoint (forced by --socket-hooks)"),
        "{hooks:?}"
    );
    assert_eq!(spans, expected(5));
}

/// `auto` takes the tracepoints where the kernel's BTF declares them, else
/// the file table; the reason is given at `-v`.
#[test]
fn auto_takes_what_the_kernel_btf_offers() {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
    let has = |name: &[u8]| btf.windows(name.len()).any(|w| w == name);
    let has_tracepoints =
        has(b"btf_trace_sock_send_length\0") && has(b"btf_trace_sock_recv_length\0");
    let (spans, hooks) = spans_and_hooks_line("auto", 2);
    let want = if has_tracepoints {
        "socket hooks: tracepoint (the kernel has"
    } else {
        "socket hooks: fd-table (no sock_send_length"
    };
    assert!(hooks.contains(want), "{hooks:?}");
    assert_eq!(spans, expected(2));
}
