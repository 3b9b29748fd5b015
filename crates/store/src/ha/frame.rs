//! The HA wire format (request-codes.md §1.4). It is not the remoting protocol: slave → master
//! is a bare 8-byte big-endian offset report; master → slave is a stream of frames, a 12-byte
//! header `[int64 start physical offset, int32 body size]` followed by that many bytes of raw
//! commit log. A frame with an empty body is a heartbeat.

use super::HaError;

/// Length of a master → slave frame header.
pub(crate) const HEADER_LEN: usize = 12;
/// Length of a slave → master offset report.
pub(crate) const REPORT_LEN: usize = 8;

/// A master → slave frame header.
pub(crate) fn encode_header(start: i64, size: usize) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&start.to_be_bytes());
    // The body never exceeds one commit-log segment, itself far below i32::MAX.
    out[8..].copy_from_slice(&(size.min(i32::MAX as usize) as i32).to_be_bytes());
    out
}

/// A slave's offset report.
pub(crate) fn encode_report(offset: i64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

/// Reads a report; `None` for a negative offset, which no slave can have.
pub(crate) fn decode_report(bytes: [u8; REPORT_LEN]) -> Option<i64> {
    let offset = i64::from_be_bytes(bytes);
    (offset >= 0).then_some(offset)
}

/// One complete frame at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Physical offset the body starts at.
    pub start: i64,
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies in the stream.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}

/// The first complete frame of `buf`, `Ok(None)` if more bytes are needed. A body larger than
/// `max_body` (a commit-log segment) or a negative field is a protocol error.
pub(crate) fn decode_frame(buf: &[u8], max_body: usize) -> Result<Option<Frame<'_>>, HaError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut start = [0u8; 8];
    start.copy_from_slice(&header[..8]);
    let start = i64::from_be_bytes(start);
    let size = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if start < 0 {
        return Err(HaError::BadFrame(format!("negative start offset {start}")));
    }
    let size = usize::try_from(size)
        .map_err(|_| HaError::BadFrame(format!("negative body size {size}")))?;
    if size > max_body {
        return Err(HaError::BadFrame(format!(
            "body of {size} bytes exceeds a commit log segment ({max_body})"
        )));
    }
    Ok(buf
        .get(HEADER_LEN..HEADER_LEN + size)
        .map(|body| Frame { start, body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_is_big_endian_offset_then_size() {
        let h = encode_header(0x0102_0304_0506_0708, 0x0A0B);
        assert_eq!(h, [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x0A, 0x0B]);
        assert_eq!(encode_report(258), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(decode_report([0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(decode_report((-1i64).to_be_bytes()), None);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut buf = encode_header(4096, 5).to_vec();
        assert_eq!(decode_frame(&buf[..7], 1024).unwrap(), None);
        assert_eq!(decode_frame(&buf, 1024).unwrap(), None);
        buf.extend_from_slice(b"hello, next frame");
        let f = decode_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!(f.start, 4096);
        assert_eq!(f.body, b"hello");
        assert_eq!(f.len(), 17);
    }

    #[test]
    fn heartbeat_is_an_empty_frame() {
        let buf = encode_header(77, 0);
        let f = decode_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!((f.start, f.body.len(), f.len()), (77, 0, HEADER_LEN));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut neg = encode_header(0, 0);
        neg[8..].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_frame(&neg, 1024).is_err());
        assert!(decode_frame(&encode_header(0, 2048), 1024).is_err());
        let mut bad_start = encode_header(0, 0);
        bad_start[..8].copy_from_slice(&(-1i64).to_be_bytes());
        assert!(decode_frame(&bad_start, 1024).is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip(start in 0i64..i64::MAX, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = encode_header(start, body.len()).to_vec();
            buf.extend_from_slice(&body);
            let f = decode_frame(&buf, 300).unwrap().unwrap();
            prop_assert_eq!(f.start, start);
            prop_assert_eq!(f.body, &body[..]);
        }

        #[test]
        fn decoding_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_frame(&buf, 32);
        }
    }
}
