//! The HPACK Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: within one length, codes are consecutive and
//! ordered by symbol, and each length's first code follows from the previous
//! length's. So the table is just every symbol's code length; the decoder
//! accumulates bits and, at each length, checks whether the code falls in
//! that length's range.

/// Code length of each symbol, 0..=255 then EOS (256), from RFC 7541
/// Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// The canonical code, rebuilt from the lengths at compile time.
struct Canonical {
    /// Symbols ordered by (code length, symbol).
    symbols: [u16; 257],
    /// First code of each length.
    first_code: [u32; MAX_LEN + 1],
    /// Number of codes of each length.
    count: [u32; MAX_LEN + 1],
    /// Index in `symbols` of each length's first symbol.
    offset: [u32; MAX_LEN + 1],
}

const CANONICAL: Canonical = Canonical::build();

impl Canonical {
    const fn build() -> Canonical {
        let mut count = [0u32; MAX_LEN + 1];
        let mut i = 0;
        while i < CODE_LENGTHS.len() {
            count[CODE_LENGTHS[i] as usize] += 1;
            i += 1;
        }
        let mut first_code = [0u32; MAX_LEN + 1];
        let mut offset = [0u32; MAX_LEN + 1];
        let mut code = 0u32;
        let mut index = 0u32;
        let mut len = 1;
        while len <= MAX_LEN {
            code = (code + count[len - 1]) << 1;
            first_code[len] = code;
            offset[len] = index;
            index += count[len];
            len += 1;
        }
        let mut symbols = [0u16; 257];
        let mut next = offset;
        let mut symbol: u16 = 0;
        while (symbol as usize) < CODE_LENGTHS.len() {
            let len = CODE_LENGTHS[symbol as usize] as usize;
            symbols[next[len] as usize] = symbol;
            next[len] += 1;
            symbol += 1;
        }
        Canonical {
            symbols,
            first_code,
            count,
            offset,
        }
    }
}

/// Why a Huffman string could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::protocols::http2) enum HuffmanError {
    /// The EOS symbol inside the string (RFC 7541 5.2).
    Eos,
    /// More than 7 bits of padding, or padding that is not all ones.
    Padding,
}

/// Decodes `encoded`, appending the octets to `out`.
pub(in crate::protocols::http2) fn decode(
    encoded: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), HuffmanError> {
    let table = &CANONICAL;
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for byte in encoded {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let (Some(first), Some(count), Some(offset)) = (
                table.first_code.get(len),
                table.count.get(len),
                table.offset.get(len),
            ) else {
                // Longer than any code: only reachable through all-ones
                // runs past EOS's 30 bits, which a valid string never has.
                return Err(HuffmanError::Eos);
            };
            let rank = code.wrapping_sub(*first);
            if rank < *count {
                let symbol = table
                    .symbols
                    .get((offset + rank) as usize)
                    .copied()
                    .unwrap_or(EOS);
                // Every symbol but EOS (256) is an octet.
                let Ok(octet) = u8::try_from(symbol) else {
                    return Err(HuffmanError::Eos);
                };
                out.push(octet);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    let all_ones = (1u32 << len) - 1;
    if len > 7 || code != all_ones {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes as RFC 7541 Appendix B lists them (hex, right-aligned).
    #[expect(
        clippy::unreadable_literal,
        reason = "written as the RFC prints them, to compare by eye"
    )]
    const RFC_CODES: [u32; 257] = [
        0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
        0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
        0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
        0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
        0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa,
        0x16, 0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb,
        0x7ffc, 0x20, 0xffb, 0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc,
        0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25,
        0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77,
        0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2,
        0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb,
        0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0,
        0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9,
        0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8,
        0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb,
        0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
        0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0,
        0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3,
        0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3,
        0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5,
        0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3,
        0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee,
        0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb, 0x7ffffe6, 0x3ffffec,
        0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec,
        0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff,
    ];

    /// A test encoder straight from the RFC's table.
    fn encode(text: &[u8]) -> Vec<u8> {
        let mut bits: u64 = 0;
        let mut nbits = 0;
        let mut out = Vec::new();
        for &b in text {
            bits = (bits << CODE_LENGTHS[b as usize]) | u64::from(RFC_CODES[b as usize]);
            nbits += u32::from(CODE_LENGTHS[b as usize]);
            while nbits >= 8 {
                out.push(u8::try_from(bits >> (nbits - 8)).unwrap());
                nbits -= 8;
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits > 0 {
            let pad = 8 - nbits;
            out.push(u8::try_from((bits << pad) | ((1 << pad) - 1)).unwrap());
        }
        out
    }

    fn decoded(encoded: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(encoded, &mut out).map(|()| out)
    }

    #[test]
    fn canonical_codes_are_the_rfc_codes() {
        // Rebuild each symbol's code from the canonical description.
        let table = &CANONICAL;
        for (rank, &symbol) in table.symbols.iter().enumerate() {
            let len = CODE_LENGTHS[symbol as usize] as usize;
            let code = table.first_code[len] + (u32::try_from(rank).unwrap() - table.offset[len]);
            assert_eq!(code, RFC_CODES[symbol as usize], "symbol {symbol}");
        }
    }

    #[test]
    fn rfc_7541_c4_strings() {
        let cases: [(&str, &str); 4] = [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
        ];
        for (hex, text) in cases {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(decoded(&bytes).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decoded(&encode(&all)).unwrap(), all);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let len = rng.usize(0..40);
            let text: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            assert_eq!(decoded(&encode(&text)).unwrap(), text);
        }
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // "a" is 00011 (5 bits): padding must be 111.
        assert_eq!(decoded(&[0b0001_1111]).unwrap(), b"a");
        assert_eq!(decoded(&[0b0001_1011]), Err(HuffmanError::Padding));
        // A whole byte of ones is padding longer than 7 bits.
        assert_eq!(decoded(&[0b0001_1111, 0xff]), Err(HuffmanError::Padding));
        // EOS (30 ones) inside the string.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xfc]), Err(HuffmanError::Eos));
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..2000 {
            let len = rng.usize(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = decoded(&bytes);
        }
    }
}
