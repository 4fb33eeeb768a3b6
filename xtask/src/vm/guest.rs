//! Running the smoke suite: in a qemu guest on a Debian kernel, or natively
//! on the host. Either way its output goes to one log file per kernel and
//! the run is killed at the timeout.

use std::{
    fs::{self, File},
    io::Write as _,
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{shown, Options};

/// The smoke suite's files, installed side by side (smoke.sh reads the
/// nginx template next to itself).
pub const SMOKE_FILES: &[(&str, &str)] = &[
    ("smoke.sh", include_str!("../../vm/smoke.sh")),
    ("nginx.conf.in", include_str!("../../vm/nginx.conf.in")),
];

/// How one kernel's run went, before its log is read.
pub struct Run {
    pub log: PathBuf,
    pub elapsed: Duration,
    /// Killed at the timeout: whatever the log says, nothing passed.
    pub timed_out: bool,
}

/// Boots `vmlinuz` with `initrd` under qemu TCG; the serial console goes to
/// `log`.
pub fn boot(vmlinuz: &Path, initrd: &Path, log: &Path, timeout: Duration) -> Result<Run> {
    let mut qemu = Command::new("qemu-system-x86_64");
    // KVM dies here with "emulation failure" on stock kernels, so TCG;
    // plain `-cpu max` crashes 6.12 under this qemu (cmpxchg16b), hence
    // -cx16. `panic=-1` with `-no-reboot` turns a dying init into an exit.
    qemu.args([
        "-accel",
        "tcg",
        "-cpu",
        "max,-cx16",
        "-smp",
        "1",
        "-m",
        "2048",
    ])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    // `no_timer_check`: under TCG on a busy host the kernel's IO-APIC
    // timer check can miss its ticks and panic at boot ("IO-APIC + timer
    // doesn't work", seen on 5.10 while the host built and tested).
    .args([
        "-append",
        "console=ttyS0 quiet panic=-1 rdinit=/init no_timer_check",
    ]);
    eprintln!(
        "xtask: booting {} (console log {})",
        shown(vmlinuz),
        shown(log)
    );
    run_logged(&mut qemu, log, timeout, false)
}

/// Runs smoke.sh natively, with busybox sh as in the guest, from a scratch
/// directory and on free ports; whatever it started is killed afterwards.
pub fn run_on_host(tracer: &Path, cache: &Path, log: &Path, options: &Options) -> Result<Run> {
    let scratch = cache.join("host-run");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    let smoke = scratch.join("smoke");
    fs::create_dir_all(&smoke).with_context(|| format!("creating {}", smoke.display()))?;
    for (name, text) in SMOKE_FILES {
        let path = smoke.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let [http, https, redis] = free_ports()?;
    let mut sh = Command::new("busybox");
    sh.arg("sh")
        .arg(smoke.join("smoke.sh"))
        .env("SMOKE_WORK", scratch.join("work"))
        .env("SMOKE_TRACER", tracer)
        .env("SMOKE_HTTP_PORT", http.to_string())
        .env("SMOKE_HTTPS_PORT", https.to_string())
        .env("SMOKE_REDIS_PORT", redis.to_string())
        // Its own process group, so nginx's worker and anything else the
        // suite leaves behind go with it.
        .process_group(0);
    eprintln!(
        "xtask: running the smoke suite on the host kernel (log {})",
        shown(log)
    );
    let run = run_logged(&mut sh, log, options.timeout, true);
    if options.keep {
        eprintln!("xtask: keeping the host run's files in {}", shown(&scratch));
    } else {
        fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    run
}

/// Three loopback ports nothing listens on now.
fn free_ports() -> Result<[u16; 3]> {
    // Held together, so the three differ.
    let listeners = [(); 3].map(|()| TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
    }
    Ok(ports)
}

/// Runs `cmd` with stdout and stderr into `log`, killing it after
/// `timeout`. With `group`, `cmd` leads a process group, and whatever is
/// left in it is killed at the end, however the run ended.
fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration, group: bool) -> Result<Run> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let stderr = file
        .try_clone()
        .with_context(|| format!("duplicating {}", log.display()))?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let finished = wait_until(&mut child, started + timeout)?;
    let elapsed = started.elapsed();
    if group {
        kill_group(child.id());
    }
    if !finished {
        let _ = child.kill();
        child.wait().context("reaping a killed run")?;
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        writeln!(file, "\nxtask: killed after {} s", timeout.as_secs())
            .with_context(|| format!("writing {}", log.display()))?;
    }
    Ok(Run {
        log: log.to_path_buf(),
        elapsed,
        timed_out: !finished,
    })
}

/// Waits for `child` until `deadline`; whether it exited.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<bool> {
    while Instant::now() < deadline {
        if child.try_wait().context("waiting for a run")?.is_some() {
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(false)
}

/// SIGKILL to process group `pgid`, if there is one.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
