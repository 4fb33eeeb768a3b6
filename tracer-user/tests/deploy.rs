//! Least privilege and the files in deploy/: the tracer as an unprivileged
//! user holding only the capabilities it checks for, traced through the
//! systemd unit's own settings; every capability left out is named; the
//! unit, the Kubernetes manifest, the Prometheus rules and the Grafana
//! dashboard pass their tools' checks and name only metrics a real tracer
//! exports.
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use common::{free_port, run_ok, servers, tracer_binary, wait_until_detached, TempDir, Tracer};
use serde_json::Value;
use tracer::kernel::capabilities::REQUIRED;

/// The user the tests run the tracer as (`nobody`).
const NOBODY: u32 = 65534;
const KUBERNETES_VALIDATE: &str = "/opt/tracer-tests/venv/bin/kubernetes-validate";
/// The Python of the same virtual environment, which has `PyYAML`.
const VENV_PYTHON: &str = "/opt/tracer-tests/venv/bin/python";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tracer-user")
        .join(path)
}

fn read_repo_file(path: &str) -> String {
    fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Capability names as the tracer checks them (`CAP_BPF`, ...).
fn required_capabilities() -> Vec<&'static str> {
    REQUIRED.iter().map(|req| req.capability.name()).collect()
}

/// `KEY=value` settings of deploy/systemd/tracer.service, in order.
fn unit_settings() -> Vec<(String, String)> {
    read_repo_file("deploy/systemd/tracer.service")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn unit_setting(key: &str) -> String {
    let found = unit_settings().into_iter().find(|(k, _)| k == key);
    found
        .unwrap_or_else(|| panic!("tracer.service has no {key}="))
        .1
}

/// `setpriv` arguments giving exactly `caps` (`CAP_BPF`, ...) as ambient
/// capabilities to `nobody`, as systemd's `AmbientCapabilities=` does.
fn setpriv_as_nobody(caps: &[&str]) -> Command {
    let list: String = caps
        .iter()
        .map(|cap| cap.trim_start_matches("CAP_").to_lowercase())
        .fold(String::new(), |list, cap| list + ",+" + &cap);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_owned(),
        format!("--inh-caps=-all{list}"),
        format!("--ambient-caps=-all{list}"),
        format!("--bounding-set=-all{list}"),
        // NoNewPrivileges=yes
        "--no-new-privs".to_owned(),
    ]);
    cmd
}

/// A copy of the tracer that `nobody` may execute wherever the build
/// directory is (e.g. under a root-only home).
fn tracer_for_nobody(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("tracer");
    fs::copy(tracer_binary(), &path).expect("copy the tracer");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod tracer");
    path
}

fn curl(args: &[&str]) -> String {
    run_ok(
        Command::new("curl")
            .args(["-s", "-S", "--max-time", "10"])
            .args(args),
    )
}

/// `/etc/tracer/tracer.env`'s settings (deploy/systemd/tracer.env).
fn env_file() -> Vec<(String, String)> {
    read_repo_file("deploy/systemd/tracer.env")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The unit as systemd would start it, except that `nobody` stands for its
/// `User=tracer`, `setpriv` for systemd, and the test's metrics port and
/// log directory for the real ones: its capabilities, `NoNewPrivileges`,
/// `Environment=`, `EnvironmentFile=` and `ExecStart=` with `$TRACER_ARGS`.
/// Traces root's nginx, checks the spans it stored, its metrics, its clean
/// exit; HTTPS to another nginx is not decrypted (uprobes need
/// `CAP_SYS_ADMIN`), which one warning line says and the summary counts.
#[test]
fn unit_exec_start_as_nobody_traces_root_nginx() {
    let ambient: Vec<String> = unit_setting("AmbientCapabilities")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let ambient: Vec<&str> = ambient.iter().map(String::as_str).collect();
    let bin_dir = TempDir::new("deploy-bin");
    let tracer = tracer_for_nobody(&bin_dir);
    let logs = TempDir::new("deploy-logs");
    std::os::unix::fs::chown(logs.path(), Some(NOBODY), Some(NOBODY)).expect("chown logs");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");

    let exec_start = unit_setting("ExecStart");
    let mut exec = exec_start.split_whitespace();
    assert_eq!(exec.next(), Some("/usr/local/bin/tracer"), "{exec_start}");
    assert_eq!(exec.collect::<Vec<_>>(), ["$TRACER_ARGS"], "{exec_start}");
    let env = env_file();
    let tracer_args = &env
        .iter()
        .find(|(k, _)| k == "TRACER_ARGS")
        .expect("TRACER_ARGS in tracer.env")
        .1;
    assert!(
        tracer_args.contains("--metrics-addr 127.0.0.1:9464"),
        "{tracer_args}"
    );
    let args: Vec<String> = tracer_args
        .split_whitespace()
        .map(|arg| {
            arg.replace("127.0.0.1:9464", &metrics_addr)
                .replace("/var/log/tracer", &logs.path().to_string_lossy())
        })
        .collect();
    let (key, value) = unit_setting("Environment")
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .expect("Environment=KEY=value");

    let plain = servers::nginx(1);
    let tls = servers::nginx_tls(false);
    let mut cmd = setpriv_as_nobody(&ambient);
    cmd.arg(&tracer).args(&args).envs(env).env(key, value);
    let run = Tracer::start_command(cmd);
    let pid = run.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("tracer status");
    assert!(status.contains(&format!("Uid:\t{NOBODY}\t")), "{status}");

    for _ in 0..3 {
        curl(&[&plain.url("/hello")]);
        curl(&["-k", &tls.https_url("/hello")]);
    }
    curl(&[&plain.url("/fail")]);
    // Spans reach the metrics after linking held them (up to 2 s).
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let text = curl(&[&metrics_url]);
        let served = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .filter(|l| l.contains("http_route=\"/hello\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if served >= 3.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "3 requests not in the metrics: {text}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let finished = run.stop();
    assert!(finished.exit_ok, "{}", finished.stderr.join("\n"));
    let summary: Value = serde_json::from_str(finished.summary()).expect("JSON summary");
    assert_eq!(summary["hook_errors"], 0, "{summary}");
    assert_eq!(summary["events_lost"], 0, "{summary}");
    assert!(summary["tls_undecrypted"].as_u64() >= Some(1), "{summary}");
    let warnings: Vec<&String> = finished
        .stderr
        .iter()
        .filter(|l| l.contains("TLS plaintext is not captured"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", finished.stderr);
    assert!(warnings[0].contains("CAP_SYS_ADMIN"), "{}", warnings[0]);
    wait_until_detached();

    // Spans stored by the unit's --output-file, as nobody.
    let stored = logs.path().join("spans.jsonl");
    assert_eq!(fs::metadata(&stored).expect("spans file").uid(), NOBODY);
    let served = stored_spans(&stored);
    let count = |name: &str, port: u16| {
        served
            .iter()
            .filter(|(n, p)| n == name && *p == Some(port))
            .count()
    };
    assert_eq!(count("GET /hello", plain.port), 3, "{served:?}");
    assert_eq!(count("GET /fail", plain.port), 1, "{served:?}");
    assert_eq!(count("GET /hello", tls.port), 0, "{served:?}");

    // The dashboard and the alert rules name only what this tracer served.
    let exported = exported_metric_names(&metrics);
    assert_queries_use_exported_metrics(&exported);
}

/// (name, `server.port`) of every span in an OTLP-JSON lines file.
fn stored_spans(path: &Path) -> Vec<(String, Option<u16>)> {
    let text = fs::read_to_string(path).expect("spans file");
    let mut served = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).expect("OTLP-JSON line");
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let port = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "server.port")
                        .and_then(|a| a["value"]["intValue"].as_str()?.parse::<u16>().ok());
                    served.push((span["name"].as_str().unwrap_or("").to_owned(), port));
                }
            }
        }
    }
    served
}

/// TLS plaintext as `nobody`: the required set plus the two of the unit's
/// TLS drop-in (deploy/systemd/tls.conf), and HTTPS to root's nginx is
/// decrypted through uprobes on its libssl.
#[test]
fn tls_as_nobody_with_the_drop_in_capabilities() {
    let drop_in = read_repo_file("deploy/systemd/tls.conf");
    let extra: Vec<&str> = drop_in
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in tls.conf")
        .split_whitespace()
        .collect();
    assert_eq!(extra, ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
    let caps: Vec<&str> = required_capabilities().into_iter().chain(extra).collect();
    let bin_dir = TempDir::new("deploy-bin");
    let tracer = tracer_for_nobody(&bin_dir);
    let tls = servers::nginx_tls(false);
    let mut cmd = setpriv_as_nobody(&caps);
    cmd.arg(&tracer).args([
        "--pid",
        &tls.pid().to_string(),
        "--output",
        "json",
        "--summary-format",
        "json",
    ]);
    let run = Tracer::start_command(cmd);
    for _ in 0..3 {
        curl(&["-k", &tls.https_url("/hello")]);
    }
    let finished = run.stop();
    assert!(finished.exit_ok, "{}", finished.stderr.join("\n"));
    let hello: Vec<&Value> = finished
        .spans
        .iter()
        .filter(|s| s["attributes"]["url.path"] == "/hello")
        .collect();
    assert_eq!(hello.len(), 3, "{:?}", finished.spans);
    assert!(hello.iter().all(|s| s["process"] == "nginx"));
    let summary: Value = serde_json::from_str(finished.summary()).expect("JSON summary");
    assert_eq!(summary["hook_errors"], 0, "{summary}");
    assert_eq!(summary["tls_undecrypted"], 0, "{summary}");
    assert!(
        !finished.stderr.iter().any(|l| l.contains("WARN")),
        "{:?}",
        finished.stderr
    );
    wait_until_detached();
}

/// With any one capability of the set left out, the tracer stops at start
/// with one line naming it, before loading anything.
#[test]
fn each_capability_left_out_is_named() {
    let nginx = servers::nginx(1);
    let bin_dir = TempDir::new("deploy-bin");
    let tracer = tracer_for_nobody(&bin_dir);
    let all = required_capabilities();
    for left_out in &all {
        let caps: Vec<&str> = all.iter().copied().filter(|c| c != left_out).collect();
        let out = setpriv_as_nobody(&caps)
            .arg(&tracer)
            .args(["--pid", &nginx.pid().to_string(), "--duration", "1"])
            .output()
            .expect("run setpriv");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ran without {left_out}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("tracer: missing capability {left_out} (")),
            "{stderr}"
        );
    }
    // Programs of an earlier test may take a moment to go (RCU); none of
    // these runs loaded any.
    wait_until_detached();
}

/// The unit grants exactly the set the tracer checks for, to a non-root
/// user, and the README's "Deploy" section names the same set.
#[test]
fn unit_and_readme_name_the_checked_capabilities() {
    let required: BTreeSet<&str> = required_capabilities().into_iter().collect();
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let value = unit_setting(key);
        let granted: BTreeSet<&str> = value.split_whitespace().collect();
        assert_eq!(granted, required, "{key}");
    }
    assert_eq!(unit_setting("User"), "tracer");
    assert_eq!(unit_setting("NoNewPrivileges"), "yes");
    let readme = read_repo_file("README.md");
    let deploy = readme
        .split("\n## Deploy")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Deploy section");
    for cap in &required {
        assert!(deploy.contains(cap), "README Deploy section lacks {cap}");
    }
}

/// `systemd-analyze verify` accepts the unit without a warning (it only
/// warns, exit 0, on a bad value: a copy with one is refused here), and its
/// offline security review rates the sandbox at most 4.0 ("OK").
#[test]
fn systemd_unit_verifies() {
    let dir = TempDir::new("deploy-unit");
    let unit = read_repo_file("deploy/systemd/tracer.service")
        // verify checks that the command exists and is executable.
        .replace("/usr/local/bin/tracer", tracer_binary())
        .replace(
            "/etc/tracer/tracer.env",
            &repo_file("deploy/systemd/tracer.env").to_string_lossy(),
        );
    let verify = |text: &str| -> Output {
        let path = dir.path().join("tracer.service");
        fs::write(&path, text).expect("write unit");
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("run systemd-analyze (cargo xtask setup --test-deps)")
    };
    let out = verify(&unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let broken = verify(&unit.replace("ProtectSystem=strict", "ProtectSystem=stricter"));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("ignoring: stricter"),
        "a bad value went unnoticed"
    );

    fs::write(dir.path().join("tracer.service"), &unit).expect("write unit");
    let alone = exposure(dir.path());
    assert!(alone <= 4.0, "sandbox exposure {alone}");

    // With the TLS drop-in: still no warning; more exposed (so it applied).
    let drop_ins = dir.path().join("tracer.service.d");
    fs::create_dir_all(&drop_ins).expect("drop-in dir");
    fs::copy(
        repo_file("deploy/systemd/tls.conf"),
        drop_ins.join("tls.conf"),
    )
    .expect("drop-in");
    let out = Command::new("systemd-analyze")
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .arg("verify")
        .arg(dir.path().join("tracer.service"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let with_tls = exposure(dir.path());
    assert!(
        alone < with_tls && with_tls <= 4.5,
        "{alone} then {with_tls}"
    );
}

/// `systemd-analyze security --offline` of `tracer.service` (and its
/// drop-ins) in `dir`: the overall exposure, 0 (safe) to 10.
fn exposure(dir: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .args(["security", "--offline=true", "--no-pager", "tracer.service"])
        .current_dir(dir)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.split("Overall exposure level for tracer.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"))
}

/// The `DaemonSet` against the Kubernetes schemas (`kubernetes-validate`,
/// offline, strict: unknown fields refused), then the settings the tracer
/// needs.
#[test]
fn kubernetes_manifest_validates() {
    let manifest = repo_file("deploy/kubernetes/tracer-daemonset.yaml");
    let out = Command::new(KUBERNETES_VALIDATE)
        .args(["--strict", "--quiet"])
        .arg(&manifest)
        .output()
        .expect("run kubernetes-validate (cargo xtask setup --test-deps)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json = run_ok(Command::new(VENV_PYTHON).arg("-c").arg(
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
    ).arg(&manifest));
    let docs: Vec<Value> = serde_json::from_str(&json).expect("manifest as JSON");
    let daemonset = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let added: BTreeSet<String> = security["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().expect("name")))
        .collect();
    let required: BTreeSet<String> = required_capabilities()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(added, required);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let metrics_addr = args
        .iter()
        .position(|a| *a == "--metrics-addr")
        .and_then(|i| args.get(i + 1))
        .expect("--metrics-addr");
    let port = &container["ports"][0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(
        metrics_addr.rsplit(':').next(),
        Some(port["containerPort"].to_string().as_str())
    );
    assert!(args.contains(&"--comm"), "{args:?}");
    let text = read_repo_file("deploy/kubernetes/tracer-daemonset.yaml");
    assert!(
        text.contains("--cgroup /sys/fs/cgroup/"),
        "no --cgroup example"
    );
    let configmap = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert!(configmap["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"].is_string());
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        configmap["metadata"]["name"]
    );
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(
        mounts.contains(&"/sys/kernel"),
        "BTF and tracefs: {mounts:?}"
    );
}

/// `promtool check rules`, then the rules' unit tests, which must also fail
/// on a copy whose error-ratio threshold is changed.
#[test]
fn prometheus_rules_check_and_pass_their_tests() {
    let rules = repo_file("deploy/prometheus/tracer-alerts.yml");
    let tests = repo_file("deploy/prometheus/tracer-alerts.test.yml");
    let promtool = |args: &[&Path]| -> Output {
        Command::new("promtool")
            .args(args)
            .output()
            .expect("run promtool (cargo xtask setup --test-deps)")
    };
    for (what, out) in [
        (
            "check rules",
            promtool(&[Path::new("check"), Path::new("rules"), &rules]),
        ),
        (
            "test rules",
            promtool(&[Path::new("test"), Path::new("rules"), &tests]),
        ),
    ] {
        assert!(
            out.status.success(),
            "promtool {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = TempDir::new("deploy-rules");
    let text = fs::read_to_string(&rules).expect("rules");
    assert!(text.contains(") > 0.05"));
    fs::write(
        dir.path().join("tracer-alerts.yml"),
        text.replace(") > 0.05", ") > 0.5"),
    )
    .expect("write rules");
    fs::copy(&tests, dir.path().join("tracer-alerts.test.yml")).expect("copy tests");
    let out = promtool(&[
        Path::new("test"),
        Path::new("rules"),
        &dir.path().join("tracer-alerts.test.yml"),
    ]);
    assert!(
        !out.status.success(),
        "the rule tests missed a changed threshold"
    );
}

/// Metric names in an exposition: every `# TYPE` family (written even
/// before its first sample), with a histogram's `_bucket`, `_sum`, `_count`.
fn exported_metric_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Every query expression of the dashboard and the rules names only
/// metrics in `exported` (or Prometheus's own `up`), and together they use
/// the RED families and the health counters the alerts are about.
fn assert_queries_use_exported_metrics(exported: &BTreeSet<String>) {
    assert!(
        exported.contains("tracer_events_lost_total"),
        "{exported:?}"
    );
    let mut used = BTreeSet::new();
    let dashboard: Value =
        serde_json::from_str(&read_repo_file("deploy/grafana/tracer-dashboard.json"))
            .expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_queries(&dashboard, &mut exprs);
    let json = run_ok(
        Command::new(VENV_PYTHON)
            .arg("-c")
            .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
            .arg(repo_file("deploy/prometheus/tracer-alerts.yml")),
    );
    let rules_json: Value = serde_json::from_str(&json).expect("rules as JSON");
    for group in rules_json["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            exprs.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() > 20, "{exprs:?}");
    for expr in &exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name) || name == "up",
                "{name} (in {expr}) is not exported by the tracer"
            );
            used.insert(name);
        }
    }
    for name in [
        "http_server_request_duration_seconds_bucket",
        "http_server_request_errors_total",
        "tracer_events_lost_total",
        "tracer_export_failures_total",
    ] {
        assert!(used.contains(name), "{name} unused");
    }
}

/// The queries of every panel target (`expr`) and template variable (`query`).
fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// Metric names a Prometheus query expression selects: identifiers outside label
/// matchers, ranges and strings that are not functions, keywords or
/// grouping labels; plus the alternatives of a `__name__=~"a|b"` matcher.
/// Grafana's `label_values(metric, label)` names its metric first.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    // Operators, and aggregations (which may be followed by `by (...)`
    // rather than their parenthesis).
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut names = BTreeSet::new();
    let idents = promql_tokens(expr, &mut names);
    let mut skip_until_close = false;
    let mut label_values_args = None::<u32>;
    for (ident, next) in idents {
        match ident.as_str() {
            ")" => {
                skip_until_close = false;
                label_values_args = None;
                continue;
            }
            "," => {
                label_values_args = label_values_args.map(|n| n + 1);
                continue;
            }
            "(" => continue,
            _ => {}
        }
        if skip_until_close || label_values_args.is_some_and(|n| n > 0) {
            continue;
        }
        if GROUPING.contains(&ident.as_str()) && next == '(' {
            skip_until_close = true;
        } else if ident == "label_values" {
            label_values_args = Some(0);
        } else if next == '(' || ident.starts_with('$') || KEYWORDS.contains(&ident.as_str()) {
        } else {
            names.insert(ident);
        }
    }
    names
}

/// Identifiers (each with the next non-space character) and `(`, `,`, `)`
/// of a query, with label matchers, ranges and strings left out; the
/// alternatives of a `__name__=~"a|b"` matcher go straight into `names`.
fn promql_tokens(expr: &str, names: &mut BTreeSet<String>) -> Vec<(String, char)> {
    let mut idents: Vec<(String, char)> = Vec::new(); // (identifier, next non-space char)
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            let end = chars[i..]
                .iter()
                .position(|&x| x == close)
                .map_or(chars.len(), |p| i + p);
            let inner: String = chars[i + 1..end].iter().collect();
            if let Some(alternatives) = inner
                .split("__name__=~\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
            {
                names.extend(alternatives.split('|').map(str::to_owned));
            }
            i = end + 1;
        } else if c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '"')
                .map_or(chars.len(), |p| i + 1 + p);
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:$".contains(chars[i]))
            {
                i += 1;
            }
            let next = chars[i..]
                .iter()
                .copied()
                .find(|x| !x.is_whitespace())
                .unwrap_or(' ');
            idents.push((chars[start..i].iter().collect(), next));
        } else {
            if c == ',' || c == ')' || c == '(' {
                idents.push((c.to_string(), ' '));
            }
            i += 1;
        }
    }
    idents
}

#[test]
fn promql_names_are_found() {
    let names = promql_metric_names(
        r#"sum by (service_name, le) (rate(a_bucket{service_name=~"$service"}[$__rate_interval])) / on (x) group_left (y) b_total > 0.5 and up{job="t"} == 0"#,
    );
    assert_eq!(
        names,
        ["a_bucket", "b_total", "up"].map(str::to_owned).into()
    );
    let names = promql_metric_names(r#"label_values({__name__=~"c_count|d_count"}, service_name)"#);
    assert_eq!(names, ["c_count", "d_count"].map(str::to_owned).into());
    let names = promql_metric_names("label_values(e_total, instance)");
    assert_eq!(names, ["e_total"].map(str::to_owned).into());
}
