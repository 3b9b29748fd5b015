//! The SEND_BATCH_MESSAGE body (message-format.md §5): elements of
//! `int32 totalSize | int32 magic(0) | int32 bodyCRC(0) | int32 flag | int32 bodyLen | body |
//! int16 propLen | properties`, back to back. The broker expands every element into its own
//! commit-log record, so decoding borrows the body and properties straight from the request.

use bytes::BufMut;

use super::properties::MAX_PROPERTIES_LEN;

/// Fixed bytes of an element besides body and properties.
pub const ELEMENT_OVERHEAD: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Why a batch body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch element at byte {at} truncated")]
    Truncated { at: usize },
    #[error("batch element at byte {at} has total size {declared}, fields take {actual}")]
    SizeMismatch {
        at: usize,
        declared: i32,
        actual: usize,
    },
    #[error("batch element at byte {at} has a negative length")]
    NegativeLength { at: usize },
    #[error("batch element at byte {at}: properties are not valid UTF-8")]
    PropertiesNotUtf8 { at: usize },
    #[error("batch element properties too long ({0} bytes)")]
    PropertiesTooLong(usize),
}

/// One message of a batch, borrowed from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchElement<'a> {
    pub flag: i32,
    pub body: &'a [u8],
    pub properties: &'a str,
}

impl BatchElement<'_> {
    pub fn encoded_len(&self) -> usize {
        ELEMENT_OVERHEAD + self.body.len() + self.properties.len()
    }
}

/// Iterates the elements; yields one error and stops on malformed input.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Decodes a batch body lazily.
pub fn decode(body: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf: body,
        pos: 0,
        failed: false,
    }
}

/// Decodes and collects, failing on the first malformed element.
pub fn decode_all(body: &[u8]) -> Result<Vec<BatchElement<'_>>, BatchError> {
    decode(body).collect()
}

impl<'a> BatchIter<'a> {
    fn element(&self) -> Result<(BatchElement<'a>, usize), BatchError> {
        let at = self.pos;
        let b = &self.buf[at..];
        let truncated = BatchError::Truncated { at };
        let i32_at = |p: usize| -> Result<i32, BatchError> {
            b.get(p..p + 4)
                .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or(truncated.clone())
        };
        let total = i32_at(0)?;
        let flag = i32_at(12)?;
        let body_len = i32_at(16)?;
        if body_len < 0 || total < 0 {
            return Err(BatchError::NegativeLength { at });
        }
        let body_len = body_len as usize;
        let body = b.get(20..20 + body_len).ok_or(truncated.clone())?;
        let p = 20 + body_len;
        let props_len = b
            .get(p..p + 2)
            .map(|s| i16::from_be_bytes([s[0], s[1]]))
            .ok_or(truncated.clone())?;
        if props_len < 0 {
            return Err(BatchError::NegativeLength { at });
        }
        let props = b.get(p + 2..p + 2 + props_len as usize).ok_or(truncated)?;
        let actual = p + 2 + props_len as usize;
        if total as usize != actual {
            return Err(BatchError::SizeMismatch {
                at,
                declared: total,
                actual,
            });
        }
        let properties =
            std::str::from_utf8(props).map_err(|_| BatchError::PropertiesNotUtf8 { at })?;
        Ok((
            BatchElement {
                flag,
                body,
                properties,
            },
            actual,
        ))
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchElement<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match self.element() {
            Ok((e, len)) => {
                self.pos += len;
                Some(Ok(e))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Appends one element in the producer's format.
pub fn encode_element<B: BufMut>(
    buf: &mut B,
    element: &BatchElement<'_>,
) -> Result<(), BatchError> {
    if element.properties.len() > MAX_PROPERTIES_LEN {
        return Err(BatchError::PropertiesTooLong(element.properties.len()));
    }
    buf.put_i32(element.encoded_len() as i32);
    buf.put_i32(0);
    buf.put_i32(0);
    buf.put_i32(element.flag);
    buf.put_i32(element.body.len() as i32);
    buf.put_slice(element.body);
    buf.put_i16(element.properties.len() as i16);
    buf.put_slice(element.properties.as_bytes());
    Ok(())
}

/// Encodes a whole batch body.
pub fn encode<'a>(
    elements: impl IntoIterator<Item = &'a BatchElement<'a>>,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    for e in elements {
        encode_element(&mut out, e)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden() {
        let e = BatchElement {
            flag: 5,
            body: b"ab",
            properties: "K\u{1}V\u{2}",
        };
        let bytes = encode([&e]).unwrap();
        let expected: Vec<u8> = [
            &28i32.to_be_bytes()[..],
            &[0; 8],
            &5i32.to_be_bytes(),
            &2i32.to_be_bytes(),
            b"ab",
            &4i16.to_be_bytes(),
            b"K\x01V\x02",
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(decode_all(&bytes).unwrap(), vec![e]);
    }

    #[test]
    fn malformed() {
        let e = BatchElement {
            flag: 0,
            body: b"abc",
            properties: "",
        };
        let bytes = encode([&e, &e]).unwrap();
        for cut in 1..bytes.len() {
            if cut == e.encoded_len() {
                continue;
            }
            assert!(decode_all(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = bytes.clone();
        bad[3] = 99;
        assert!(decode_all(&bad).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(items in proptest::collection::vec(
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..64), "[a-z\u{1}\u{2}]{0,30}"), 0..10)) {
            let elements: Vec<BatchElement<'_>> = items.iter()
                .map(|(f, b, p)| BatchElement { flag: *f, body: b, properties: p })
                .collect();
            let bytes = encode(elements.iter()).unwrap();
            prop_assert_eq!(decode_all(&bytes).unwrap(), elements);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes).count();
        }
    }
}
