//! Decoding one ring-buffer record into a borrowed [`Event`].

use thiserror::Error;
use tracer_common::{ConnEvent, DataEvent, EventKind, GoCallEvent, ProcessEvent};

#[derive(Debug)]
pub enum Event<'a> {
    Data(DataEvent, &'a [u8]),
    ConnOpen(ConnEvent),
    ConnClose(ConnEvent),
    Process(ProcessEvent),
    GoCall(GoCallEvent),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record of kind {kind} is {len} bytes, shorter than its header")]
    Short { kind: u8, len: usize },
}

fn read_struct<T: Copy>(record: &[u8]) -> Option<T> {
    if record.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a plain-old-data repr(C) struct from
    // tracer-common, valid for any bit pattern; read_unaligned copes with
    // the ring buffer's 8-byte (not T-) alignment.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}

pub fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    let kind_byte = *record.first().ok_or(DecodeError::Empty)?;
    let kind = EventKind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
    let short = || DecodeError::Short {
        kind: kind_byte,
        len: record.len(),
    };
    Ok(match kind {
        EventKind::Data => {
            let header: DataEvent = read_struct(record).ok_or_else(short)?;
            let payload = record.get(size_of::<DataEvent>()..).unwrap_or_default();
            let captured = payload.len().min(header.captured_len as usize);
            Event::Data(header, payload.get(..captured).unwrap_or_default())
        }
        EventKind::ConnOpen => Event::ConnOpen(read_struct(record).ok_or_else(short)?),
        EventKind::ConnClose => Event::ConnClose(read_struct(record).ok_or_else(short)?),
        EventKind::ProcessFork
        | EventKind::ProcessExec
        | EventKind::ProcessExit
        | EventKind::ProcessJoin => Event::Process(read_struct(record).ok_or_else(short)?),
        EventKind::GoCall => Event::GoCall(read_struct(record).ok_or_else(short)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_record(payload: &[u8], captured_len: u32) -> Vec<u8> {
        let header = DataEvent {
            kind: EventKind::Data as u8,
            direction: 1,
            syscall: 0,
            flags: 0,
            pid: 7,
            tid: 8,
            fd: 3,
            timestamp_ns: 99,
            sock: 0xffff_0000,
            goroutine: 0,
            total_len: u32::try_from(payload.len()).unwrap(),
            captured_len,
        };
        let mut record = vec![0u8; size_of::<DataEvent>()];
        // SAFETY: the buffer is exactly one DataEvent long.
        unsafe { std::ptr::write_unaligned(record.as_mut_ptr().cast::<DataEvent>(), header) };
        record.extend_from_slice(payload);
        record
    }

    #[test]
    fn decodes_data_with_payload() {
        let record = data_record(b"GET / HTTP/1.1\r\n", 16);
        let Ok(Event::Data(header, payload)) = decode(&record) else {
            panic!("not data");
        };
        assert_eq!((header.pid, header.tid, header.fd), (7, 8, 3));
        assert_eq!(payload, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn clamps_payload_to_captured_len_and_record() {
        let record = data_record(b"abcdef", 3);
        let Ok(Event::Data(_, payload)) = decode(&record) else {
            panic!("not data");
        };
        assert_eq!(payload, b"abc");
        let record = data_record(b"ab", 100);
        let Ok(Event::Data(_, payload)) = decode(&record) else {
            panic!("not data");
        };
        assert_eq!(payload, b"ab");
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Empty);
        assert_eq!(decode(&[200]).unwrap_err(), DecodeError::UnknownKind(200));
        assert!(matches!(
            decode(&[1, 0, 0]),
            Err(DecodeError::Short { kind: 1, len: 3 })
        ));
        assert!(matches!(
            decode(&[2; 10]),
            Err(DecodeError::Short { kind: 2, .. })
        ));
    }
}
