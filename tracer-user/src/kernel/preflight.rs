//! What must hold before loading: the capabilities (root, or the set in
//! `capabilities`), BTF, tracefs. Each failure is a one-line error that says
//! what to do.

use std::path::Path;

use thiserror::Error;

use super::capabilities::{self, CapabilitySet};

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error("{0}")]
    MissingCapabilities(String),
    #[error("this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); a kernel built with CONFIG_DEBUG_INFO_BTF=y is required")]
    NoBtf,
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); mount it with: mount -t tracefs tracefs /sys/kernel/tracing")]
    NoTracefs(std::io::Error),
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Checks everything; returns the capabilities held, for the parts that
/// need more than the required set (TLS hooks).
pub fn check() -> Result<CapabilitySet, PreflightError> {
    let held = check_capabilities()?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    ensure_tracefs()?;
    Ok(held)
}

/// Root passes (it holds every capability); anyone else needs the set in
/// `capabilities::REQUIRED`. Without a readable `CapEff` the kernel's own
/// answers at load time are left to tell.
fn check_capabilities() -> Result<CapabilitySet, PreflightError> {
    let Some(effective) = CapabilitySet::effective() else {
        log::debug!("cannot read CapEff from /proc/self/status; not checking capabilities");
        return Ok(CapabilitySet::ALL);
    };
    let missing = effective.missing(capabilities::REQUIRED);
    if missing.is_empty() {
        Ok(effective)
    } else {
        Err(PreflightError::MissingCapabilities(
            capabilities::missing_message(&missing),
        ))
    }
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
