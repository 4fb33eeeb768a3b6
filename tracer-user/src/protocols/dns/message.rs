//! Reading DNS messages (RFC 1035): header, question, and a structural check
//! of the resource records, with compression pointers followed safely.

use std::fmt::Write as _;

const HEADER_LEN: usize = 12;
/// RFC 1035: a name is at most 255 bytes on the wire.
const MAX_NAME_WIRE_LEN: usize = 255;
/// Pointers followed within one name; a legitimate name needs a handful.
const MAX_POINTER_JUMPS: usize = 32;
const TYPE_OPT: u16 = 41;

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_AUTHORITATIVE: u16 = 0x0400;
const FLAG_TRUNCATED: u16 = 0x0200;
const FLAG_RECURSION_AVAILABLE: u16 = 0x0080;
/// The one reserved header bit (RFC 6895), zero in real traffic.
const FLAG_RESERVED: u16 = 0x0040;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub id: u16,
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

impl Header {
    pub fn parse(message: &[u8]) -> Option<Header> {
        let word = |at: usize| -> Option<u16> {
            let bytes = message.get(at..at + 2)?;
            Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
        };
        Some(Header {
            id: word(0)?,
            flags: word(2)?,
            questions: word(4)?,
            answers: word(6)?,
            authorities: word(8)?,
            additionals: word(10)?,
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    pub fn opcode(&self) -> u16 {
        (self.flags >> 11) & 0xf
    }

    pub fn rcode(&self) -> u16 {
        self.flags & 0xf
    }

    /// What a standard query (opcode QUERY) from a stub or recursive
    /// resolver looks like: one to a few questions, no answers.
    pub fn is_plausible_query(&self) -> bool {
        !self.is_response()
            && self.opcode() == 0
            && self.flags
                & (FLAG_AUTHORITATIVE | FLAG_TRUNCATED | FLAG_RECURSION_AVAILABLE | FLAG_RESERVED)
                == 0
            && self.rcode() == 0
            && (1..=4).contains(&self.questions)
            && self.answers == 0
            && self.authorities == 0
            && self.additionals <= 2
    }

    /// What an answer to a standard query looks like.
    pub fn is_plausible_response(&self) -> bool {
        self.is_response()
            && self.opcode() == 0
            && self.flags & FLAG_RESERVED == 0
            && self.questions <= 4
            && self.answers <= 1024
            && self.authorities <= 256
            && self.additionals <= 256
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Question {
    /// Presentation form, without the trailing dot (`.` for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// Whether `other` asks the same thing (names compare case-insensitively:
    /// resolvers randomise case, RFC 0x20 draft).
    pub fn same_as(&self, other: &Question) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

/// A message whose header and first question were read.
#[derive(Clone, Debug)]
pub(super) struct Message {
    pub header: Header,
    pub question: Option<Question>,
    /// The 12-bit response code: the header's 4 bits and the OPT record's 8.
    pub rcode: u16,
}

/// How much of the message must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extent {
    /// All of it, and nothing after it.
    Whole,
    /// Header and questions; the records may be cut off (a capture that
    /// kept only the start of a large datagram).
    UpToRecords,
}

pub(super) fn parse(message: &[u8], extent: Extent) -> Option<Message> {
    let header = Header::parse(message)?;
    let mut pos = HEADER_LEN;
    let mut question = None;
    for _ in 0..header.questions {
        let first = question.is_none();
        let mut name = String::new();
        let after_name = walk_name(message, pos, |label| {
            if first {
                push_label(&mut name, label);
            }
        })?;
        let fixed = message.get(after_name..after_name + 4)?;
        let qtype = u16::from_be_bytes([*fixed.first()?, *fixed.get(1)?]);
        let qclass = u16::from_be_bytes([*fixed.get(2)?, *fixed.get(3)?]);
        if qtype == 0 || !is_known_class(qclass) {
            return None;
        }
        if first {
            if name.is_empty() {
                name.push('.');
            }
            question = Some(Question {
                name,
                qtype,
                qclass,
            });
        }
        pos = after_name + 4;
    }
    let records =
        u32::from(header.answers) + u32::from(header.authorities) + u32::from(header.additionals);
    let mut extended_rcode = 0;
    for _ in 0..records {
        match skip_record(message, pos) {
            Some((next, opt_extended_rcode)) => {
                extended_rcode = opt_extended_rcode.unwrap_or(extended_rcode);
                pos = next;
            }
            None if extent == Extent::UpToRecords => break,
            None => return None,
        }
    }
    if extent == Extent::Whole && pos != message.len() {
        return None;
    }
    Some(Message {
        rcode: (extended_rcode << 4) | header.rcode(),
        header,
        question,
    })
}

/// Skips one resource record; returns the offset after it, and the extended
/// response code if it is an OPT record.
fn skip_record(message: &[u8], pos: usize) -> Option<(usize, Option<u16>)> {
    let after_name = walk_name(message, pos, |_| {})?;
    let fixed = message.get(after_name..after_name + 10)?;
    let rtype = u16::from_be_bytes([*fixed.first()?, *fixed.get(1)?]);
    let extended = *fixed.get(4)?;
    let rdlength = usize::from(u16::from_be_bytes([*fixed.get(8)?, *fixed.get(9)?]));
    let end = after_name + 10 + rdlength;
    if end > message.len() {
        return None;
    }
    Some((end, (rtype == TYPE_OPT).then_some(u16::from(extended))))
}

/// Follows the name at `start`, giving each label to `label`; returns the
/// offset just after the name where it is written (after its first pointer,
/// if compressed). Rejects pointers that do not go backwards, too many
/// jumps, over-long names and the obsolete label types.
pub(super) fn walk_name(
    message: &[u8],
    start: usize,
    mut label: impl FnMut(&[u8]),
) -> Option<usize> {
    let mut pos = start;
    let mut end_in_place = None;
    let mut jumps = 0;
    let mut wire_len = 0;
    loop {
        let length = *message.get(pos)?;
        match length & 0xc0 {
            0x00 if length == 0 => return Some(end_in_place.unwrap_or(pos + 1)),
            0x00 => {
                let len = usize::from(length);
                wire_len += len + 1;
                if wire_len + 1 > MAX_NAME_WIRE_LEN {
                    return None;
                }
                label(message.get(pos + 1..pos + 1 + len)?);
                pos += 1 + len;
            }
            0xc0 => {
                let low = *message.get(pos + 1)?;
                let target = (usize::from(length & 0x3f) << 8) | usize::from(low);
                end_in_place.get_or_insert(pos + 2);
                jumps += 1;
                // Names live after the header, and pointers point back to
                // an earlier name; the jump bound stops cycles among those.
                if target < HEADER_LEN || target >= pos || jumps > MAX_POINTER_JUMPS {
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

/// Appends a label in presentation form, escaping as `dig` does.
fn push_label(name: &mut String, label: &[u8]) {
    if !name.is_empty() {
        name.push('.');
    }
    for &byte in label {
        match byte {
            b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                name.push('\\');
                name.push(char::from(byte));
            }
            0x21..=0x7e => name.push(char::from(byte)),
            _ => {
                let _ = write!(name, "\\{byte:03}");
            }
        }
    }
}

/// IN, CH, HS, NONE, ANY.
fn is_known_class(qclass: u16) -> bool {
    matches!(qclass, 1 | 3 | 4 | 254 | 255)
}

/// The mnemonic of a record type, or its number.
pub(super) fn type_name(qtype: u16) -> Option<&'static str> {
    Some(match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return None,
    })
}

/// The mnemonic of a response code (RFC 1035, 2136, 6891), or its number.
pub(super) fn rcode_name(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        _ => return None,
    })
}
