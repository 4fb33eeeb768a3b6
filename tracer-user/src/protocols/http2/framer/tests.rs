//! Framer tests: frames out of bytes cut anywhere, and boundaries found
//! again.

use super::*;

#[derive(Default)]
struct Collect {
    frames: Vec<(u64, String)>,
    lost: usize,
}

impl FrameSink for Collect {
    fn frame(&mut self, _side: Side, ts_ns: u64, frame: Frame<'_>) {
        self.frames.push((ts_ns, format!("{frame:?}")));
    }

    fn lost_sync(&mut self, _side: Side) {
        self.lost += 1;
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn names(collect: &Collect) -> Vec<&str> {
    collect
        .frames
        .iter()
        .map(|(_, f)| f.split([' ', '{']).next().unwrap_or(""))
        .collect()
}

/// Feeds `data` to a fresh framer of `side` in pieces of `piece` bytes.
fn run(side: Side, data: &[u8], piece: usize) -> Collect {
    let mut framer = Framer::new(side);
    let mut collect = Collect::default();
    for chunk in data.chunks(piece.max(1)) {
        framer.feed(7, chunk, &mut collect);
    }
    framer.close(&mut collect);
    collect
}

#[test]
fn preface_and_frames_cut_anywhere() {
    let mut data = PREFACE.to_vec();
    data.extend(frame(4, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
    // HEADERS, padded (2) and with priority, then DATA padded (3).
    data.extend(frame(1, 0x2c, 1, &[2, 0, 0, 0, 0, 16, 0x82, 0x84, 0, 0]));
    data.extend(frame(0, 0x9, 1, &[3, b'a', b'b', 0, 0, 0]));
    data.extend(frame(0xfa, 0, 0, b"extension")); // ignored
    data.extend(frame(3, 0, 1, &[0, 0, 0, 8]));
    let whole = run(Side::Client, &data, data.len());
    assert_eq!(whole.lost, 0);
    assert_eq!(
        whole.frames.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>(),
        [
            "ClientPreface",
            "Settings { header_table_size: Some(4096) }",
            "Headers { stream: 1, block: Some([130, 132]), end_stream: false, push_promise: false, start_ns: 7 }",
            "Data { stream: 1, len: 2, end_stream: true }",
            "RstStream { stream: 1, code: Some(8) }",
        ]
    );
    for piece in 1..40 {
        let cut = run(Side::Client, &data, piece);
        assert_eq!(cut.frames, whole.frames, "pieces of {piece}");
        assert_eq!(cut.lost, 0);
    }
}

#[test]
fn server_side_holds_a_lone_first_frame_until_the_next() {
    let mut framer = Framer::new(Side::Server);
    let mut collect = Collect::default();
    // A DATA frame of 3 bytes on stream 1.
    framer.feed(1, &frame(0, 0, 1, b"abc"), &mut collect);
    assert!(
        collect.frames.is_empty(),
        "one frame alone is not trusted yet"
    );
    framer.feed(2, &frame(4, 1, 0, &[]), &mut collect);
    assert_eq!(names(&collect), ["Data"]);
    assert_eq!(collect.lost, 0);

    // Except a server's opening SETTINGS as its first bytes: Go writes it
    // alone before it reads the client's preface.
    let mut framer = Framer::new(Side::Server);
    let mut collect = Collect::default();
    framer.feed(1, &frame(4, 0, 0, &[]), &mut collect);
    assert_eq!(
        collect.frames,
        [(1, "Settings { header_table_size: None }".to_owned())]
    );
    assert_eq!(collect.lost, 0);

    // A lone frame that ends where the connection ends is taken at close.
    let mut framer = Framer::new(Side::Server);
    let mut collect = Collect::default();
    framer.feed(1, &frame(0, 1, 3, b"bye"), &mut collect);
    framer.close(&mut collect);
    assert_eq!(names(&collect), ["Data"]);
}

#[test]
fn invalid_frames_lose_sync_until_two_plausible_frames() {
    let mut data = PREFACE.to_vec();
    data.extend(frame(6, 0, 0, &[0; 7])); // PING of 7 bytes: not HTTP/2
    data.extend_from_slice(b"\x00\x07\x06junk");
    data.extend(frame(0, 0, 1, b"data"));
    data.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
    for piece in [1, 3, 1000] {
        let collect = run(Side::Client, &data, piece);
        assert_eq!(
            names(&collect),
            ["ClientPreface", "Data"],
            "pieces of {piece}"
        );
        assert_eq!(collect.lost, 1);
    }
}

#[test]
fn a_waiting_candidate_does_not_block_a_confirmed_one() {
    // Garbage whose first bytes look like a 1798-byte DATA frame, then
    // real frames: they are taken without waiting for 1798 bytes.
    let mut data = b"\x00\x07\x06\x00\x00\x00\x00\x00\x67zz".to_vec();
    data.extend(frame(0, 1, 5, b"x"));
    data.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
    let mut framer = Framer::new(Side::Server);
    let mut collect = Collect::default();
    framer.feed(3, &data, &mut collect);
    assert_eq!(names(&collect), ["Data"]);
    assert_eq!(collect.lost, 1);
}

#[test]
fn gaps_inside_and_across_frames() {
    let mut framer = Framer::new(Side::Client);
    let mut collect = Collect::default();
    let mut data = PREFACE.to_vec();
    let data_frame = frame(0, 0x8, 1, &[5, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
    data.extend_from_slice(&data_frame[..12]);
    framer.feed(1, &data, &mut collect);
    // 8 of the payload's remaining 11 bytes missed: still in sync.
    framer.gap(2, 8, &mut collect);
    framer.feed(3, &data_frame[20..], &mut collect);
    assert_eq!(
        collect.frames.last().unwrap(),
        &(
            3,
            "Data { stream: 1, len: 8, end_stream: false }".to_owned()
        )
    );
    // A header block with a hole is lost, its frame boundaries are not.
    let headers = frame(1, 0x5, 3, &[0x82, 0x84, 0x86, 0x41, 0x01, b'h']);
    framer.feed(4, &headers[..10], &mut collect);
    framer.gap(4, 2, &mut collect);
    framer.feed(5, &headers[12..], &mut collect);
    assert_eq!(
        collect.frames.last().unwrap().1,
        "Headers { stream: 3, block: None, end_stream: true, push_promise: false, start_ns: 4 }"
    );
    assert_eq!(collect.lost, 0);
    // A gap past the end of a frame hides the next header.
    let ping = frame(6, 0, 0, &[0; 8]);
    framer.feed(6, &ping[..12], &mut collect);
    framer.gap(6, 20, &mut collect);
    framer.feed(7, &frame(0, 1, 5, b"abc"), &mut collect);
    framer.feed(8, &frame(8, 0, 0, &[0, 0, 0, 1]), &mut collect);
    assert_eq!(collect.lost, 1);
    assert_eq!(
        collect.frames.last().unwrap(),
        &(7, "Data { stream: 5, len: 3, end_stream: true }".to_owned())
    );
}

#[test]
fn continuation_out_of_place_loses_sync() {
    let mut data = PREFACE.to_vec();
    data.extend(frame(1, 0, 1, &[0x82])); // HEADERS without END_HEADERS
    data.extend(frame(0, 1, 1, b"x")); // DATA where CONTINUATION must be
    data.extend(frame(1, 0x5, 3, &[0x82]));
    data.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
    let collect = run(Side::Client, &data, 1000);
    assert_eq!(names(&collect), ["ClientPreface", "Headers"]);
    assert!(collect.frames[1].1.contains("stream: 3"));
    assert_eq!(collect.lost, 1);
}

#[test]
fn random_input_never_panics_and_scan_memory_stays_bounded() {
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..200 {
        let side = if rng.bool() {
            Side::Client
        } else {
            Side::Server
        };
        let mut framer = Framer::new(side);
        let mut collect = Collect::default();
        for _ in 0..30 {
            let len = rng.usize(0..4000);
            let data: Vec<u8> = (0..len)
                .map(|_| if rng.bool() { 0 } else { rng.u8(..) })
                .collect();
            framer.feed(1, &data, &mut collect);
            if rng.u8(..) < 30 {
                framer.gap(1, rng.usize(0..50_000), &mut collect);
            }
            assert!(framer.scan.bytes.len() <= SCAN_LIMIT + 4000);
            assert!(framer.payload.len() <= MAX_BLOCK + MAX_BLOCK_FRAME_EXTRA);
        }
        framer.close(&mut collect);
    }
}
