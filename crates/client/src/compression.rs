//! Message body compression as RocketMQ clients write it: a body is compressed when bit 0 of
//! the record's sysFlag is set, and bits 8–10 name the codec (0 = legacy zlib, 1 = LZ4,
//! 2 = ZSTD, 3 = zlib; message-format.md). zlib is a standard RFC 1950 stream (Java's
//! `Deflater`), LZ4 a standard LZ4 frame (lz4-java's `LZ4FrameOutputStream`), ZSTD a
//! standard zstd frame (zstd-jni). The producer compresses with the codec it is given
//! (zlib by default, as Java); consumers read all three.

use std::io::{Read, Write};

use ferrymq_protocol::message::flag::sys_flag;

use crate::error::{ClientError, Result};

/// Largest body decompressed (guards against compression bombs): far above the 4 MiB
/// message limit.
const MAX_DECOMPRESSED: u64 = 64 << 20;
/// Java's `rocketmq.message.compressLevel` default, used for zlib and zstd.
const LEVEL: u32 = 5;

/// A body codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// zlib (the default; every RocketMQ client reads it).
    #[default]
    Zlib,
    /// LZ4 frames (read by Java clients 5.x and ferrymq).
    Lz4,
    /// Zstandard frames (read by Java clients 5.x and ferrymq).
    Zstd,
}

impl Compression {
    /// The sysFlag bits of a body compressed with this codec (compressed flag included).
    pub fn sys_flag(self) -> i32 {
        sys_flag::COMPRESSED
            | match self {
                Compression::Zlib => sys_flag::COMPRESSION_ZLIB,
                Compression::Lz4 => sys_flag::COMPRESSION_LZ4,
                Compression::Zstd => sys_flag::COMPRESSION_ZSTD,
            }
    }

    /// The codec a record's sysFlag names, if its body is compressed.
    pub fn of_sys_flag(flag: i32) -> Result<Option<Compression>> {
        if flag & sys_flag::COMPRESSED == 0 {
            return Ok(None);
        }
        match flag & sys_flag::COMPRESSION_TYPE_MASK {
            sys_flag::COMPRESSION_LEGACY_ZLIB | sys_flag::COMPRESSION_ZLIB => {
                Ok(Some(Compression::Zlib))
            }
            sys_flag::COMPRESSION_LZ4 => Ok(Some(Compression::Lz4)),
            sys_flag::COMPRESSION_ZSTD => Ok(Some(Compression::Zstd)),
            other => Err(ClientError::Malformed(format!(
                "unknown compression type {} in sysFlag",
                other >> 8
            ))),
        }
    }

    /// Compresses `data`.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>> {
        let failed = |e: std::io::Error| ClientError::InvalidMessage(format!("{self:?}: {e}"));
        match self {
            Compression::Zlib => {
                let mut enc = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    flate2::Compression::new(LEVEL),
                );
                enc.write_all(data).map_err(failed)?;
                enc.finish().map_err(failed)
            }
            Compression::Lz4 => {
                let mut enc =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
                enc.write_all(data).map_err(failed)?;
                enc.finish()
                    .map_err(|e| ClientError::InvalidMessage(format!("LZ4: {e}")))
            }
            Compression::Zstd => zstd::bulk::compress(data, LEVEL as i32).map_err(failed),
        }
    }

    /// Decompresses `data`; more than 64 MiB of output is refused, never cut short.
    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len().saturating_mul(4));
        let limit = MAX_DECOMPRESSED + 1;
        let read = match self {
            Compression::Zlib => flate2::read::ZlibDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out),
            Compression::Zstd => zstd::stream::read::Decoder::new(data)
                .and_then(|d| d.take(limit).read_to_end(&mut out)),
        };
        read.map_err(|e| {
            ClientError::Malformed(format!("{self:?} body does not decompress: {e}"))
        })?;
        if out.len() as u64 > MAX_DECOMPRESSED {
            return Err(ClientError::Malformed(format!(
                "{self:?} body decompresses to more than {MAX_DECOMPRESSED} bytes"
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 3] = [Compression::Zlib, Compression::Lz4, Compression::Zstd];

    #[test]
    fn flags_round_trip() {
        for c in ALL {
            assert_eq!(Compression::of_sys_flag(c.sys_flag()).unwrap(), Some(c));
        }
        // 4.x clients set only the compressed bit: zlib.
        assert_eq!(
            Compression::of_sys_flag(sys_flag::COMPRESSED).unwrap(),
            Some(Compression::Zlib)
        );
        assert_eq!(Compression::of_sys_flag(0).unwrap(), None);
        assert!(Compression::of_sys_flag(sys_flag::COMPRESSED | (5 << 8)).is_err());
    }

    /// Frames written by other implementations: Python's `lz4.frame.compress` and
    /// `zstandard.compress` (level 3) of b"hello hello hello hello ferrymq".
    #[test]
    fn decodes_frames_of_other_implementations() {
        let want = b"hello hello hello hello ferrymq";
        let lz4 = hex(LZ4_FRAME);
        assert_eq!(Compression::Lz4.decompress(&lz4).unwrap(), want);
        let zstd = hex(ZSTD_FRAME);
        assert_eq!(Compression::Zstd.decompress(&zstd).unwrap(), want);
    }

    const LZ4_FRAME: &str = include_str!("../tests/data/lz4_frame.hex");
    const ZSTD_FRAME: &str = include_str!("../tests/data/zstd_frame.hex");

    fn hex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in ALL {
            assert!(c.decompress(b"\x00\x01not compressed at all").is_err());
        }
    }

    #[test]
    fn bombs_are_refused() {
        let zeros = vec![0u8; (MAX_DECOMPRESSED + 1024) as usize];
        for c in ALL {
            let packed = c.compress(&zeros).unwrap();
            assert!(packed.len() < 1 << 20, "{c:?} {}", packed.len());
            assert!(c.decompress(&packed).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..20_000), pick in 0usize..3) {
            let c = ALL[pick];
            let packed = c.compress(&data).unwrap();
            prop_assert_eq!(c.decompress(&packed).unwrap(), data);
        }
    }
}
