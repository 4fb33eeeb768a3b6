//! cgroups and containers as targets: `--cgroup` and `--container` trace the
//! processes of a cgroup v2 subtree — there at attach, moved in later, or in
//! cgroups made later — and nothing outside it.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{run_ok, servers, Tracer};
use serde_json::Value;

/// The cgroup2 mount (`/sys/fs/cgroup/unified` on a hybrid hierarchy).
fn cgroup2_mount() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            if after.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            before.split_whitespace().nth(4).map(PathBuf::from)
        })
        .expect("a cgroup2 mount")
}

/// A cgroup made for one test under the cgroup2 mount; its processes are
/// moved back to the root cgroup and the directories removed on drop.
struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    fn new(name: &str) -> Self {
        let path = cgroup2_mount().join(format!("{name}-{}", std::process::id()));
        if path.exists() {
            remove_tree(&path);
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path }
    }

    fn child(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

fn remove_tree(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let root_procs = cgroup2_mount().join("cgroup.procs");
    if let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) {
        for pid in procs.lines() {
            let _ = fs::write(&root_procs, pid);
        }
    }
    let _ = fs::remove_dir(path);
}

/// Moves the process `pid` (all its threads) into `cgroup`.
fn move_into(cgroup: &Path, pid: u32) {
    fs::write(cgroup.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", cgroup.display()));
}

fn curl_ok(url: &str) {
    let code =
        run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", url]));
    assert_eq!(code, "200", "{url}");
}

fn server_spans_of(spans: &[Value], pid: u32) -> usize {
    spans
        .iter()
        .filter(|s| s["kind"] == "server" && s["pid"] == pid)
        .filter(|s| s["attributes"]["http.response.status_code"] == 200)
        .count()
}

/// Waits until the tracer's log (`-v`) has a line containing `needle`.
fn wait_for_log(tracer: &Tracer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tracer.stderr_so_far().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the tracer's log: {:#?}",
            tracer.stderr_so_far()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cgroup_subtree_is_traced_with_processes_that_join_later_and_nothing_else() {
    let cgroup = TestCgroup::new("tracer-test-cg");
    let web = cgroup.child("web");
    let before = servers::python_http();
    move_into(&web, before.pid());
    let outside = servers::python_http();

    let tracer = Tracer::start(&["-v", "--cgroup", &cgroup.path.display().to_string()]);
    let attached = tracer
        .stderr_so_far()
        .into_iter()
        .find(|l| l.contains("attached"))
        .expect("attach line");
    assert!(attached.contains("tracing 1 process(es)"), "{attached}");

    // Moved into a cgroup listed at attach: traced from its next call.
    let moved = servers::python_http();
    move_into(&cgroup.path, moved.pid());
    // Started in a cgroup made after attach: listed at a housekeeping.
    let late = cgroup.child("late");
    wait_for_log(&tracer, &format!("tracing cgroup {}", late.display()));
    let in_late = servers::python_http();
    move_into(&late, in_late.pid());

    for _ in 0..5 {
        for server in [&before, &outside, &moved, &in_late] {
            curl_ok(&server.url("/"));
        }
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(
        server_spans_of(&run.spans, before.pid()),
        5,
        "{:#?}",
        run.spans
    );
    assert_eq!(
        server_spans_of(&run.spans, moved.pid()),
        5,
        "{:#?}",
        run.spans
    );
    assert_eq!(
        server_spans_of(&run.spans, in_late.pid()),
        5,
        "{:#?}",
        run.spans
    );
    assert!(
        run.spans.iter().all(|s| s["pid"] != outside.pid()),
        "a server outside the cgroup was traced: {:#?}",
        run.spans
    );
    assert_eq!(run.spans.len(), 15, "{:#?}", run.spans);
    assert!(
        run.stats().lost.values().all(|&n| n == 0),
        "{}",
        run.summary()
    );
}

#[test]
fn a_cgroup_is_named_as_proc_pid_cgroup_shows_it_and_bad_ones_are_refused() {
    let cgroup = TestCgroup::new("tracer-test-cgname");
    let server = servers::python_http();
    move_into(&cgroup.path, server.pid());
    let shown = fs::read_to_string(format!("/proc/{}/cgroup", server.pid())).expect("cgroup");
    let relative = shown
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_owned();
    assert!(!relative.starts_with("/sys"), "{relative}");

    let tracer = Tracer::start(&["--cgroup", &relative]);
    curl_ok(&server.url("/"));
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(
        server_spans_of(&run.spans, server.pid()),
        1,
        "{:#?}",
        run.spans
    );

    for (args, expected) in [
        (
            vec!["--cgroup", "/no/such/cgroup"],
            "--cgroup /no/such/cgroup: not a cgroup v2 directory",
        ),
        (
            vec!["--cgroup", "/tmp"],
            "--cgroup /tmp: not a cgroup v2 directory",
        ),
        (
            vec!["--container", "0123456789ab"],
            "--container 0123456789ab: no cgroup under",
        ),
        (
            vec!["--container", "my-nginx"],
            "--container my-nginx: a container id is hexadecimal",
        ),
    ] {
        let out = Command::new(common::tracer_binary())
            .args(&args)
            .output()
            .expect("run the tracer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// A container the way runtimes make one: a cgroup named as docker names
/// it, a process started outside and moved in, then exec'd.
#[test]
fn a_container_is_found_by_its_id_and_its_spans_carry_it() {
    let id: String = format!("{:08x}", std::process::id())
        .chars()
        .chain("0123456789abcdef".chars().cycle())
        .take(64)
        .collect();
    let parent = TestCgroup::new("tracer-test-system.slice");
    let scope = parent.child(&format!("docker-{id}.scope"));
    let export = common::TempDir::new("container-export");
    let file = export.path().join("spans.jsonl");

    let tracer = Tracer::start(&[
        "--container",
        &id[..12],
        "--output-file",
        &file.display().to_string(),
    ]);
    // Started after attach by a parent outside the cgroup.
    let server = servers::python_http();
    move_into(&scope, server.pid());
    for _ in 0..3 {
        curl_ok(&server.url("/"));
    }
    let run = tracer.stop();
    assert!(run.exit_ok, "{:?}", run.stderr);
    assert_eq!(
        server_spans_of(&run.spans, server.pid()),
        3,
        "{:#?}",
        run.spans
    );
    let stored = fs::read_to_string(&file).expect("span file");
    let resource_ids: Vec<String> = stored
        .lines()
        .flat_map(|line| {
            let value: Value = serde_json::from_str(line).expect("OTLP-JSON line");
            value["resourceSpans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|resource| {
            resource["resource"]["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["key"] == "container.id")
                .and_then(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
        })
        .collect();
    assert!(!resource_ids.is_empty(), "{stored}");
    assert!(resource_ids.iter().all(|r| *r == id), "{resource_ids:?}");
}

/// Host pids of every process listening on `port`.
fn listener_pids(port: u16) -> Vec<u32> {
    let out = run_ok(Command::new("ss").args(["-Htlnp", &format!("sport = :{port}")]));
    let pids: Vec<u32> = out
        .split("pid=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(!pids.is_empty(), "no listener on {port}: {out}");
    pids
}

/// A root filesystem with its own copies of nginx, the libraries it links
/// (OpenSSL among them: other files than the host's, so hooked apart) and
/// the few files nginx reads, plus a TLS site in `/site`.
fn container_rootfs(dir: &Path, port: u16) {
    let libraries = run_ok(Command::new("ldd").arg("/usr/sbin/nginx"));
    let mut files: Vec<PathBuf> = libraries
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect();
    files.push(PathBuf::from("/usr/sbin/nginx"));
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("libssl")),
        "nginx links no libssl: {libraries}"
    );
    for file in &files {
        let inside = dir.join(file.strip_prefix("/").expect("absolute"));
        fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
        // A copy, not a link: the container has its own files.
        fs::copy(fs::canonicalize(file).expect("resolve"), &inside)
            .unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    }
    for sub in ["proc", "etc", "tmp", "site/www"] {
        fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let (cert, key) = servers::self_signed_cert(&dir.join("site"));
    assert!(cert.exists() && key.exists());
    fs::write(
        dir.join("site/nginx.conf"),
        format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid /site/nginx.pid;
error_log /site/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path /site/body;
    proxy_temp_path /site/proxy;
    fastcgi_temp_path /site/fastcgi;
    uwsgi_temp_path /site/uwsgi;
    scgi_temp_path /site/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate /site/cert.pem;
        ssl_certificate_key /site/key.pem;
        location = /hello {{ default_type text/plain; return 200 "hello from the container\n"; }}
    }}
}}
"#
        ),
    )
    .expect("nginx.conf");
}

/// A container made the way runtimes make one, by hand: its own root
/// filesystem (nginx and OpenSSL copied in), its own PID and mount
/// namespaces (nginx is pid 1 inside), a cgroup named as docker names it,
/// joined before exec. Started after the tracer attached, found by
/// `--container` with a short id; HTTPS decrypted through the container's
/// own libssl (`/proc/PID/root/...`), spans with host pids and the
/// container's id.
#[test]
fn a_container_with_its_own_root_and_libssl_is_traced_by_id() {
    let id: String = format!("{:08x}", std::process::id())
        .chars()
        .chain("fedcba9876543210".chars().cycle())
        .take(64)
        .collect();
    let parent = TestCgroup::new("tracer-test-docker");
    let scope = parent.child(&format!("docker-{id}.scope"));
    let root = common::TempDir::new("container-root");
    let port = common::free_port();
    container_rootfs(root.path(), port);
    let export = common::TempDir::new("container-spans");
    let file = export.path().join("spans.jsonl");

    let tracer = Tracer::start(&[
        "-v",
        "--container",
        &id[..12],
        "--output-file",
        &file.display().to_string(),
    ]);
    let script = format!(
        "echo $$ > {procs} && exec unshare --pid --mount --fork --mount-proc={root}/proc \
         chroot {root} /usr/sbin/nginx -p /site -e /site/error.log -c /site/nginx.conf",
        procs = scope.join("cgroup.procs").display(),
        root = root.path().display(),
    );
    let container = servers::spawn_service(Command::new("sh").args(["-c", &script]), port);
    let nginx_pids = listener_pids(port);
    // The tracer hooks the container's libssl once it learns of nginx: a
    // process in a chroot sharing our mounts maps it under its host path.
    let own_libssl = root.path().join("lib/x86_64-linux-gnu/libssl.so.3");
    wait_for_log(
        &tracer,
        &format!("OpenSSL functions in {}", own_libssl.display()),
    );
    for _ in 0..5 {
        let code = run_ok(Command::new("curl").args([
            "-sSk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://127.0.0.1:{port}/hello"),
        ]));
        assert_eq!(code, "200");
    }
    let run = tracer.stop();
    drop(container);
    assert!(run.exit_ok, "{:?}", run.stderr);
    let servers: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "server" && s["name"] == "GET /hello")
        .collect();
    assert_eq!(servers.len(), 5, "{:#?}", run.spans);
    for span in &servers {
        assert_eq!(span["attributes"]["http.response.status_code"], 200);
        assert_eq!(span["attributes"]["tls.protocol.name"], "tls", "{span}");
        let pid = u32::try_from(span["pid"].as_u64().expect("pid")).expect("u32");
        assert!(
            nginx_pids.contains(&pid),
            "{pid} is no host pid of {nginx_pids:?}"
        );
    }
    assert_eq!(run.stats().tls_undecrypted, 0, "{}", run.summary());
    let stored = fs::read_to_string(&file).expect("span file");
    assert!(
        stored.contains(&format!(r#""stringValue":"{id}""#)),
        "{stored}"
    );
}
