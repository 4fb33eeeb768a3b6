//! Real servers for the tests, each on its own loopback port and temporary
//! directory, stopped when dropped.

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{free_port, wait_for_port, TempDir};

/// A child process killed (with its process group) on drop.
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Children (nginx workers) go with the group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        std::thread::sleep(Duration::from_millis(100));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn spawn_in_own_group(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// Any command as a service listening on `port` (already chosen by the
/// caller), stopped with its process group.
pub fn spawn_service(cmd: &mut Command, port: u16) -> Service {
    let child = spawn_in_own_group(cmd);
    wait_for_port(port, Duration::from_secs(10));
    Service {
        child,
        port,
        dir: TempDir::new("service"),
    }
}

/// The 6-byte body of nginx's `/hello`.
pub const HELLO_BODY: &str = "hello\n";

/// nginx in the foreground from a temporary prefix with a `www/` root
/// holding `index.html`: the settings every test server shares, then
/// `http_body(root, port)` inside `http {}`.
pub fn nginx_with(
    tag: &str,
    workers: u32,
    http_body: impl FnOnce(&std::path::Path, u16) -> String,
) -> Service {
    let dir = TempDir::new(tag);
    let port = free_port();
    let root = dir.path();
    fs::create_dir_all(root.join("www")).expect("www dir");
    fs::write(
        root.join("www/index.html"),
        "<html><body>tracer test</body></html>\n",
    )
    .expect("index");
    let conf = format!(
        r"daemon off;
master_process on;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{body}
}}
",
        root = root.display(),
        body = http_body(root, port),
    );
    let conf_path = root.join("nginx.conf");
    fs::write(&conf_path, conf).expect("nginx.conf");
    let child = spawn_in_own_group(
        Command::new("nginx")
            .arg("-p")
            .arg(root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(&conf_path),
    );
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// nginx with a master and `workers` worker processes.
pub fn nginx(workers: u32) -> Service {
    nginx_with("nginx", workers, |root, port| {
        fs::write(root.join("www/big.bin"), vec![b'x'; 200_000]).expect("big file");
        format!(
            r#"    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location = /hello {{ default_type text/plain; return 200 "{hello}"; }}
        location = /teapot {{ return 418; }}
        location = /fail {{ return 503; }}
        location = /echo {{ default_type text/plain; return 200 "posted\n"; }}
    }}"#,
            root = root.display(),
            hello = HELLO_BODY.trim_end().to_owned() + "\\n",
        )
    })
}

/// Python's http.server (HTTP/1.0: one request per connection).
pub fn python_http() -> Service {
    let dir = TempDir::new("pyhttp");
    let port = free_port();
    fs::write(dir.path().join("index.html"), "<html>python</html>\n").expect("index");
    let child = spawn_in_own_group(
        Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path()),
    );
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// A Python script run as a server; `{port}` in `script` is replaced.
pub fn python_script(tag: &str, script: &str) -> Service {
    let dir = TempDir::new(tag);
    let port = free_port();
    let path = dir.path().join("server.py");
    fs::write(&path, script.replace("{port}", &port.to_string())).expect("script");
    let child = spawn_in_own_group(Command::new("/usr/bin/python3").arg("-u").arg(&path));
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// Pids of `pid` and its children.
pub fn with_children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("pgrep");
    let mut pids = vec![pid];
    pids.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok()),
    );
    pids
}

/// redis-server without persistence.
pub fn redis() -> Service {
    let dir = TempDir::new("redis");
    let port = free_port();
    let child = spawn_in_own_group(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path()),
    );
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// memcached on TCP only.
pub fn memcached() -> Service {
    let dir = TempDir::new("memcached");
    let port = free_port();
    let child = spawn_in_own_group(Command::new("memcached").args([
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-u",
        "root",
    ]));
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// dnsmasq answering `*.example.test` itself, on UDP and TCP `port`.
pub fn dnsmasq_on(port: u16) -> Service {
    let dir = TempDir::new("dnsmasq");
    let child = spawn_in_own_group(Command::new("dnsmasq").args([
        "--no-daemon",
        "--port",
        &port.to_string(),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--address=/example.test/10.1.2.3",
        "--address=/example.test/fd00::7",
        "--user=root",
        "--pid-file=",
    ]));
    wait_for_port(port, Duration::from_secs(10));
    Service { child, port, dir }
}

/// A self-signed certificate and key for `localhost`/127.0.0.1, made by the
/// openssl command line tool in `dir`.
pub fn self_signed_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// nginx serving HTTPS (and HTTP/2 over TLS when `http2` is set).
pub fn nginx_tls(http2: bool) -> Service {
    nginx_with("nginx-tls", 1, |root, port| {
        let (cert, key) = self_signed_cert(root);
        format!(
            r#"    server {{
        listen 127.0.0.1:{port} ssl{h2};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root}/www;
        location = /hello {{ default_type text/plain; return 200 "hello\n"; }}
        location = /fail {{ return 503; }}
    }}"#,
            root = root.display(),
            cert = cert.display(),
            key = key.display(),
            h2 = if http2 { " http2" } else { "" },
        )
    })
}

impl Service {
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// A private PostgreSQL cluster on a loopback port, SSL off, trust auth.
pub fn postgres() -> Service {
    postgres_with_ssl(false)
}

/// A private PostgreSQL cluster, trust auth, SSL on or off.
pub fn postgres_with_ssl(ssl: bool) -> Service {
    let dir = TempDir::new("pg");
    let port = free_port();
    let data = dir.path().join("data");
    let run_as_postgres = |args: &str| {
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c", args])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runuser");
        assert!(status.success(), "as postgres: {args}");
    };
    let ssl_settings = if ssl {
        let (cert, key) = self_signed_cert(dir.path());
        let _ = Command::new("chmod").arg("600").arg(&key).status();
        format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        )
    } else {
        "-c ssl=off".to_owned()
    };
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir.path())
        .status();
    run_as_postgres(&format!(
        "/usr/lib/postgresql/15/bin/initdb -D {} -A trust -U postgres",
        data.display()
    ));
    let child = spawn_in_own_group(
        Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/postgres",
                "-D",
                &data.display().to_string(),
                "-p",
                &port.to_string(),
                "-k",
                &dir.path().display().to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .args(ssl_settings.split(' ')),
    );
    wait_for_port(port, Duration::from_secs(30));
    Service { child, port, dir }
}

/// The pid of the process listening on a loopback TCP port.
pub fn listener_pid(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-Htlnp", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no listener pid for port {port}: {text}"))
}

/// A private MariaDB server on a loopback port, without grant checks.
pub fn mariadb() -> Service {
    let dir = TempDir::new("mariadb");
    let port = free_port();
    let data = dir.path().join("data");
    let status = Command::new("mariadb-install-db")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mariadb-install-db");
    assert!(status.success(), "mariadb-install-db failed");
    let child = spawn_in_own_group(
        Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}/mysql.sock", dir.path().display()))
            .arg(format!("--pid-file={}/mysql.pid", dir.path().display()))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-log-bin",
            ])
            .arg(format!("--port={port}")),
    );
    wait_for_port(port, Duration::from_mins(1));
    Service { child, port, dir }
}

/// redis-server speaking only TLS, with a self-signed certificate.
pub fn redis_tls() -> (Service, std::path::PathBuf) {
    let dir = TempDir::new("redis-tls");
    let port = free_port();
    let (cert, key) = self_signed_cert(dir.path());
    let child = spawn_in_own_group(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--dir")
            .arg(dir.path()),
    );
    wait_for_port(port, Duration::from_secs(10));
    (Service { child, port, dir }, cert)
}

/// nginx (one worker: one event loop) as a reverse proxy in front of
/// `127.0.0.1:upstream`, over HTTP/1.1 with a keep-alive upstream pool, or
/// over HTTP/1.0 with a fresh connection per request.
pub fn nginx_proxy(upstream: u16, keepalive: bool) -> Service {
    let (pool, proxy) = if keepalive {
        (
            format!("upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}"),
            "proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";"
                .to_owned(),
        )
    } else {
        (
            String::new(),
            format!("proxy_pass http://127.0.0.1:{upstream};"),
        )
    };
    nginx_with("nginx-proxy", 1, |_, port| {
        format!(
            r"    keepalive_requests 1000000;
    {pool}
    server {{
        listen 127.0.0.1:{port};
        location / {{ {proxy} }}
    }}"
        )
    })
}

/// A thread-per-connection Python HTTP/1.1 app (ThreadingHTTPServer): `GET
/// /chain/ID` does `SET k:ID v` and `GET k:ID` on a fresh Redis connection
/// and `SELECT ID` on a fresh PostgreSQL one, over raw sockets from the
/// handler's thread (no client library), then answers 200.
///
/// With `pool`, the handler hands the Redis and PostgreSQL work to a pool of
/// worker threads and waits for it (a hand-off the tracer cannot see).
pub fn python_chain_app(redis_port: u16, pg_port: u16, pool: bool) -> Service {
    let script = r#"
import concurrent.futures, http.server, socket, socketserver, struct

REDIS_PORT = {redis_port}
PG_PORT = {pg_port}
POOL = concurrent.futures.ThreadPoolExecutor(4) if {pool} else None

def redis_call(sock, reader, *args):
    msg = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        msg += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(msg)
    line = reader.readline()
    if line[:1] == b"$" and int(line[1:]) >= 0:
        reader.read(int(line[1:]) + 2)
    return line

def pg_query(sql):
    s = socket.create_connection(("127.0.0.1", PG_PORT))
    reader = s.makefile("rb")
    params = b"user\0postgres\0database\0postgres\0\0"
    body = struct.pack("!i", 196608) + params
    s.sendall(struct.pack("!i", len(body) + 4) + body)
    def message():
        kind = reader.read(1)
        size = struct.unpack("!i", reader.read(4))[0]
        return kind, reader.read(size - 4)
    while True:
        kind, payload = message()
        if kind == b"E":
            raise RuntimeError(payload)
        if kind == b"Z":
            break
    q = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
    while message()[0] != b"Z":
        pass
    s.sendall(b"X" + struct.pack("!i", 4))
    reader.close()
    s.close()

def work(key):
    r = socket.create_connection(("127.0.0.1", REDIS_PORT))
    reader = r.makefile("rb")
    redis_call(r, reader, "SET", "k:" + key, "v")
    redis_call(r, reader, "GET", "k:" + key)
    reader.close()
    r.close()
    pg_query("SELECT " + key)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        key = self.path.rsplit("/", 1)[-1]
        if POOL:
            POOL.submit(work, key).result()
        else:
            work(key)
        body = b"ok " + key.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

Server(("127.0.0.1", {port}), Handler).serve_forever()
"#
    .replace("{redis_port}", &redis_port.to_string())
    .replace("{pg_port}", &pg_port.to_string())
    .replace("{pool}", if pool { "True" } else { "False" });
    python_script(if pool { "chain-pool" } else { "chain" }, &script)
}
