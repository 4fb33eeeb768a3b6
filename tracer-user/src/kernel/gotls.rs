//! Finding Go's `crypto/tls` in traced executables: the build info says a
//! file is Go and which version; the symbol table gives
//! `crypto/tls.(*Conn).Write` and `.Read` and the `*net.TCPConn` itab (in a
//! stripped executable, Go's own tables do: [`super::gosymbols`]); the
//! return instructions of `Read` are found by decoding its machine code
//! (uretprobes would break Go's movable stacks).

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};
use thiserror::Error;
use tracer_common::maps::GoProcess;

use super::{
    gosymbols::{go_minor, uvarint, GoSymbols},
    AttachedKernel, KernelError,
};

const WRITE: &str = "crypto/tls.(*Conn).Write";
const READ: &str = "crypto/tls.(*Conn).Read";
/// The itab's symbol: `go.itab.` before Go 1.20, `go:itab.` since.
const TCP_CONN_ITABS: [&str; 2] = [
    "go.itab.*net.TCPConn,net.Conn",
    "go:itab.*net.TCPConn,net.Conn",
];
/// The register ABI (arguments in `RAX`, `RBX`, ...; `g` in `R14`) came
/// with Go 1.17.
const FIRST_MINOR: u32 = 17;
/// Most return instructions hooked in `Read` (Go emits a handful).
const MAX_RETURNS: usize = 32;

#[derive(Debug, Error)]
pub enum GoTlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an ELF file the tracer can read: {source}", path.display())]
    Elf {
        path: PathBuf,
        source: object::Error,
    },
    #[error("{}: built with {version}; Go TLS is decrypted for Go 1.17 and later (register ABI), from executables whose build info names the version (Go 1.18 and later)", path.display())]
    Unsupported { path: PathBuf, version: String },
    #[error("{}: {what}", path.display())]
    Layout { path: PathBuf, what: String },
    /// Stripped of its symbol table, and Go's own tables did not give all
    /// that is needed: not hooked rather than hooked wrongly.
    #[error("{}: stripped Go executable ({version}): {what}", path.display())]
    Stripped {
        path: PathBuf,
        version: String,
        what: String,
    },
}

/// Where the probes go in one executable: file offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTlsProbes {
    pub write: u64,
    pub read: u64,
    pub read_returns: Vec<u64>,
}

/// A Go executable using `crypto/tls`.
#[derive(Clone, Debug)]
pub struct GoTlsBinary {
    pub version: String,
    pub probes: GoTlsProbes,
    /// The `*net.TCPConn` itab's link-time address.
    pub tcp_conn_itab: u64,
    /// Position-independent: run-time addresses are shifted by where the
    /// process mapped it.
    pub pie: bool,
    /// The link-time address of the file's start (offset 0): 0 for most
    /// PIEs, but Go's own linker links them at 0x400000.
    pub link_base: u64,
}

/// Whether `path` is a Go executable (has Go build info).
fn is_go(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|elf| elf.section_by_name(".go.buildinfo").is_some())
}

/// `Ok(None)`: not Go, or Go without `crypto/tls`. Reads only the parts
/// of the file it needs (executables such as `node` are ~100 MB).
pub fn inspect(path: &Path) -> Result<Option<GoTlsBinary>, GoTlsError> {
    let file = fs::File::open(path).map_err(|source| GoTlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cache = object::ReadCache::new(file);
    let file = object::File::parse(&cache).map_err(|source| GoTlsError::Elf {
        path: path.to_owned(),
        source,
    })?;
    let Some(buildinfo) = file.section_by_name(".go.buildinfo") else {
        return Ok(None);
    };
    let version = buildinfo
        .data()
        .ok()
        .and_then(go_version)
        .unwrap_or_else(|| "a Go version older than 1.18".to_owned());
    // Go's own tables are read only when the symbol table lacks a name.
    let go_symbols = OnceCell::new();
    let go_symbols = || {
        go_symbols
            .get_or_init(|| {
                GoSymbols::parse(&file, &version)
                    .inspect_err(|err| log::debug!("{}: {err}", path.display()))
                    .ok()
            })
            .as_ref()
    };
    let symbol = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| (s.address(), s.size()))
            .or_else(|| go_symbols()?.function(name))
    };
    let (Some(write), Some(read)) = (symbol(WRITE), symbol(READ)) else {
        return Ok(None);
    };
    if !minor_at_least(&version, FIRST_MINOR) {
        return Err(GoTlsError::Unsupported {
            path: path.to_owned(),
            version,
        });
    }
    let layout = |what: String| GoTlsError::Layout {
        path: path.to_owned(),
        what,
    };
    let tcp_conn_itab = TCP_CONN_ITABS
        .iter()
        .find_map(|name| symbol(name))
        .map(|(address, _)| address)
        .or_else(|| go_symbols()?.itab("*net.TCPConn", "net.Conn"));
    let tcp_conn_itab = match tcp_conn_itab {
        Some(address) => address,
        None if file.symbols().next().is_none() => {
            return Err(GoTlsError::Stripped {
                path: path.to_owned(),
                version,
                what: "no *net.TCPConn itab found in Go's module data".to_owned(),
            })
        }
        None => {
            return Err(layout(
                "no *net.TCPConn itab in the symbol table".to_owned(),
            ))
        }
    };
    let text = file
        .section_by_name(".text")
        .ok_or_else(|| layout("no .text section".to_owned()))?;
    let (text_offset, _) = text
        .file_range()
        .ok_or_else(|| layout(".text has no file range".to_owned()))?;
    let file_offset = |address: u64| address - text.address() + text_offset;
    let read_code = text
        .data_range(read.0, read.1)
        .ok()
        .flatten()
        .ok_or_else(|| layout(format!("{READ} is not inside .text")))?;
    let returns = return_addresses(read_code, read.0);
    if returns.is_empty() || returns.len() > MAX_RETURNS {
        return Err(layout(format!(
            "{} return instructions decoded in {READ}",
            returns.len()
        )));
    }
    Ok(Some(GoTlsBinary {
        version,
        probes: GoTlsProbes {
            write: file_offset(write.0),
            read: file_offset(read.0),
            read_returns: returns.into_iter().map(file_offset).collect(),
        },
        tcp_conn_itab,
        pie: file.kind() == object::ObjectKind::Dynamic,
        link_base: file
            .segments()
            .find(|segment| segment.file_range().0 == 0)
            .map_or(0, |segment| segment.address()),
    }))
}

/// The addresses of the `RET` instructions of the function whose machine
/// code `code` starts at `address`.
fn return_addresses(code: &[u8], address: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut returns = Vec::new();
    for instruction in &mut decoder {
        if instruction.is_invalid() {
            // Undecodable bytes: no instruction boundary can be trusted.
            return Vec::new();
        }
        if instruction.mnemonic() == Mnemonic::Ret {
            returns.push(instruction.ip());
        }
    }
    returns
}

/// The version in Go 1.18+ build info (`go1.19.8`): after the 16-byte
/// header, when its flags say the strings are inline, a varint length.
pub(super) fn go_version(buildinfo: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    const INLINE: u8 = 2;
    if !buildinfo.starts_with(MAGIC) || buildinfo.get(15)? & INLINE == 0 {
        return None;
    }
    let rest = buildinfo.get(32..)?;
    let (len, used) = uvarint(rest)?;
    let len = usize::try_from(len).ok()?;
    let bytes = rest.get(used..used.checked_add(len)?)?;
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// Whether `version` (`go1.N...`) is Go 1.`minor` or later.
fn minor_at_least(version: &str, minor: u32) -> bool {
    go_minor(version).is_some_and(|n| n >= minor)
}

/// Where `pid` mapped `exe`'s start (offset 0); less its link-time
/// address, the shift of a PIE's addresses.
fn mapped_start(pid: u32, exe: &Path) -> Option<u64> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let exe = exe.to_str()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let offset = fields.nth(1)?;
        let path = fields.nth(2)?;
        if path != exe || u64::from_str_radix(offset, 16).ok()? != 0 {
            return None;
        }
        u64::from_str_radix(range.split('-').next()?, 16).ok()
    })
}

/// Executables inspected, hooked, and processes registered.
pub struct GoTlsHooks {
    /// As for OpenSSL: without `CAP_SYS_ADMIN` the kernel may refuse
    /// uprobes; then Go TLS is not hooked (the OpenSSL hooks said so).
    stop_if_refused: bool,
    off: bool,
    /// By (device, inode): what inspecting it found (`None`: no Go TLS, or
    /// it could not be hooked: reported once).
    binaries: HashMap<(u64, u64), Option<GoTlsBinary>>,
    /// Executables with Go build info, hooked or not.
    go_executables: HashSet<(u64, u64)>,
    registered: HashSet<u32>,
    /// Go processes found since [`Self::take_go_processes`].
    found: Vec<u32>,
}

impl GoTlsHooks {
    pub fn new(without_sys_admin: bool) -> Self {
        GoTlsHooks {
            stop_if_refused: without_sys_admin,
            off: false,
            binaries: HashMap::new(),
            go_executables: HashSet::new(),
            registered: HashSet::new(),
            found: Vec::new(),
        }
    }

    /// Hooks `pid`'s executable if it is Go with `crypto/tls`, and lets the
    /// probes follow `pid`'s connections.
    pub fn hook_process(
        &mut self,
        kernel: &mut AttachedKernel,
        pid: u32,
    ) -> Result<(), KernelError> {
        if self.registered.contains(&pid) {
            return Ok(());
        }
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let Ok(meta) = fs::metadata(&exe) else {
            return Ok(());
        };
        let id = (meta.dev(), meta.ino());
        if !self.binaries.contains_key(&id) {
            if is_go(&exe) {
                self.go_executables.insert(id);
            }
            let found = if self.off {
                Ok(None)
            } else {
                self.hook_executable(kernel, &exe)
            };
            self.binaries
                .insert(id, found.as_ref().ok().cloned().flatten());
            found?;
        }
        self.registered.insert(pid);
        if self.go_executables.contains(&id) {
            self.found.push(pid);
        }
        let Some(Some(binary)) = self.binaries.get(&id) else {
            return Ok(());
        };
        let bias = if binary.pie {
            let Some(start) = fs::read_link(&exe)
                .ok()
                .and_then(|path| mapped_start(pid, &path))
            else {
                return Ok(());
            };
            start.wrapping_sub(binary.link_base)
        } else {
            0
        };
        kernel.register_go_process(
            pid,
            GoProcess {
                tcp_conn_itab: binary.tcp_conn_itab.wrapping_add(bias),
            },
        )
    }

    /// Go processes seen since the last call.
    pub fn take_go_processes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.found)
    }

    fn hook_executable(
        &mut self,
        kernel: &mut AttachedKernel,
        exe: &Path,
    ) -> Result<Option<GoTlsBinary>, KernelError> {
        let binary = match inspect(exe) {
            Ok(Some(binary)) => binary,
            Ok(None) => return Ok(None),
            // Not something to hook (gone, unreadable, not ELF).
            Err(err @ (GoTlsError::Read { .. } | GoTlsError::Elf { .. })) => {
                log::debug!("{err}");
                return Ok(None);
            }
            Err(err @ (GoTlsError::Unsupported { .. } | GoTlsError::Stripped { .. })) => {
                log::warn!("{err}; its TLS connections are counted as not decrypted");
                return Ok(None);
            }
            Err(err @ GoTlsError::Layout { .. }) => return Err(KernelError::GoTls(Box::new(err))),
        };
        match kernel.attach_go_tls(exe, &binary.probes) {
            Ok(()) => {}
            Err(err) if self.stop_if_refused && err.is_permission_denied() => {
                self.off = true;
                return Ok(None);
            }
            Err(err) => return Err(err),
        }
        log::info!(
            "hooked Go crypto/tls ({}) in {}: {} return instructions of Read",
            binary.version,
            exe.display(),
            binary.probes.read_returns.len()
        );
        Ok(Some(binary))
    }

    /// `pid` exited or exec'd: its executable is looked at again.
    pub fn forget(&mut self, pid: u32) {
        self.registered.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::{go_version, minor_at_least, return_addresses, uvarint};

    #[test]
    fn versions() {
        assert!(minor_at_least("go1.19.8", 17));
        assert!(minor_at_least("go1.17", 17));
        assert!(minor_at_least("go1.22rc1", 17));
        assert!(!minor_at_least("go1.16.15", 17));
        assert!(!minor_at_least("a Go version older than 1.18", 17));
    }

    #[test]
    fn build_info_of_go_1_18_and_later() {
        let mut info = b"\xff Go buildinf:\x08\x02".to_vec();
        info.resize(32, 0);
        info.push(8);
        info.extend_from_slice(b"go1.19.8");
        assert_eq!(go_version(&info).as_deref(), Some("go1.19.8"));
        info[15] = 0; // pointers, as before Go 1.18
        assert_eq!(go_version(&info), None);
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
    }

    #[test]
    fn returns_are_found_at_instruction_boundaries() {
        // mov rax, 0xc3c3c3c3 (C3 bytes inside an instruction); add rsp, 8;
        // pop rbp; ret; nop; ret.
        let code = [
            0x48, 0xc7, 0xc0, 0xc3, 0xc3, 0xc3, 0x43, 0x48, 0x83, 0xc4, 0x08, 0x5d, 0xc3, 0x90,
            0xc3,
        ];
        assert_eq!(return_addresses(&code, 0x1000), [0x100c, 0x100e]);
    }
}
