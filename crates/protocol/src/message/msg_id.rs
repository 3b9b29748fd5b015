//! The two message id formats (message-format.md §7): the broker's `offsetMsgId` (store host +
//! commit-log offset, so a client can fetch the record back by id) and the client-style `UNIQ_KEY`
//! (ip, pid, per-process hash, time within the month, counter), which the broker also generates
//! for messages that arrive without one.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why an offsetMsgId could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    #[error("message id has length {0}, expected 32 (IPv4) or 56 (IPv6)")]
    BadLength(usize),
    #[error("message id is not hexadecimal")]
    NotHex,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Through a stack buffer and one `push_str`: pushing char by char re-checks capacity and
    // UTF-8 width per digit, and consumers build one id per received message.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        let hex = &mut buf[..chunk.len() * 2];
        for (pair, b) in hex.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xF)];
        }
        // Hex digits are ASCII, so this never fails.
        out.push_str(std::str::from_utf8(hex).unwrap_or_default());
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, MsgIdError> {
    fn nibble(c: u8) -> Result<u8, MsgIdError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(MsgIdError::NotHex),
        }
    }
    let b = s.as_bytes();
    let pairs = b.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(MsgIdError::BadLength(b.len()));
    }
    pairs
        .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

/// Uppercase hex of `store_host` (address + int32 port) + int64 `physical_offset`.
pub fn offset_msg_id(store_host: &SocketAddr, physical_offset: i64) -> String {
    let mut out = String::with_capacity(if store_host.is_ipv4() { 32 } else { 56 });
    write_offset_msg_id(&mut out, store_host, physical_offset);
    out
}

/// Appends the offsetMsgId to `out` (lets a batch build its comma-joined id list in one string).
pub fn write_offset_msg_id(out: &mut String, store_host: &SocketAddr, physical_offset: i64) {
    // The id's bytes in one buffer, hex-encoded in one go.
    let mut raw = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            raw[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            raw[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    raw[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[ip_len + 4..ip_len + 12].copy_from_slice(&physical_offset.to_be_bytes());
    push_hex(out, &raw[..ip_len + 12]);
}

/// A decoded offsetMsgId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMsgId {
    pub store_host: SocketAddr,
    pub physical_offset: i64,
}

impl OffsetMsgId {
    /// Decodes as Java does: 32 chars means an IPv4 host, anything else must be 56 (IPv6).
    pub fn decode(id: &str) -> Result<OffsetMsgId, MsgIdError> {
        let ip_len = match id.len() {
            32 => 4,
            56 => 16,
            n => return Err(MsgIdError::BadLength(n)),
        };
        let b = unhex(id)?;
        let ip = if ip_len == 4 {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        let port = i32::from_be_bytes([b[ip_len], b[ip_len + 1], b[ip_len + 2], b[ip_len + 3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[ip_len + 4..ip_len + 12]);
        Ok(OffsetMsgId {
            store_host: SocketAddr::new(ip, port as u16),
            physical_offset: i64::from_be_bytes(off),
        })
    }

    pub fn encode(&self) -> String {
        offset_msg_id(&self.store_host, self.physical_offset)
    }
}

/// Generates UNIQ_KEY ids (message-format.md §7.2): a fixed per-process prefix (ip, pid, hash)
/// followed by the milliseconds since the start of the current month and a wrapping counter.
///
/// The month boundary is taken in UTC rather than the JVM's local zone; the id is opaque to every
/// reader, so only uniqueness matters.
pub struct UniqKeyGenerator {
    prefix: Vec<u8>,
    counter: AtomicU16,
}

impl UniqKeyGenerator {
    /// `ip` is the client/broker address (random bytes are used by Java when unknown); `hash`
    /// stands in for Java's class-loader hash and should differ between generators of one process.
    pub fn new(ip: IpAddr, pid: u32, hash: i32) -> UniqKeyGenerator {
        let mut prefix = Vec::with_capacity(22);
        match ip {
            IpAddr::V4(v4) => prefix.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => prefix.extend_from_slice(&v6.octets()),
        }
        prefix.extend_from_slice(&(pid as u16).to_be_bytes());
        prefix.extend_from_slice(&hash.to_be_bytes());
        UniqKeyGenerator {
            prefix,
            counter: AtomicU16::new(0),
        }
    }

    /// A generator for this process (pid from the OS, hash from the current time).
    pub fn for_process(ip: IpAddr) -> UniqKeyGenerator {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        UniqKeyGenerator::new(ip, std::process::id(), nanos as i32)
    }

    /// The next id, as 32 (IPv4) or 56 (IPv6) uppercase hex characters.
    pub fn next_id(&self) -> String {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.id_at(now_ms)
    }

    /// The id for a given epoch-millisecond time (deterministic apart from the counter).
    pub fn id_at(&self, now_ms: i64) -> String {
        let since_month = now_ms - month_start_utc_ms(now_ms);
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = String::with_capacity(self.prefix.len() * 2 + 12);
        push_hex(&mut out, &self.prefix);
        push_hex(&mut out, &(since_month as i32).to_be_bytes());
        push_hex(&mut out, &counter.to_be_bytes());
        out
    }
}

/// Epoch milliseconds at 00:00 UTC on the first day of the month containing `ms`.
fn month_start_utc_ms(ms: i64) -> i64 {
    let days = ms.div_euclid(86_400_000);
    // Civil-from-days (proleptic Gregorian), then back to the first of that month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5; // 0-based
    (days - day_of_month) * 86_400_000
}

/// Renders bytes as uppercase hex (the encoding every id uses).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Joins ids with commas (batch send responses).
pub fn join_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example() {
        let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        let id = offset_msg_id(&host, 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
        let d = OffsetMsgId::decode(&id).unwrap();
        assert_eq!(d.store_host, host);
        assert_eq!(d.physical_offset, 0x1234);
        assert_eq!(
            OffsetMsgId::decode(&id.to_lowercase())
                .unwrap()
                .physical_offset,
            0x1234
        );
    }

    #[test]
    fn bad_ids() {
        assert_eq!(OffsetMsgId::decode("ABC"), Err(MsgIdError::BadLength(3)));
        assert_eq!(
            OffsetMsgId::decode("ZZ00000100002A9F0000000000001234"),
            Err(MsgIdError::NotHex)
        );
        assert!(OffsetMsgId::decode("é0000000100002A9F000000000000123").is_err());
    }

    #[test]
    fn uniq_key_layout() {
        let g = UniqKeyGenerator::new("192.168.0.1".parse().unwrap(), 0x1_0203, 0x0A0B_0C0D);
        // 2024-03-02T00:00:01.5Z: 1 day + 1.5 s after the month start.
        let id = g.id_at(1_709_337_601_500);
        assert_eq!(id.len(), 32);
        assert_eq!(&id[..8], "C0A80001");
        assert_eq!(&id[8..12], "0203");
        assert_eq!(&id[12..20], "0A0B0C0D");
        assert_eq!(&id[20..28], format!("{:08X}", 86_400_000 + 1_500));
        assert_eq!(&id[28..], "0000");
        assert!(g.id_at(1_709_337_601_500).ends_with("0001"));
        let g6 = UniqKeyGenerator::new("::1".parse().unwrap(), 1, 1);
        assert_eq!(g6.next_id().len(), 56);
        assert_eq!(month_start_utc_ms(0), 0);
        assert_eq!(month_start_utc_ms(1_709_251_200_000), 1_709_251_200_000);
    }

    proptest! {
        #[test]
        fn roundtrip(ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), v6 in any::<bool>(),
                     port in any::<u16>(), off in any::<i64>()) {
            let host = if v6 { SocketAddr::from((ip6, port)) } else { SocketAddr::from((ip4, port)) };
            let id = offset_msg_id(&host, off);
            prop_assert_eq!(id.len(), if v6 { 56 } else { 32 });
            prop_assert_eq!(id.to_uppercase(), id.clone());
            let d = OffsetMsgId::decode(&id).unwrap();
            prop_assert_eq!(d, OffsetMsgId { store_host: host, physical_offset: off });
        }

        #[test]
        fn arbitrary_text_never_panics(s in any::<String>()) {
            let _ = OffsetMsgId::decode(&s);
        }
    }
}
