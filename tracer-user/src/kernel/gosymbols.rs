//! Go's own symbol tables, for executables built without an ELF `.symtab`
//! (`go build -ldflags="-s -w"`). Two tables survive stripping because the
//! Go runtime needs them itself:
//!
//! - `.gopclntab` (Go 1.18+ layout; `runtime/symtab.go` `pcHeader`,
//!   `functab`, `_func`): every function's name, entry and, through its
//!   stack-delta table, its exact size. Entries are offsets from the start
//!   of the text, which the header records up to Go 1.25; from Go 1.26 on
//!   that field is zero and only the module data has it.
//! - the module data (`runtime.firstmoduledata`, `moduledata` in
//!   `runtime/symtab.go`, written by `cmd/link/internal/ld/symtab.go`): found
//!   as the word that points at the pclntab header in `.noptrdata`/`.data`
//!   (or at the start of `.go.module`, Go 1.26+), checked against the
//!   pclntab it points to. Its `itablinks` list every itab of the program;
//!   an itab's interface and concrete type are told by their type names
//!   (`nameOff`s from `moduledata.types`).
//!
//! Only 64-bit little-endian executables; anything that does not check out
//! gives `None` (or an error), never a guess and never a panic.

use object::{Object, ObjectSection as _, SectionKind};
use thiserror::Error;

/// `pcHeader.magic` of Go 1.18 and 1.19, and of Go 1.20 and later (the
/// header layout is the same).
const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;
/// The header: magic, two pad bytes, `minLC`, `ptrSize`, then eight words
/// (`nfunc`, `nfiles`, `textStart`, and the offsets of `funcnametab`,
/// `cutab`, `filetab`, `pctab` and the function table).
const HEADER_SIZE: usize = 8 + 8 * WORD;
const WORD: usize = 8;
/// `pcHeader.ptrSize` of a 64-bit executable (`WORD`).
const PTR_SIZE: u8 = 8;
/// x86-64 instructions are byte-aligned: pc deltas are in bytes.
const MIN_LC: u8 = 1;
/// `_func`: `entryOff u32`, `nameOff i32`, `args i32`, `deferreturn u32`,
/// `pcsp u32`, ...
const FUNC_NAME_OFF: usize = 4;
const FUNC_PCSP: usize = 16;

/// Word indexes in `moduledata` common to Go 1.18 through 1.26: the
/// pcHeader, the `ftab` slice (pointer, length), and `text`.
const MD_PCHEADER: usize = 0;
const MD_FTAB: usize = 16;
const MD_TEXT: usize = 22;
/// Words a module data candidate must have: up to the end of the
/// `itablinks` slice in the longest layout (Go 1.26: words 48 to 50).
const MD_WORDS: usize = 51;

/// `abi.Type` (`runtime._type` before Go 1.21): `hash u32` at 16, `tflag`
/// at 20, `str nameOff` at 40; the same from Go 1.18 through 1.26.
const TYPE_HASH: usize = 16;
const TYPE_TFLAG: usize = 20;
const TYPE_STR: usize = 40;
const TYPE_SIZE: usize = 48;
/// `tflagExtraStar`: the stored name has an extra leading `*` (shared with
/// the pointer type's name).
const TFLAG_EXTRA_STAR: u8 = 1 << 1;
/// `itab`: `inter *interfacetype`, `_type *_type`, `hash u32` (a copy of
/// the type's hash).
const ITAB_SIZE: usize = 20;

#[derive(Debug, Error)]
pub enum GoSymbolsError {
    #[error("no .gopclntab section")]
    NoPclntab,
    #[error("reading the executable's data sections: {0}")]
    Read(#[from] object::Error),
    #[error("pclntab magic {0:#x}: not the layout of Go 1.18 or later")]
    UnknownMagic(u32),
    #[error("malformed pclntab: {0}")]
    Malformed(&'static str),
    #[error("the pclntab of Go 1.26 and later needs the module data, which was not found")]
    NoTextStart,
}

/// Where `moduledata` keeps `types` and `itablinks`, by Go version (word
/// indexes; Go 1.19's from its `runtime/symtab.go`, later ones as
/// reimplementations of the runtime's struct record them): Go 1.20 added
/// `covctrs, ecovctrs` before both, Go 1.26 `epclntab` between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModuleLayout {
    types: usize,
    itablinks: usize,
}

fn module_layout(minor: u32) -> Option<ModuleLayout> {
    match minor {
        18 | 19 => Some(ModuleLayout {
            types: 35,
            itablinks: 45,
        }),
        20..=25 => Some(ModuleLayout {
            types: 37,
            itablinks: 47,
        }),
        // Later versions are assumed to keep Go 1.26's layout; the checks
        // in `find_module` and `itab` turn a changed one into `None`.
        26.. => Some(ModuleLayout {
            types: 37,
            itablinks: 48,
        }),
        _ => None,
    }
}

/// The minor version of `go1.N...` (build info's version string).
pub fn go_minor(version: &str) -> Option<u32> {
    version
        .strip_prefix("go1.")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The parsed pclntab header.
#[derive(Clone, Copy, Debug)]
struct Header {
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    pctab: usize,
    functab: usize,
}

/// What the tracer uses of `moduledata`.
#[derive(Clone, Copy, Debug)]
struct Module {
    text: u64,
    types: u64,
    etypes: u64,
    itablinks: u64,
    itab_count: u64,
}

/// A loaded section: where it is mapped and its file contents.
struct Loaded<'data> {
    name: String,
    address: u64,
    data: &'data [u8],
}

/// Go's symbol tables of one executable.
pub struct GoSymbols<'data> {
    pclntab: &'data [u8],
    header: Header,
    /// Where function entries are counted from (`runtime.text`).
    text: u64,
    module: Option<Module>,
    sections: Vec<Loaded<'data>>,
}

impl<'data> GoSymbols<'data> {
    /// Reads the pclntab and looks for the module data of `file`, built by
    /// Go `version` (build info, `go1.N...`).
    pub fn parse<O: Object<'data>>(file: &O, version: &str) -> Result<Self, GoSymbolsError> {
        let sections = loaded_sections(file)?;
        let pclntab_section = sections
            .iter()
            .find(|s| s.name.ends_with(".gopclntab"))
            .ok_or(GoSymbolsError::NoPclntab)?;
        let pclntab = pclntab_section.data;
        let header = parse_header(pclntab)?;
        let module = go_minor(version)
            .and_then(module_layout)
            .and_then(|layout| find_module(&sections, pclntab_section.address, header, layout));
        let text = match (header.text_start, module) {
            (0, Some(module)) => module.text,
            (0, None) => return Err(GoSymbolsError::NoTextStart),
            (text_start, _) => text_start,
        };
        Ok(GoSymbols {
            pclntab,
            header,
            text,
            module,
            sections,
        })
    }

    /// Address and size of the function `name` (as Go names it:
    /// `crypto/tls.(*Conn).Read`). `None` if absent, or if the name is not
    /// unique (ABI wrappers share their function's name in the pclntab).
    pub fn function(&self, name: &str) -> Option<(u64, u64)> {
        let mut found = None;
        for index in 0..self.header.nfunc {
            let func = self.func_offset(index)?;
            if !self.func_named(func, name.as_bytes())? {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some((index, func));
        }
        let (index, func) = found?;
        let entry = self.entry(index)?;
        let span = self.entry(index + 1)?.checked_sub(entry)?;
        // The stack-delta table ends where the code ends; the next entry
        // also counts the alignment padding after it. Without a usable
        // table the span is still safe: padding is INT3s.
        let size = self
            .pcsp_length(func, span)
            .filter(|&length| length > 0)
            .unwrap_or(span);
        Some((self.text.checked_add(u64::from(entry))?, u64::from(size)))
    }

    /// The link-time address of the itab that makes `concrete` (e.g.
    /// `*net.TCPConn`) an `interface` (e.g. `net.Conn`). `None` unless
    /// exactly one itab of the module data matches, and also when any
    /// entry does not look like an itab: the module data was misread.
    pub fn itab(&self, concrete: &str, interface: &str) -> Option<u64> {
        let module = self.module?;
        let links = self.bytes_at(
            module.itablinks,
            module.itab_count.checked_mul(WORD as u64)?,
        )?;
        let mut found = None;
        for link in links.chunks_exact(WORD) {
            let itab = le_u64(link, 0)?;
            if !self.itab_is(module, itab, concrete, interface)? {
                continue;
            }
            if found.is_some() {
                return None;
            }
            found = Some(itab);
        }
        found
    }

    /// Whether `itab` pairs `concrete` with `interface`; `None` when it does
    /// not look like an itab at all.
    fn itab_is(&self, module: Module, itab: u64, concrete: &str, interface: &str) -> Option<bool> {
        let bytes = self.bytes_at(itab, ITAB_SIZE as u64)?;
        let inter = le_u64(bytes, 0)?;
        let typ = le_u64(bytes, WORD)?;
        let hash = le_u32(bytes, 2 * WORD)?;
        let is_type = |address: u64| (module.types..module.etypes).contains(&address);
        if !is_type(inter) || !is_type(typ) {
            return None;
        }
        let typ_bytes = self.bytes_at(typ, TYPE_SIZE as u64)?;
        // The runtime copies the type's hash into the itab.
        if le_u32(typ_bytes, TYPE_HASH)? != hash {
            return None;
        }
        Some(
            self.type_name(module, typ)? == concrete.as_bytes()
                && self.type_name(module, inter)? == interface.as_bytes(),
        )
    }

    /// The name of the type at `typ` (`*net.TCPConn`, `net.Conn`).
    fn type_name(&self, module: Module, typ: u64) -> Option<&'data [u8]> {
        let bytes = self.bytes_at(typ, TYPE_SIZE as u64)?;
        let tflag = *bytes.get(TYPE_TFLAG)?;
        let name_off = u64::try_from(le_i32(bytes, TYPE_STR)?).ok()?;
        let name = self.name(module.types.checked_add(name_off)?)?;
        if tflag & TFLAG_EXTRA_STAR != 0 {
            name.strip_prefix(b"*")
        } else {
            Some(name)
        }
    }

    /// An encoded `abi.Name` at `address`: a flags byte, a varint length,
    /// the bytes.
    fn name(&self, address: u64) -> Option<&'data [u8]> {
        let encoded = self.bytes_from(address)?.get(1..)?;
        let (len, used) = uvarint(encoded)?;
        encoded.get(used..)?.get(..usize::try_from(len).ok()?)
    }

    /// `len` bytes at link-time `address`.
    fn bytes_at(&self, address: u64, len: u64) -> Option<&'data [u8]> {
        self.bytes_from(address)?.get(..usize::try_from(len).ok()?)
    }

    /// The bytes from link-time `address` to the end of its section.
    fn bytes_from(&self, address: u64) -> Option<&'data [u8]> {
        self.sections.iter().find_map(|section| {
            let offset = usize::try_from(address.checked_sub(section.address)?).ok()?;
            section.data.get(offset..)
        })
    }

    /// The offset of function `index`'s `_func` in the pclntab.
    fn func_offset(&self, index: usize) -> Option<usize> {
        let entry = self.header.functab.checked_add(index.checked_mul(8)?)?;
        let funcoff = le_u32(self.pclntab, entry.checked_add(4)?)?;
        self.header
            .functab
            .checked_add(usize::try_from(funcoff).ok()?)
    }

    /// Function `index`'s entry as an offset from the text start; index
    /// `nfunc` is the end of the last function.
    fn entry(&self, index: usize) -> Option<u32> {
        le_u32(
            self.pclntab,
            self.header.functab.checked_add(index.checked_mul(8)?)?,
        )
    }

    /// Whether the `_func` at `func` is named `name` (NUL-terminated in
    /// the name table).
    fn func_named(&self, func: usize, name: &[u8]) -> Option<bool> {
        let name_off = le_i32(self.pclntab, func.checked_add(FUNC_NAME_OFF)?)?;
        let start = self
            .header
            .funcnames
            .checked_add(usize::try_from(name_off).ok()?)?;
        let stored = self.pclntab.get(start..)?;
        Some(stored.starts_with(name) && stored.get(name.len()) == Some(&0))
    }

    /// The code length the `_func` at `func` covers: the sum of the pc
    /// deltas of its stack-delta table (`runtime.step`); `None` past `limit`.
    fn pcsp_length(&self, func: usize, limit: u32) -> Option<u32> {
        let pcsp = le_u32(self.pclntab, func.checked_add(FUNC_PCSP)?)?;
        let start = self.header.pctab.checked_add(usize::try_from(pcsp).ok()?)?;
        let mut table = self.pclntab.get(start..)?;
        let mut length = 0u32;
        let mut first = true;
        loop {
            let (value_delta, used) = uvarint(table)?;
            table = table.get(used..)?;
            if value_delta == 0 && !first {
                return Some(length);
            }
            first = false;
            let (pc_delta, used) = uvarint(table)?;
            table = table.get(used..)?;
            length = length
                .checked_add(u32::try_from(pc_delta).ok()?)
                .filter(|&length| length <= limit)?;
        }
    }
}

/// The sections with contents in the file image (not `.bss`), which
/// pointers of the tables can point into.
fn loaded_sections<'data, O: Object<'data>>(
    file: &O,
) -> Result<Vec<Loaded<'data>>, GoSymbolsError> {
    let mut sections = Vec::new();
    for section in file.sections() {
        let wanted = matches!(
            section.kind(),
            SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::ReadOnlyString
        );
        if !wanted || section.address() == 0 {
            continue;
        }
        sections.push(Loaded {
            name: section.name().unwrap_or_default().to_owned(),
            address: section.address(),
            data: section.data()?,
        });
    }
    Ok(sections)
}

fn parse_header(pclntab: &[u8]) -> Result<Header, GoSymbolsError> {
    let malformed = GoSymbolsError::Malformed;
    let magic = le_u32(pclntab, 0).ok_or(malformed("shorter than its header"))?;
    if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
        return Err(GoSymbolsError::UnknownMagic(magic));
    }
    let head = pclntab
        .get(..HEADER_SIZE)
        .ok_or(malformed("shorter than its header"))?;
    if head.get(4..8) != Some(&[0, 0, MIN_LC, PTR_SIZE][..]) {
        return Err(malformed("not a 64-bit x86 pclntab"));
    }
    let word = |index: usize| {
        le_u64(head, 8 + index * WORD)
            .and_then(|value| usize::try_from(value).ok())
            .ok_or(malformed("header field out of range"))
    };
    let header = Header {
        nfunc: word(0)?,
        text_start: le_u64(head, 8 + 2 * WORD).ok_or(malformed("short header"))?,
        funcnames: word(3)?,
        pctab: word(6)?,
        functab: word(7)?,
    };
    // The function table: nfunc (entry, funcoff) pairs and the end entry.
    let table_end = header
        .nfunc
        .checked_mul(8)
        .and_then(|len| len.checked_add(header.functab)?.checked_add(4))
        .ok_or(malformed("function count out of range"))?;
    if table_end > pclntab.len() {
        return Err(malformed("function table beyond the section"));
    }
    Ok(header)
}

/// `moduledata`: at the start of `.go.module` (Go 1.26+) or the word in
/// `.noptrdata`/`.data` that points at the pclntab header, whose `ftab`
/// slice must be the pclntab's function table.
fn find_module(
    sections: &[Loaded<'_>],
    pclntab: u64,
    header: Header,
    layout: ModuleLayout,
) -> Option<Module> {
    let ftab = pclntab.checked_add(u64::try_from(header.functab).ok()?)?;
    let ftab_len = u64::try_from(header.nfunc).ok()?.checked_add(1)?;
    let candidates = sections.iter().flat_map(|section| {
        let own_section = section.name.ends_with("go.module");
        let searched = own_section || section.name == ".noptrdata" || section.name == ".data";
        searched
            .then_some(section.data)
            .into_iter()
            .flat_map(|data| data.chunks_exact(WORD).enumerate())
            .filter(move |&(index, word)| {
                (own_section && index == 0) || le_u64(word, 0) == Some(pclntab)
            })
            .filter_map(move |(index, _)| section.data.get(index * WORD..))
    });
    for candidate in candidates {
        let word = |index: usize| le_u64(candidate, index * WORD);
        let pcheader = word(MD_PCHEADER);
        if candidate.len() < MD_WORDS * WORD
            || (pcheader != Some(pclntab) && pcheader != Some(0))
            || word(MD_FTAB) != Some(ftab)
            || word(MD_FTAB + 1) != Some(ftab_len)
        {
            continue;
        }
        let module = Module {
            text: word(MD_TEXT)?,
            types: word(layout.types)?,
            etypes: word(layout.types + 1)?,
            itablinks: word(layout.itablinks)?,
            itab_count: word(layout.itablinks + 1)?,
        };
        let consistent = (header.text_start == 0 || header.text_start == module.text)
            && module.types < module.etypes
            && word(layout.itablinks + 2) == Some(module.itab_count);
        return consistent.then_some(module);
    }
    None
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

fn le_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(raw.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

/// An unsigned LEB128 varint (Go's `uvarint`), and the bytes it used.
pub fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command, sync::OnceLock};

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    use super::{go_minor, module_layout, uvarint, GoSymbols, ModuleLayout};
    use crate::kernel::gotls::{go_version, GoTlsError};

    const READ: &str = "crypto/tls.(*Conn).Read";
    const WRITE: &str = "crypto/tls.(*Conn).Write";
    /// The itab's symbol in Debian's Go 1.19 (`go:itab.` from Go 1.20).
    const ITAB_SYMBOL: &str = "go.itab.*net.TCPConn,net.Conn";

    /// A program that uses `crypto/tls` over a `*net.TCPConn`.
    const PROGRAM: &str = r#"package main

import (
	"fmt"
	"net/http"
)

func main() {
	res, err := http.Get("https://127.0.0.1:1/")
	fmt.Println(res, err)
}
"#;

    /// The same program built four ways, once for all tests: plain and
    /// stripped (`-s -w`), each as a fixed-address executable and as PIE.
    /// The executables' bytes (the build directory is gone).
    struct Builds {
        plain: Vec<u8>,
        stripped: Vec<u8>,
        pie: Vec<u8>,
        pie_stripped: Vec<u8>,
    }

    fn builds() -> &'static Builds {
        static BUILDS: OnceLock<Builds> = OnceLock::new();
        BUILDS.get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("tracer-unit-gosym-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("main.go"), PROGRAM).unwrap();
            std::fs::write(dir.join("go.mod"), "module gosym\n\ngo 1.19\n").unwrap();
            let builds = Builds {
                plain: go_build(&dir, &[]),
                stripped: go_build(&dir, &["-ldflags=-s -w"]),
                pie: go_build(&dir, &["-buildmode=pie"]),
                pie_stripped: go_build(&dir, &["-buildmode=pie", "-ldflags=-s -w"]),
            };
            std::fs::remove_dir_all(&dir).unwrap();
            builds
        })
    }

    /// `go build` offline with Debian's Go, the build cache shared with the
    /// integration tests; the executable's bytes.
    fn go_build(dir: &Path, flags: &[&str]) -> Vec<u8> {
        let cache = std::env::temp_dir().join("tracer-test-gocache");
        let out = dir.join("program");
        let status = Command::new("go")
            .current_dir(dir)
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(".")
            .status()
            .expect("run go build");
        assert!(status.success(), "go build {flags:?} failed");
        std::fs::read(out).unwrap()
    }

    fn version(file: &object::File<'_>) -> String {
        let info = file.section_by_name(".go.buildinfo").unwrap();
        go_version(info.data().unwrap()).unwrap()
    }

    fn symtab(file: &object::File<'_>, name: &str) -> (u64, u64) {
        let symbol = file.symbols().find(|s| s.name() == Ok(name)).unwrap();
        (symbol.address(), symbol.size())
    }

    #[test]
    fn pclntab_and_module_data_agree_with_the_symbol_table() {
        for (build, data) in [("plain", &builds().plain), ("pie", &builds().pie)] {
            let file = object::File::parse(&**data).unwrap();
            let symbols = GoSymbols::parse(&file, &version(&file)).unwrap();
            for name in [READ, WRITE] {
                assert_eq!(
                    symbols.function(name),
                    Some(symtab(&file, name)),
                    "{name} in {build}"
                );
            }
            assert_eq!(
                symbols.itab("*net.TCPConn", "net.Conn"),
                Some(symtab(&file, ITAB_SYMBOL).0),
                "{build}"
            );
        }
    }

    #[test]
    fn stripped_executables_give_the_same_functions_and_an_itab() {
        let pairs = [
            ("exe", &builds().plain, &builds().stripped),
            ("pie", &builds().pie, &builds().pie_stripped),
        ];
        for (build, plain, stripped) in pairs {
            let plain = object::File::parse(&**plain).unwrap();
            let file = object::File::parse(&**stripped).unwrap();
            assert_eq!(file.symbols().count(), 0, "{build}: still a symbol table");
            let symbols = GoSymbols::parse(&file, &version(&file)).unwrap();
            // Stripping moves data, not code: the functions stay put.
            for name in [READ, WRITE] {
                assert_eq!(symbols.function(name), Some(symtab(&plain, name)), "{name}");
            }
            let itab = symbols.itab("*net.TCPConn", "net.Conn");
            assert!(itab.is_some(), "{build}");
            assert_ne!(symbols.itab("*net.UnixConn", "net.Conn"), itab);
            assert_eq!(symbols.itab("*net.TCPConn", "no.Such"), None);
        }
    }

    /// A stripped executable whose itab list does not check out (zeroed
    /// here) still has its functions, but is not hooked: an error, not a
    /// wrong itab.
    #[test]
    fn a_stripped_executable_without_a_usable_itab_is_not_hooked() {
        let mut data = builds().stripped.clone();
        let file = object::File::parse(&*data).unwrap();
        let (offset, size) = file
            .section_by_name(".itablink")
            .unwrap()
            .file_range()
            .unwrap();
        let (offset, size) = (
            usize::try_from(offset).unwrap(),
            usize::try_from(size).unwrap(),
        );
        data[offset..offset + size].fill(0);
        let file = object::File::parse(&*data).unwrap();
        let symbols = GoSymbols::parse(&file, &version(&file)).unwrap();
        assert!(symbols.function(READ).is_some());
        assert_eq!(symbols.itab("*net.TCPConn", "net.Conn"), None);
        let path =
            std::env::temp_dir().join(format!("tracer-unit-gosym-noitab-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let inspected = crate::kernel::gotls::inspect(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(inspected, Err(GoTlsError::Stripped { .. })),
            "{inspected:?}"
        );
    }

    /// Bytes flipped anywhere in the tables give answers or `None`, never
    /// a panic, and never another itab.
    #[test]
    fn corrupt_tables_neither_panic_nor_give_another_itab() {
        let data = &builds().stripped;
        let file = object::File::parse(&**data).unwrap();
        let version = version(&file);
        let real_itab = GoSymbols::parse(&file, &version)
            .unwrap()
            .itab("*net.TCPConn", "net.Conn");
        assert!(real_itab.is_some());
        let ranges: Vec<(usize, usize)> = [".gopclntab", ".noptrdata", ".itablink", ".rodata"]
            .iter()
            .map(|name| {
                let (offset, size) = file.section_by_name(name).unwrap().file_range().unwrap();
                (
                    usize::try_from(offset).unwrap(),
                    usize::try_from(size).unwrap(),
                )
            })
            .collect();
        let mut rng = fastrand::Rng::with_seed(16);
        for round in 0..200 {
            let mut corrupt = data.clone();
            let (offset, size) = ranges[round % ranges.len()];
            // Mostly the headers and tables at the front, sometimes anywhere.
            let span = if round % 3 == 0 { size } else { size.min(4096) };
            for _ in 0..8 {
                corrupt[offset + rng.usize(..span)] = rng.u8(..);
            }
            let file = object::File::parse(&*corrupt).unwrap();
            if let Ok(symbols) = GoSymbols::parse(&file, &version) {
                let _ = symbols.function(READ);
                let _ = symbols.function("runtime.main");
                let itab = symbols.itab("*net.TCPConn", "net.Conn");
                assert!(itab.is_none() || itab == real_itab, "round {round}");
            }
        }
        // A truncated section and garbage headers are errors.
        assert!(super::parse_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8]).is_err());
        assert!(super::parse_header(&[0xfa, 0xff, 0xff, 0xff]).is_err());
        assert!(super::parse_header(&[]).is_err());
    }

    #[test]
    fn module_layouts_by_version() {
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.22rc1"), Some(22));
        assert_eq!(go_minor("devel +abc"), None);
        assert_eq!(module_layout(17), None);
        assert_eq!(
            module_layout(19),
            Some(ModuleLayout {
                types: 35,
                itablinks: 45
            })
        );
        assert_eq!(module_layout(25).map(|l| l.itablinks), Some(47));
        assert_eq!(module_layout(26).map(|l| l.itablinks), Some(48));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80; 11]), None);
    }
}
