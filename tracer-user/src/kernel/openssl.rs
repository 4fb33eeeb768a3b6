//! Finding the OpenSSL each traced process uses: a `libssl.so*` in its
//! memory maps, or OpenSSL linked into its executable.

use std::{
    collections::HashSet,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{capabilities, AttachedKernel, KernelError};

/// Libraries and executables already hooked, by (device, inode) so a path
/// seen through different names is hooked once.
#[derive(Default)]
pub struct OpensslHooks {
    hooked: HashSet<(u64, u64)>,
    /// Executables already checked for a linked-in OpenSSL.
    checked: HashSet<(u64, u64)>,
    /// Files whose hooking failed once: not tried again, so a failure is
    /// reported once rather than at every housekeeping.
    failed: HashSet<(u64, u64)>,
    /// Without `CAP_SYS_ADMIN` the kernel may refuse uprobes (Linux 6.16
    /// and the stable kernels of July 2025 on): then hooking stops, with
    /// one warning, and tracing goes on.
    stop_if_refused: bool,
    /// Set once uprobes were refused: nothing is hooked, TLS connections
    /// are counted as not decrypted.
    off: bool,
}

/// `libssl.so*` files mapped by `pid`, as paths valid in our mount namespace.
pub fn mapped_libssl(pid: u32) -> Vec<PathBuf> {
    let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    // Read every second for every traced process: look only at the lines
    // naming a libssl (found with one search of the whole text) instead of
    // splitting every line.
    let text = maps.as_bytes();
    let mut paths: Vec<PathBuf> = memchr::memmem::find_iter(text, b"libssl.so")
        .filter_map(|at| {
            let start = text
                .get(..at)?
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', text.get(at..)?).map_or(text.len(), |i| at + i);
            let mut fields = maps.get(start..end)?.split_whitespace();
            let inode: u64 = fields.nth(4)?.parse().ok()?;
            Some((inode, fields.next()?))
        })
        .filter(|(_, path)| {
            Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libssl.so"))
        })
        .filter_map(|(inode, path)| file_of_mapping(pid, path, inode))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Where we open a file `pid` maps as `path`: the maps name it as seen from
/// the reader's root when it can (a process in a chroot sharing our mounts
/// shows host paths), else from the process's own mounts (a container
/// after `pivot_root`), which `/proc/PID/root` reaches. The candidate with
/// the mapping's inode wins; overlay filesystems may report the inode of
/// the layer below, so without a match the container's view is taken.
fn file_of_mapping(pid: u32, path: &str, inode: u64) -> Option<PathBuf> {
    let in_process_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    let candidates = [in_process_root.clone(), PathBuf::from(path)];
    candidates
        .into_iter()
        .find(|candidate| fs::metadata(candidate).is_ok_and(|m| m.ino() == inode))
        .or_else(|| in_process_root.exists().then_some(in_process_root))
}

/// The system's default libssl (`ldconfig -p`), for processes that load it
/// later (`dlopen`, `--comm`, children exec'd after attach) and may call it
/// before their maps can be read.
pub fn system_libssl() -> Vec<PathBuf> {
    // `/sbin` may be missing from a non-login root PATH.
    let Some(out) = ["ldconfig", "/sbin/ldconfig"]
        .into_iter()
        .find_map(|ldconfig| std::process::Command::new(ldconfig).arg("-p").output().ok())
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("libssl.so"))
        .filter_map(|l| l.rsplit("=> ").next().map(|p| PathBuf::from(p.trim())))
        .collect()
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl OpensslHooks {
    /// `without_sys_admin`: a refusal of uprobes turns TLS hooking off
    /// instead of being an error.
    pub fn new(without_sys_admin: bool) -> Self {
        OpensslHooks {
            stop_if_refused: without_sys_admin,
            ..OpensslHooks::default()
        }
    }

    /// Hooks `path` unless it was hooked already; returns whether it is now.
    pub fn hook(&mut self, kernel: &mut AttachedKernel, path: &Path) -> Result<bool, KernelError> {
        if self.off {
            return Ok(false);
        }
        let Some(id) = file_id(path) else {
            return Ok(false);
        };
        if self.hooked.contains(&id) {
            return Ok(true);
        }
        if self.failed.contains(&id) {
            return Ok(false);
        }
        let functions = match kernel.attach_openssl(path) {
            Ok(functions) => functions,
            Err(err) if self.stop_if_refused && err.is_permission_denied() => {
                log::warn!("{}", capabilities::tls_refused_message(&err));
                self.off = true;
                return Ok(false);
            }
            Err(err) => {
                self.failed.insert(id);
                return Err(err);
            }
        };
        if functions > 0 {
            log::info!("hooked {functions} OpenSSL functions in {}", path.display());
            self.hooked.insert(id);
        }
        Ok(functions > 0)
    }

    /// Hooks whatever OpenSSL `pid` uses now.
    pub fn hook_process(
        &mut self,
        kernel: &mut AttachedKernel,
        pid: u32,
    ) -> Result<(), KernelError> {
        if self.off {
            return Ok(());
        }
        for lib in mapped_libssl(pid) {
            self.hook(kernel, &lib)?;
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        if let Some(id) = file_id(&exe) {
            if self.checked.insert(id) {
                self.hook(kernel, &exe)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::file_of_mapping;

    #[test]
    fn a_mapping_is_opened_where_its_inode_is() {
        let pid = std::process::id();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let inode = std::fs::metadata(&exe).unwrap().ino();
        let path = exe.to_str().unwrap();
        assert_eq!(
            file_of_mapping(pid, path, inode),
            Some(std::path::PathBuf::from(format!("/proc/{pid}/root{path}")))
        );
        // Not where the maps say: neither view has the file.
        assert_eq!(file_of_mapping(pid, "/no/such/libssl.so.3", inode), None);
    }
}
