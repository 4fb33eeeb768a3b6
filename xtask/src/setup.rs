//! Idempotent machine set-up: each step checks first and installs only
//! what is missing. Without root or apt it says what to run instead.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::run_checked;

/// Debian packages the eBPF build needs (bpf-linker links against LLVM 22,
/// the LLVM of the pinned nightly).
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// Real servers and clients the integration tests and benchmarks run.
const TEST_PACKAGES: &[(&str, &str)] = &[
    // (package, a file it installs: present means installed)
    ("nginx", "/usr/sbin/nginx"),
    ("curl", "/usr/bin/curl"),
    ("wrk", "/usr/bin/wrk"),
    // The bench's fixed-rate load (`hey -q` paces each connection).
    ("hey", "/usr/bin/hey"),
    ("python3", "/usr/bin/python3"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("bpftrace", "/usr/bin/bpftrace"),
    ("redis-server", "/usr/bin/redis-server"),
    ("redis-tools", "/usr/bin/redis-benchmark"),
    ("memcached", "/usr/bin/memcached"),
    ("dnsmasq-base", "/usr/sbin/dnsmasq"),
    ("dnsutils", "/usr/bin/dig"),
    ("postgresql", "/usr/bin/pgbench"),
    ("mariadb-server", "/usr/sbin/mariadbd"),
    ("mariadb-client", "/usr/bin/mariadb"),
    (
        "libdbd-mariadb-perl",
        "/usr/lib/x86_64-linux-gnu/perl5/5.36/DBD/MariaDB.pm",
    ),
    ("openssl", "/usr/bin/openssl"),
    ("util-linux", "/usr/bin/setpriv"),
    ("procps", "/usr/bin/pgrep"),
    // `tracer report --html` is checked in a real browser (tests/report.rs).
    ("chromium", "/usr/bin/chromium"),
    // gRPC for /usr/bin/python3, the interpreter the tests run: Debian's
    // package, as its Python refuses pip installs into the system.
    (
        "python3-grpcio",
        "/usr/lib/python3/dist-packages/grpc/__init__.py",
    ),
    // deploy/ checks (tests/deploy.rs): `promtool check rules` and `test
    // rules`, `systemd-analyze verify`, and a virtual environment for
    // kubernetes-validate (PyPI only).
    // TLS of event loops and Go (tests/tls_event_loops.rs, tests/go_tls.rs):
    // Node.js (OpenSSL linked into `node`) and Go 1.19, which builds the
    // stdlib-only test programs offline.
    ("nodejs", "/usr/bin/node"),
    ("golang-go", "/usr/bin/go"),
    ("prometheus", "/usr/bin/promtool"),
    ("systemd", "/usr/bin/systemd-analyze"),
    ("python3-venv", "/usr/share/doc/python3-venv/copyright"),
];

/// `kubernetes-validate` checks deploy/kubernetes against the Kubernetes
/// schemas it ships, offline. From `PyPI` only, so in a virtual environment of
/// its own (Debian's Python refuses pip installs into the system); the
/// path is the one tests/deploy.rs runs.
const KUBERNETES_VALIDATE_VENV: &str = "/opt/tracer-tests/venv";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// What `cargo xtask vm` needs beyond the build: qemu, and the pieces of
/// the guests' initramfs and of its download.
const VM_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("binutils", "/usr/bin/strip"),
    (
        "debian-archive-keyring",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    ),
];

/// The peers of the smoke suite (xtask/vm/smoke.sh), from [`TEST_PACKAGES`]:
/// it runs them on the host and copies them into the guests.
const VM_PEERS: &[&str] = &[
    "nginx",
    "curl",
    "redis-server",
    "redis-tools",
    "openssl",
    "bpftool",
    "util-linux",
];

/// Installs what `cargo xtask vm` runs, where missing.
pub fn vm() -> Result<()> {
    let peers = TEST_PACKAGES
        .iter()
        .filter(|(package, _)| VM_PEERS.contains(package));
    let packages: Vec<&str> = missing(VM_PACKAGES.iter().chain(peers)).collect();
    if !packages.is_empty() {
        apt_install(&packages)?;
    }
    Ok(())
}

/// The packages of `(package, file)` pairs whose file is absent.
fn missing<'a>(
    packages: impl Iterator<Item = &'a (&'static str, &'static str)> + 'a,
) -> impl Iterator<Item = &'static str> + 'a {
    packages
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
}

pub fn run(test_deps: bool) -> Result<()> {
    let mut packages: Vec<&str> = Vec::new();
    if !Path::new("/usr/lib/llvm-22/lib/libLLVM.so").exists() && !has_bpf_linker() {
        packages.extend(BUILD_PACKAGES);
    }
    if test_deps {
        packages.extend(missing(TEST_PACKAGES.iter()));
    }
    if !packages.is_empty() {
        apt_install(&packages)?;
    }
    // rust-src builds the eBPF crate's `core`; clippy lints that crate on
    // its own target in the gate.
    for component in NIGHTLY_COMPONENTS {
        if !has_nightly_component(component) {
            let mut cmd = Command::new("rustup");
            cmd.args(["component", "add", component, "--toolchain", "nightly"]);
            run_or_explain(
                &mut cmd,
                &format!("rustup component add {component} --toolchain nightly"),
            )?;
        }
    }
    if !has_bpf_linker() {
        if !Path::new("/usr/lib/llvm-22/lib/libLLVM.so").exists() {
            apt_install(BUILD_PACKAGES)?;
        }
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_PREFIX", "/usr/lib/llvm-22").args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
        run_or_explain(
            &mut cmd,
            "LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --no-default-features --features llvm-22",
        )?;
    }
    if test_deps {
        kubernetes_validate()?;
    }
    if test_deps && !has_cargo_fuzz() {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "cargo-fuzz", "--version", "0.13.2"]);
        run_or_explain(&mut cmd, "cargo install cargo-fuzz --version 0.13.2")?;
    }
    Ok(())
}

fn kubernetes_validate() -> Result<()> {
    let venv = Path::new(KUBERNETES_VALIDATE_VENV);
    if venv.join("bin/kubernetes-validate").exists() {
        return Ok(());
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(venv);
    run_or_explain(
        &mut cmd,
        &format!("python3 -m venv {KUBERNETES_VALIDATE_VENV}"),
    )?;
    let mut cmd = Command::new(venv.join("bin/pip"));
    cmd.args(["install", "-q", KUBERNETES_VALIDATE]);
    run_or_explain(
        &mut cmd,
        &format!("{KUBERNETES_VALIDATE_VENV}/bin/pip install {KUBERNETES_VALIDATE}"),
    )
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy"];

fn has_nightly_component(component: &str) -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with(component))
        })
}

fn has_bpf_linker() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let line = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        bail!("missing packages; as root on Debian/Ubuntu run: {line}");
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    run_checked(Command::new("apt-get").arg("update").arg("-q")).context("apt-get update")?;
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages),
    )
    .with_context(|| format!("installing packages; try by hand: {line}"))
}

fn run_or_explain(cmd: &mut Command, by_hand: &str) -> Result<()> {
    eprintln!("xtask: running {by_hand}");
    run_checked(cmd).with_context(|| format!("set-up step failed; run by hand: {by_hand}"))
}
