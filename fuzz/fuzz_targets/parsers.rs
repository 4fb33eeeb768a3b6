//! Every protocol parser and detector on arbitrary input: the first byte
//! picks the parser, then each chunk is prefixed by a control byte that picks
//! the side, a gap instead of data, or a close. Parsers must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::protocols::{self, ParseOutput, ParserOptions, Protocol, Side, Transport};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let protocol = Protocol::ALL[usize::from(selector) % Protocol::ALL.len()];
    let transport = if selector & 0x80 != 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let options = ParserOptions {
        include_query: selector & 0x40 != 0,
        raw_statements: selector & 0x20 != 0,
    };
    let _ = protocols::detect(&Protocol::ALL, transport, rest);
    let Some(mut parser) = protocols::new_parser(protocol, transport, options) else {
        return;
    };
    let mut out = ParseOutput::default();
    let mut ts = 1_000u64;
    while let Some((&control, tail)) = rest.split_first() {
        let len = usize::from(control & 0x3f).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        ts += u64::from(control);
        let side = if control & 0x40 != 0 {
            Side::Server
        } else {
            Side::Client
        };
        match control >> 7 {
            0 => parser.on_data(side, ts, chunk, &mut out),
            _ if control & 0x3f == 0x3f => parser.on_close(ts, &mut out),
            _ => parser.on_gap(side, ts, usize::from(control & 0x3f) * 97, &mut out),
        }
        for exchange in out.exchanges.drain(..) {
            assert!(
                exchange.end_ns >= exchange.start_ns || exchange.incomplete,
                "{exchange:?}"
            );
        }
    }
    parser.on_close(ts + 1, &mut out);
});
