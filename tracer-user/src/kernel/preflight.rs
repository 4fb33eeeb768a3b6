//! What must hold before loading: root, BTF, tracefs. Each failure is a
//! one-line error that says what to do.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error("tracer must run as root (it loads eBPF programs); try: sudo tracer ...")]
    NotRoot,
    #[error("this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); a kernel built with CONFIG_DEBUG_INFO_BTF=y is required")]
    NoBtf,
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); mount it with: mount -t tracefs tracefs /sys/kernel/tracing")]
    NoTracefs(std::io::Error),
}

const TRACEFS: &str = "/sys/kernel/tracing";

pub fn check() -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(PreflightError::NotRoot);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    ensure_tracefs()
}

/// Syscall tracepoints are attached by name through tracefs; some systems
/// leave it unmounted.
fn ensure_tracefs() -> Result<(), PreflightError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let ret = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(PreflightError::NoTracefs(std::io::Error::last_os_error()));
    }
    log::debug!("mounted tracefs at {TRACEFS}");
    Ok(())
}
