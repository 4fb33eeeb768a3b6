//! Struct field offsets from the running kernel's BTF.
//!
//! aya cannot apply CO-RE relocations to Rust eBPF programs, so the programs
//! take the offsets of the few kernel fields they read from user space. This
//! is a deliberately small reader of the BTF format (header, type section,
//! string section) that answers one question: where is field `a.b.c` of
//! struct `S`, looking through anonymous structs and unions.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF at {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no field {field}")]
    NoField { strukt: String, field: String },
}

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset inside the parent.
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite {
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type tag: look through to `target`.
    Alias {
        target: u32,
    },
    Other,
}

pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index = type id (0 is `void`).
    types: Vec<Type>,
    /// Struct name → type id, for the structs with names.
    structs: HashMap<String, u32>,
    /// Raw tracepoints the kernel offers to `tp_btf` programs: the names of
    /// its `btf_trace_<name>` typedefs, without the prefix.
    btf_tracepoints: HashSet<String>,
    /// The helpers the kernel offers eBPF programs: the enumerators of its
    /// `enum bpf_func_id`, without the `BPF_FUNC_` prefix.
    helpers: HashSet<String>,
}

/// Prefix of the typedef the kernel declares for each raw tracepoint.
const BTF_TRACE_PREFIX: &str = "btf_trace_";

/// The enum of helper ids, and the prefix of its enumerators.
const HELPER_ENUM: &str = "bpf_func_id";
const HELPER_PREFIX: &str = "BPF_FUNC_";

fn u32_at(data: &[u8], pos: usize) -> Result<u32, BtfError> {
    let bytes = data
        .get(pos..pos + 4)
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Malformed("truncated header"))?;
        if magic != BTF_MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (big-endian BTF is not supported)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let type_section = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut btf = KernelBtf {
            strings,
            types: vec![Type::Other],
            structs: HashMap::new(),
            btf_tracepoints: HashSet::new(),
            helpers: HashSet::new(),
        };
        btf.parse_types(type_section)?;
        Ok(btf)
    }

    fn parse_types(&mut self, section: &[u8]) -> Result<(), BtfError> {
        let mut pos = 0;
        while pos + 12 <= section.len() {
            let name_off = u32_at(section, pos)?;
            let info = u32_at(section, pos + 4)?;
            let size_or_type = u32_at(section, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let id = u32::try_from(self.types.len())
                .map_err(|_| BtfError::Malformed("more types than ids"))?;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let at = pos + i * 12;
                        let offset = u32_at(section, at + 8)?;
                        members.push(Member {
                            name_off: u32_at(section, at)?,
                            type_id: u32_at(section, at + 4)?,
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    pos += vlen * 12;
                    if kind == KIND_STRUCT && name_off != 0 {
                        let name = self.string(name_off).to_owned();
                        self.structs.entry(name).or_insert(id);
                    }
                    Type::Composite { members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    if kind == KIND_TYPEDEF {
                        if let Some(tracepoint) =
                            self.string(name_off).strip_prefix(BTF_TRACE_PREFIX)
                        {
                            self.btf_tracepoints.insert(tracepoint.to_owned());
                        }
                    }
                    Type::Alias {
                        target: size_or_type,
                    }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    pos += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    pos += 12;
                    Type::Other
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    if kind == KIND_ENUM && self.string(name_off) == HELPER_ENUM {
                        for i in 0..vlen {
                            let name = self.string(u32_at(section, pos + i * 8)?);
                            if let Some(helper) = name.strip_prefix(HELPER_PREFIX) {
                                self.helpers.insert(helper.to_owned());
                            }
                        }
                    }
                    pos += vlen * 8;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    pos += vlen * 12;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            self.types.push(ty);
        }
        Ok(())
    }

    fn string(&self, offset: u32) -> &str {
        let Some(rest) = self.strings.get(offset as usize..) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the composite type, if any.
    fn members_of(&self, mut type_id: u32) -> Option<&[Member]> {
        for _ in 0..32 {
            match self.types.get(type_id as usize)? {
                Type::Composite { members } => return Some(members),
                Type::Alias { target } => type_id = *target,
                Type::Other => return None,
            }
        }
        None
    }

    /// Byte offset of `name` in the composite `type_id`, looking through
    /// anonymous members; `None` if absent.
    fn find_member(&self, type_id: u32, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let members = self.members_of(type_id)?;
        for member in members {
            if member.name_off == 0 {
                if let Some((offset, ty)) = self.find_member(member.type_id, name, depth + 1) {
                    return Some((member.bit_offset / 8 + offset, ty));
                }
            } else if self.string(member.name_off) == name {
                return Some((member.bit_offset / 8, member.type_id));
            }
        }
        None
    }

    /// Whether the kernel has raw tracepoint `name` for `tp_btf` programs
    /// (its BTF declares `btf_trace_<name>`).
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        self.btf_tracepoints.contains(name)
    }

    /// Whether the kernel has the eBPF helper `name` (e.g. `loop` for
    /// `bpf_loop`): its BTF's `enum bpf_func_id` has `BPF_FUNC_<name>`.
    pub fn has_helper(&self, name: &str) -> bool {
        self.helpers.contains(name)
    }

    /// Byte offset of the field at `path` (e.g. `["__sk_common", "skc_daddr"]`)
    /// in `struct strukt`.
    pub fn field_offset(&self, strukt: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut type_id = *self
            .structs
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let mut offset = 0;
        for field in path {
            let (field_offset, field_type) =
                self.find_member(type_id, field, 0)
                    .ok_or_else(|| BtfError::NoField {
                        strukt: strukt.to_owned(),
                        field: path.join("."),
                    })?;
            offset += field_offset;
            type_id = field_type;
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF: the offsets must match what the kernel's own
    /// headers say for `x86_64` 6.x (`sock_common` starts `struct sock`).
    #[test]
    fn finds_sock_and_task_fields_in_kernel_btf() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            panic!("this test needs /sys/kernel/btf/vmlinux");
        };
        assert_eq!(
            btf.field_offset("sock", &["__sk_common", "skc_daddr"])
                .unwrap(),
            0
        );
        assert_eq!(
            btf.field_offset("sock", &["__sk_common", "skc_rcv_saddr"])
                .unwrap(),
            4
        );
        assert_eq!(
            btf.field_offset("sock", &["__sk_common", "skc_dport"])
                .unwrap(),
            12
        );
        assert_eq!(
            btf.field_offset("sock", &["__sk_common", "skc_num"])
                .unwrap(),
            14
        );
        assert_eq!(
            btf.field_offset("sock", &["__sk_common", "skc_family"])
                .unwrap(),
            16
        );
        let v6 = btf
            .field_offset("sock", &["__sk_common", "skc_v6_daddr"])
            .unwrap();
        assert!(v6 > 16 && v6 < 200, "skc_v6_daddr at {v6}");
        let tgid = btf.field_offset("task_struct", &["tgid"]).unwrap();
        assert!(tgid > 0);
        assert!(btf.field_offset("sock", &["no_such_field"]).is_err());
        assert!(btf.field_offset("no_such_struct", &["x"]).is_err());
    }

    /// The fd-table path's fields exist on this kernel, and the tracepoint
    /// probe answers from the kernel's own typedefs (present since 6.3).
    #[test]
    fn finds_file_table_fields_and_btf_tracepoints() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            panic!("this test needs /sys/kernel/btf/vmlinux");
        };
        for (strukt, field) in [
            ("task_struct", "files"),
            ("files_struct", "fdt"),
            ("fdtable", "max_fds"),
            ("fdtable", "fd"),
            ("file", "f_inode"),
            ("file", "private_data"),
            ("inode", "i_mode"),
            ("socket", "sk"),
        ] {
            assert!(
                btf.field_offset(strukt, &[field]).is_ok(),
                "{strukt}.{field}"
            );
        }
        // `struct fdtable { unsigned int max_fds; struct file **fd; ... }`
        assert_eq!(btf.field_offset("fdtable", &["max_fds"]).unwrap(), 0);
        assert_eq!(btf.field_offset("fdtable", &["fd"]).unwrap(), 8);
        assert!(btf.has_btf_tracepoint("sched_process_fork"));
        assert!(btf.has_btf_tracepoint("sock_send_length"));
        assert!(!btf.has_btf_tracepoint("no_such_tracepoint"));
        assert!(!btf.has_btf_tracepoint("btf_trace_sched_process_fork"));
    }

    /// The helper probe reads `enum bpf_func_id`: `bpf_loop` (5.17+) and the
    /// ring buffer's helpers are there on this kernel.
    #[test]
    fn finds_helpers() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            panic!("this test needs /sys/kernel/btf/vmlinux");
        };
        assert!(btf.has_helper("loop"));
        assert!(btf.has_helper("ringbuf_output"));
        assert!(btf.has_helper("probe_read_user"));
        assert!(!btf.has_helper("no_such_helper"));
        assert!(!btf.has_helper("BPF_FUNC_loop"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(KernelBtf::parse(b"").is_err());
        assert!(
            KernelBtf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err()
        );
    }
}
