//! The Linux capabilities the tracer needs, so that it can run as an
//! unprivileged user holding only those (least privilege) and say in one
//! line which one is missing instead of failing deep inside a load.

use std::fmt;

/// A capability the tracer may need, with its number from
/// `<linux/capability.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    DacOverride = 1,
    DacReadSearch = 2,
    SysPtrace = 19,
    SysAdmin = 21,
    SysResource = 24,
    Perfmon = 38,
    Bpf = 39,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::DacOverride => "CAP_DAC_OVERRIDE",
            Capability::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::SysResource => "CAP_SYS_RESOURCE",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One capability the tracer needs, what for, and which other capability
/// the kernel accepts in its place (on kernels before 5.8, which have no
/// `CAP_BPF` / `CAP_PERFMON`, root's `CAP_SYS_ADMIN` stands for both).
pub struct Requirement {
    pub capability: Capability,
    pub alternative: Option<Capability>,
    pub needed_for: &'static str,
}

/// The set, found by leaving each out in turn on Linux 6.18 (README,
/// "Deploy"; `tests/deploy.rs` runs the tracer with exactly these and with
/// each one left out). TLS plaintext needs two more, see
/// [`tls_refused_message`]. `CAP_SYS_RESOURCE` is not among them: only
/// kernels before 5.11 charge eBPF memory to `RLIMIT_MEMLOCK`, and there
/// the load error names it.
pub const REQUIRED: &[Requirement] = &[
    Requirement {
        capability: Capability::Bpf,
        alternative: Some(Capability::SysAdmin),
        needed_for: "creating eBPF maps and loading programs",
    },
    Requirement {
        capability: Capability::Perfmon,
        alternative: Some(Capability::SysAdmin),
        needed_for: "loading and attaching tracing programs",
    },
    Requirement {
        capability: Capability::DacReadSearch,
        alternative: Some(Capability::DacOverride),
        needed_for: "reading tracepoint ids in tracefs, which only root may read",
    },
];

/// Why the TLS hooks are off when uprobes were refused: since Linux 6.16
/// (commit "perf: Revert to requiring `CAP_SYS_ADMIN` for uprobes", also in
/// the stable kernels of July 2025) `CAP_PERFMON` no longer allows them.
pub fn tls_refused_message(err: &dyn std::error::Error) -> String {
    format!(
        "TLS plaintext is not captured: the kernel refused uprobes on OpenSSL ({err}); they need \
         CAP_SYS_ADMIN (and CAP_SYS_PTRACE for other users' processes); everything else is traced, \
         TLS connections are counted as not decrypted"
    )
}

/// Hooks on the system's libssl work without `CAP_SYS_PTRACE`; finding
/// another copy needs the maps of processes that may belong to others.
pub fn no_ptrace_message() -> &'static str {
    "without CAP_SYS_PTRACE only the system's libssl is hooked: OpenSSL that other users' \
     processes map from elsewhere (containers, bundled copies) is not found, and their TLS \
     connections are counted as not decrypted"
}

/// The capabilities in effect, as a bit set (`CapEff` of `/proc/self/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilitySet(u64);

impl CapabilitySet {
    /// Every capability: what is assumed when the set cannot be read.
    pub const ALL: CapabilitySet = CapabilitySet(u64::MAX);

    /// This thread's effective set; `None` when `/proc/self/status` cannot
    /// be read or has no `CapEff` line (then the kernel will tell).
    pub fn effective() -> Option<CapabilitySet> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::from_status(&status)
    }

    fn from_status(status: &str) -> Option<CapabilitySet> {
        let hex = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))?
            .trim();
        u64::from_str_radix(hex, 16).ok().map(CapabilitySet)
    }

    pub fn has(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The requirements of `required` this set does not meet.
    pub fn missing(self, required: &[Requirement]) -> Vec<&Requirement> {
        required
            .iter()
            .filter(|req| {
                !self.has(req.capability) && !req.alternative.is_some_and(|alt| self.has(alt))
            })
            .collect()
    }
}

/// The one line for missing capabilities: each named with what it is for,
/// then the whole set to grant.
pub fn missing_message(missing: &[&Requirement]) -> String {
    let listed: Vec<String> = missing
        .iter()
        .map(|req| format!("{} ({})", req.capability, req.needed_for))
        .collect();
    let all: Vec<&str> = REQUIRED.iter().map(|req| req.capability.name()).collect();
    format!(
        "missing capabilit{} {}; run as root or grant {} (README, \"Deploy\")",
        if missing.len() == 1 { "y" } else { "ies" },
        listed.join(", "),
        all.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapabilitySet {
        CapabilitySet(caps.iter().fold(0, |bits, cap| bits | cap.bit()))
    }

    #[test]
    fn reads_cap_eff_of_a_real_status_file() {
        // Lines of this machine's /proc/self/status as root (CAP_SYS_RESOURCE
        // withheld by the VM) and under `setpriv --ambient-caps
        // +bpf,+perfmon,+sys_ptrace,+dac_read_search`.
        let root = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let caps = CapabilitySet::from_status(root).expect("CapEff");
        assert!(caps.has(Capability::Bpf) && caps.has(Capability::SysAdmin));
        assert!(!caps.has(Capability::SysResource));
        assert!(caps.missing(REQUIRED).is_empty());

        let ambient =
            "CapInh:\t000000c000080004\nCapPrm:\t000000c000080004\nCapEff:\t000000c000080004\n";
        let caps = CapabilitySet::from_status(ambient).expect("CapEff");
        assert_eq!(
            caps,
            set(&[
                Capability::Bpf,
                Capability::Perfmon,
                Capability::SysPtrace,
                Capability::DacReadSearch
            ])
        );
        assert!(caps.missing(REQUIRED).is_empty());
        assert_eq!(CapabilitySet::from_status("Name:\tx\n"), None);
    }

    #[test]
    fn each_requirement_is_named_when_missing() {
        let full = [
            Capability::Bpf,
            Capability::Perfmon,
            Capability::DacReadSearch,
        ];
        for dropped in full {
            let caps = set(&full
                .iter()
                .copied()
                .filter(|&c| c != dropped)
                .collect::<Vec<_>>());
            let missing = caps.missing(REQUIRED);
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].capability, dropped);
            let line = missing_message(&missing);
            assert!(
                line.starts_with(&format!("missing capability {dropped} (")),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn older_kernels_alternatives_count() {
        // CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON, CAP_DAC_OVERRIDE
        // for CAP_DAC_READ_SEARCH.
        let caps = set(&[Capability::SysAdmin, Capability::DacOverride]);
        assert!(caps.missing(REQUIRED).is_empty());
        let none = set(&[]).missing(REQUIRED);
        assert_eq!(none.len(), REQUIRED.len());
        assert!(missing_message(&none).starts_with("missing capabilities CAP_BPF ("));
    }
}
