//! HPACK decoder tests: the RFC 7541 Appendix C examples, then the
//! mid-stream rules.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

type Fields = Vec<(Option<String>, Option<String>)>;

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, DecodeError> {
    let mut fields = Vec::new();
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    decoder
        .decode(block, |f| fields.push((text(f.name), text(f.value))))
        .map(|()| fields)
}

fn known(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| (Some((*n).to_owned()), Some((*v).to_owned())))
        .collect()
}

/// A decoder of a connection seen from its start, whose table holds
/// `size` bytes (the Appendix C examples' `SETTINGS_HEADER_TABLE_SIZE`).
fn synchronised(size: usize) -> Decoder {
    let mut decoder = Decoder::new();
    decoder.start_synchronised();
    decoder.size_update = size;
    decoder.settings_limit = size;
    decoder
}

#[test]
fn c2_single_representations() {
    let mut d = synchronised(4096);
    let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        known(&[("custom-key", "custom-header")])
    );
    assert_eq!((d.table_len(), d.table_size()), (1, 55));

    let mut d = synchronised(4096);
    let block = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        known(&[(":path", "/sample/path")])
    );
    assert_eq!(d.table_len(), 0);

    let mut d = synchronised(4096);
    let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        known(&[("password", "secret")])
    );
    assert_eq!(d.table_len(), 0);

    let mut d = synchronised(4096);
    assert_eq!(
        decode(&mut d, &hex("82")).unwrap(),
        known(&[(":method", "GET")])
    );
    assert_eq!(d.table_len(), 0);
}

fn requests_c3_c4(blocks: [&str; 3]) {
    let mut d = synchronised(4096);
    let first = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    assert_eq!(decode(&mut d, &hex(blocks[0])).unwrap(), known(&first));
    assert_eq!(d.table_size(), 57);
    let mut second = first.to_vec();
    second.push(("cache-control", "no-cache"));
    assert_eq!(decode(&mut d, &hex(blocks[1])).unwrap(), known(&second));
    assert_eq!(d.table_size(), 110);
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    assert_eq!(decode(&mut d, &hex(blocks[2])).unwrap(), known(&third));
    assert_eq!((d.table_len(), d.table_size()), (3, 164));
}

#[test]
fn c3_requests_without_huffman() {
    requests_c3_c4([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests_c3_c4([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

/// The responses of C.5 and C.6: a 256-byte table, with evictions.
fn responses_c5_c6(blocks: [&str; 3]) {
    let mut d = synchronised(256);
    let first = [
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    assert_eq!(decode(&mut d, &hex(blocks[0])).unwrap(), known(&first));
    assert_eq!((d.table_len(), d.table_size()), (4, 222));
    let mut second = first;
    second[0] = (":status", "307");
    assert_eq!(decode(&mut d, &hex(blocks[1])).unwrap(), known(&second));
    assert_eq!((d.table_len(), d.table_size()), (4, 222));
    let third = [
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];
    assert_eq!(decode(&mut d, &hex(blocks[2])).unwrap(), known(&third));
    assert_eq!((d.table_len(), d.table_size()), (3, 215));
}

#[test]
fn c5_responses_without_huffman() {
    responses_c5_c6([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a \
         3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 \
         677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 \
         553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    responses_c5_c6([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e \
         919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 \
         821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed \
         4ee5 b106 3d50 07",
    ]);
}

#[test]
fn synchronised_decoder_rejects_unknown_indexes_and_loses_sync() {
    let mut d = synchronised(4096);
    assert_eq!(
        decode(&mut d, &hex("82be")),
        Err(DecodeError::IndexOutOfRange)
    );
    assert!(!d.is_synchronised());
    // Now the same index is merely unknown.
    assert_eq!(decode(&mut d, &hex("be")).unwrap(), vec![(None, None)]);
    assert_eq!(decode(&mut d, &hex("80")), Err(DecodeError::ZeroIndex));
}

#[test]
fn mid_stream_unknown_entries_and_entries_seen() {
    let mut d = Decoder::new();
    // Static entries decode; index 62 is an entry we never saw.
    assert_eq!(
        decode(&mut d, &hex("83 be 86")).unwrap(),
        vec![
            (Some(":method".into()), Some("POST".into())),
            (None, None),
            (Some(":scheme".into()), Some("http".into())),
        ]
    );
    // A literal naming an unknown entry (index 63) and a new-name literal
    // are both added; newest first.
    let block = hex("7f00 0376 616c 4001 6101 62");
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        vec![
            (None, Some("val".into())),
            (Some("a".into()), Some("b".into()))
        ]
    );
    assert_eq!(
        decode(&mut d, &hex("be bf c0")).unwrap(),
        vec![
            (Some("a".into()), Some("b".into())),
            (None, Some("val".into())),
            (None, None),
        ]
    );
    // A literal that reuses the unknown-named entry's name keeps it unknown.
    assert_eq!(
        decode(&mut d, &hex("0f30 0178")).unwrap(),
        vec![(None, Some("x".into()))]
    );
    assert!(!d.is_synchronised());
}

#[test]
fn size_update_to_zero_resynchronises() {
    let mut d = Decoder::new();
    decode(&mut d, &hex("4001 6101 62")).unwrap();
    assert_eq!(d.table_len(), 1);
    let fields = decode(&mut d, &hex("20 3fe1 1f 4001 6301 64 be")).unwrap();
    assert_eq!(fields, known(&[("c", "d"), ("c", "d")]));
    assert!(d.is_synchronised());
    assert_eq!(
        decode(&mut d, &hex("bf")),
        Err(DecodeError::IndexOutOfRange)
    );
}

#[test]
fn lost_block_drops_the_table() {
    let mut d = synchronised(4096);
    decode(&mut d, &hex("4001 6101 62")).unwrap();
    d.lose_sync();
    assert_eq!(decode(&mut d, &hex("be")).unwrap(), vec![(None, None)]);
    d.start_synchronised();
    assert!(!d.is_synchronised(), "too late to claim the start was seen");
}

#[test]
fn settings_limit_zero_keeps_nothing_after_the_update() {
    let mut d = Decoder::new();
    d.start_synchronised();
    d.set_settings_limit(0);
    // Until the encoder acknowledges with a size update, it may still use
    // the initial 4096 bytes.
    assert_eq!(
        decode(&mut d, &hex("4001 6101 62 be")).unwrap(),
        known(&[("a", "b"), ("a", "b")])
    );
    assert_eq!(
        decode(&mut d, &hex("20 4001 6101 62")).unwrap(),
        known(&[("a", "b")])
    );
    assert_eq!(d.table_len(), 0);
    assert_eq!(
        decode(&mut d, &hex("be")),
        Err(DecodeError::IndexOutOfRange)
    );
}

#[test]
fn eviction_beyond_our_bound_makes_old_entries_unknown() {
    let mut d = Decoder::new();
    d.start_synchronised();
    d.set_settings_limit(1 << 20);
    // Size update to 1 MiB (5-bit prefix: 31 + 1048545).
    let mut block = hex("3f e1 ff 3f");
    let value = vec![b'v'; 1000];
    for _ in 0..70 {
        block.extend_from_slice(&hex("4001 61 7f e9 06"));
        block.extend_from_slice(&value);
    }
    let fields = decode(&mut d, &block).unwrap();
    assert_eq!(fields.len(), 70);
    assert!(d.table_size() <= MAX_TABLE_BYTES);
    assert!(!d.is_synchronised());
    let oldest: u8 = 62 + 69;
    let mut index = vec![0xff];
    index.push(oldest - 127);
    assert_eq!(decode(&mut d, &index).unwrap(), vec![(None, None)]);
    assert_eq!(
        decode(&mut d, &hex("be")).unwrap(),
        vec![(Some("a".into()), Some(String::from_utf8(value).unwrap()))]
    );
}

#[test]
fn truncated_and_malformed_blocks() {
    let cases = [
        ("41", DecodeError::Truncated),
        ("400a 6375", DecodeError::Truncated),
        ("ff", DecodeError::Truncated),
        ("ff ff ff ff ff ff 01", DecodeError::IntegerOverflow),
        ("0081 ff", DecodeError::Huffman),
    ];
    for (block, error) in cases {
        let mut d = synchronised(4096);
        assert_eq!(decode(&mut d, &hex(block)), Err(error), "{block}");
        assert!(!d.is_synchronised());
    }
}

#[test]
fn random_blocks_never_panic_and_stay_bounded() {
    let mut rng = fastrand::Rng::with_seed(3);
    for round in 0..300 {
        let mut d = if round % 2 == 0 {
            synchronised(4096)
        } else {
            Decoder::new()
        };
        for _ in 0..20 {
            let len = rng.usize(0..200);
            let block: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = decode(&mut d, &block);
            assert!(d.table_size() <= MAX_TABLE_BYTES + 300);
        }
    }
}
