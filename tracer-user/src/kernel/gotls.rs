//! Go executables among the traced processes: the build info says a file
//! is Go and which version; the symbol table gives
//! `crypto/tls.(*Conn).Write` and `.Read` and the `*net.TCPConn` itab (TLS
//! plaintext), and `net/http.(*Transport).roundTrip` and
//! `net/http.(*Request).write` (which goroutine an HTTP request is sent
//! for), and `runtime.newproc1` (which goroutine made which); in a
//! stripped executable Go's own tables give them ([`super::gosymbols`]).
//! Return instructions are found by decoding machine code (uretprobes would
//! break Go's movable stacks). The ELF's TLS segment says where a thread
//! keeps its running goroutine.

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
const ROUND_TRIP: &str = "net/http.(*Transport).roundTrip";
const REQUEST_WRITE: &str = "net/http.(*Request).write";
const NEWPROC1: &str = "runtime.newproc1";
/// `newproc1` takes its creator `g` in `RBX` since Go 1.18 (1.17 passed
/// more arguments before it).
const NEWPROC1_CREATOR_IN_RBX: u32 = 18;
/// Go's thread-local `g` slot when the linker put other TLS beside it.
const TLSG: &str = "runtime.tlsg";
/// The itab's symbol: `go.itab.` before Go 1.20, `go:itab.` since.
const TCP_CONN_ITABS: [&str; 2] = [
    "go.itab.*net.TCPConn,net.Conn",
    "go:itab.*net.TCPConn,net.Conn",
];
/// The register ABI (arguments in `RAX`, `RBX`, ...; `g` in `R14`) came
/// with Go 1.17.
const FIRST_MINOR: u32 = 17;
/// Most return instructions hooked in a function (Go emits a handful).
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

/// Where the HTTP client probes go: function entries, file offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoHttpProbes {
    pub round_trip: u64,
    pub request_write: u64,
}

/// Where the goroutine creation probes go: `newproc1`'s entry and its
/// return instructions, file offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoSpawnProbes {
    pub entry: u64,
    pub returns: Vec<u64>,
}

/// Every probe of one Go executable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoProbes {
    pub tls: Option<GoTlsProbes>,
    pub http_client: Option<GoHttpProbes>,
    pub spawn: Option<GoSpawnProbes>,
}

/// A Go executable with the register ABI (Go ≥ 1.17).
#[derive(Clone, Debug)]
pub struct GoBinary {
    pub version: String,
    pub probes: GoProbes,
    /// The `*net.TCPConn` itab's link-time address (0 without TLS probes).
    pub tcp_conn_itab: u64,
    /// Where a thread's running `g` is, from its FS base; `None`: unknown,
    /// goroutines are not read.
    pub g_tls_offset: Option<i64>,
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

/// `Ok(None)`: not Go. Reads only the parts of the file it needs
/// (executables such as `node` are ~100 MB).
pub fn inspect(path: &Path) -> Result<Option<GoBinary>, GoTlsError> {
    let file = fs::File::open(path).map_err(|source| GoTlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cache = object::ReadCache::new(file);
    let elf =
        object::read::elf::ElfFile64::<object::Endianness, _>::parse(&cache).map_err(|source| {
            GoTlsError::Elf {
                path: path.to_owned(),
                source,
            }
        })?;
    let Some(buildinfo) = elf.section_by_name(".go.buildinfo") else {
        return Ok(None);
    };
    let version = buildinfo
        .data()
        .ok()
        .and_then(go_version)
        .unwrap_or_else(|| "a Go version older than 1.18".to_owned());
    if !minor_at_least(&version, FIRST_MINOR) {
        return Err(GoTlsError::Unsupported {
            path: path.to_owned(),
            version,
        });
    }
    let symbols = Symbols::new(&elf);
    // Go's own tables are read only when the symbol table lacks a name.
    let go_symbols = OnceCell::new();
    let go_symbols = || {
        go_symbols
            .get_or_init(|| {
                GoSymbols::parse(&elf, &version)
                    .inspect_err(|err| log::debug!("{}: {err}", path.display()))
                    .ok()
            })
            .as_ref()
    };
    let function = |name: &str| symbols.get(name).or_else(|| go_symbols()?.function(name));
    let layout = |what: String| GoTlsError::Layout {
        path: path.to_owned(),
        what,
    };
    let text = elf
        .section_by_name(".text")
        .ok_or_else(|| layout("no .text section".to_owned()))?;
    let (text_offset, _) = text
        .file_range()
        .ok_or_else(|| layout(".text has no file range".to_owned()))?;
    let file_offset = |address: u64| address - text.address() + text_offset;
    let (tls, tcp_conn_itab) = match (function(WRITE), function(READ)) {
        (Some(write), Some(read)) => {
            let tcp_conn_itab = TCP_CONN_ITABS
                .iter()
                .find_map(|name| symbols.get(name))
                .map(|(address, _)| address)
                .or_else(|| go_symbols()?.itab("*net.TCPConn", "net.Conn"));
            let tcp_conn_itab = tcp_conn_itab
                .ok_or_else(|| no_itab(path, &version, elf.symbols().next().is_none()))?;
            let returns = function_returns(&text, READ, read).map_err(layout)?;
            let probes = GoTlsProbes {
                write: file_offset(write.0),
                read: file_offset(read.0),
                read_returns: returns.into_iter().map(file_offset).collect(),
            };
            (Some(probes), tcp_conn_itab)
        }
        _ => (None, 0),
    };
    let spawn = match function(NEWPROC1) {
        Some(newproc) if minor_at_least(&version, NEWPROC1_CREATOR_IN_RBX) => {
            let returns = function_returns(&text, NEWPROC1, newproc).map_err(layout)?;
            Some(GoSpawnProbes {
                entry: file_offset(newproc.0),
                returns: returns.into_iter().map(file_offset).collect(),
            })
        }
        _ => None,
    };
    let http_client = match (function(ROUND_TRIP), function(REQUEST_WRITE)) {
        (Some(round_trip), Some(request_write)) => Some(GoHttpProbes {
            round_trip: file_offset(round_trip.0),
            request_write: file_offset(request_write.0),
        }),
        _ => None,
    };
    Ok(Some(GoBinary {
        version,
        probes: GoProbes {
            tls,
            http_client,
            spawn,
        },
        tcp_conn_itab,
        g_tls_offset: g_tls_offset(tls_segment(&elf), symbols.get(TLSG).map(|(a, _)| a)),
        pie: elf.kind() == object::ObjectKind::Dynamic,
        link_base: link_base(&elf),
    }))
}

/// No `*net.TCPConn` itab: in a stripped executable, Go's tables did not
/// give it (not hooked); with a symbol table, a layout the tracer does not
/// know.
fn no_itab(path: &Path, version: &str, stripped: bool) -> GoTlsError {
    if stripped {
        GoTlsError::Stripped {
            path: path.to_owned(),
            version: version.to_owned(),
            what: "no *net.TCPConn itab found in Go's module data".to_owned(),
        }
    } else {
        GoTlsError::Layout {
            path: path.to_owned(),
            what: "no *net.TCPConn itab in the symbol table".to_owned(),
        }
    }
}

/// The link-time address of the file's start (offset 0).
fn link_base<'data>(file: &impl object::Object<'data>) -> u64 {
    file.segments()
        .find(|segment| segment.file_range().0 == 0)
        .map_or(0, |segment| segment.address())
}

/// The return instructions of the function `name` at `(address, size)`.
fn function_returns<'data, S: object::ObjectSection<'data>>(
    text: &S,
    name: &str,
    (address, size): (u64, u64),
) -> Result<Vec<u64>, String> {
    let code = text
        .data_range(address, size)
        .ok()
        .flatten()
        .ok_or_else(|| format!("{name} is not inside .text"))?;
    let returns = return_addresses(code, address);
    if returns.is_empty() || returns.len() > MAX_RETURNS {
        return Err(format!(
            "{} return instructions decoded in {name}",
            returns.len()
        ));
    }
    Ok(returns)
}

/// The symbol table, read once: (address, size) by name.
struct Symbols(HashMap<String, (u64, u64)>);

/// The few names looked up; everything else in a Go symbol table (tens of
/// thousands of entries) is skipped.
const WANTED: [&str; 8] = [
    WRITE,
    READ,
    ROUND_TRIP,
    REQUEST_WRITE,
    NEWPROC1,
    TLSG,
    TCP_CONN_ITABS[0],
    TCP_CONN_ITABS[1],
];

impl Symbols {
    fn new<'data>(file: &impl object::Object<'data>) -> Self {
        Symbols(
            file.symbols()
                .filter_map(|s| {
                    let name = s.name().ok()?;
                    WANTED
                        .contains(&name)
                        .then(|| (name.to_owned(), (s.address(), s.size())))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<(u64, u64)> {
        self.0.get(name).copied()
    }
}

/// The ELF's `PT_TLS` segment: (memory size, alignment).
fn tls_segment<'data, R: object::ReadRef<'data>>(
    elf: &object::read::elf::ElfFile64<'data, object::Endianness, R>,
) -> Option<(u64, u64)> {
    use object::read::elf::ProgramHeader as _;
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|header| header.p_type(endian) == object::elf::PT_TLS)
        .map(|header| (header.p_memsz(endian), header.p_align(endian)))
}

/// Where Go keeps `g` relative to the FS base (x86-64, TLS variant II: the
/// executable's TLS block ends at the thread pointer). Without a TLS
/// segment (static, internally linked) Go's runtime points FS 8 bytes past
/// its slot (`settls`): -8. With one, `runtime.tlsg`'s offset in the block
/// (the slot alone when the symbol is gone: internal linking).
fn g_tls_offset(segment: Option<(u64, u64)>, tlsg: Option<u64>) -> Option<i64> {
    let Some((size, align)) = segment else {
        return Some(-8);
    };
    let block = size.checked_next_multiple_of(align.max(1))?;
    let slot = match tlsg {
        Some(offset) => offset,
        None if size == 8 => 0,
        None => return None,
    };
    if slot.checked_add(8)? > size {
        return None;
    }
    i64::try_from(slot)
        .ok()?
        .checked_sub(i64::try_from(block).ok()?)
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
    /// uprobes; then Go is not hooked (the OpenSSL hooks said so).
    stop_if_refused: bool,
    off: bool,
    /// By (device, inode): what inspecting it found (`None`: not Go, or
    /// it could not be hooked: reported once).
    binaries: HashMap<(u64, u64), Option<GoBinary>>,
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

    /// Hooks `pid`'s executable if it is Go (its `crypto/tls`, its HTTP
    /// client), and registers `pid` with the programs: the TLS probes
    /// follow its connections, its syscalls carry their goroutine.
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
        if !self.binaries.contains_key(&id) && is_go(&exe) {
            self.go_executables.insert(id);
        }
        // Go or not is known even when hooking fails: linking by thread
        // would be wrong in a Go process.
        if self.go_executables.contains(&id) {
            self.found.push(pid);
        }
        if !self.binaries.contains_key(&id) {
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
        let tcp_conn_itab = if binary.probes.tls.is_some() {
            binary.tcp_conn_itab.wrapping_add(bias)
        } else {
            0
        };
        kernel.register_go_process(
            pid,
            GoProcess {
                tcp_conn_itab,
                g_tls_offset: binary.g_tls_offset.unwrap_or(0),
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
    ) -> Result<Option<GoBinary>, KernelError> {
        let binary = match inspect(exe) {
            Ok(Some(binary)) => binary,
            Ok(None) => return Ok(None),
            // Not something to hook (gone, unreadable, not ELF).
            Err(err @ (GoTlsError::Read { .. } | GoTlsError::Elf { .. })) => {
                log::debug!("{err}");
                return Ok(None);
            }
            Err(err @ (GoTlsError::Unsupported { .. } | GoTlsError::Stripped { .. })) => {
                log::warn!(
                    "{err}; its TLS connections are counted as not decrypted and its goroutines \
                     are not followed"
                );
                return Ok(None);
            }
            Err(err @ GoTlsError::Layout { .. }) => return Err(KernelError::GoTls(Box::new(err))),
        };
        match kernel.attach_go(exe, &binary.probes) {
            Ok(()) => {}
            Err(err) if self.stop_if_refused && err.is_permission_denied() => {
                self.off = true;
                return Ok(None);
            }
            Err(err) => return Err(err),
        }
        if let Some(tls) = &binary.probes.tls {
            log::info!(
                "hooked Go crypto/tls ({}) in {}: {} return instructions of Read",
                binary.version,
                exe.display(),
                tls.read_returns.len()
            );
        }
        if binary.probes.http_client.is_some() {
            log::info!(
                "hooked Go net/http's client ({}) in {}",
                binary.version,
                exe.display()
            );
        }
        if binary.g_tls_offset.is_none() {
            log::info!(
                "{}: where Go keeps the running goroutine is not known; its calls are not \
                 followed by goroutine",
                exe.display()
            );
        }
        Ok(Some(binary))
    }

    /// `pid` exited or exec'd: its executable is looked at again.
    pub fn forget(&mut self, pid: u32) {
        self.registered.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::{g_tls_offset, go_version, minor_at_least, return_addresses, uvarint};

    #[test]
    fn where_go_keeps_g() {
        // Static, internally linked (CGO_ENABLED=0): no TLS segment.
        assert_eq!(g_tls_offset(None, None), Some(-8));
        // Internally linked with cgo: an 8-byte segment, no symbol.
        assert_eq!(g_tls_offset(Some((8, 8)), None), Some(-8));
        // Externally linked: runtime.tlsg names the slot.
        assert_eq!(g_tls_offset(Some((8, 8)), Some(0)), Some(-8));
        assert_eq!(g_tls_offset(Some((24, 16)), Some(8)), Some(-24));
        // Other TLS and no symbol: unknown, never guessed.
        assert_eq!(g_tls_offset(Some((24, 8)), None), None);
        assert_eq!(g_tls_offset(Some((8, 8)), Some(8)), None);
    }

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
