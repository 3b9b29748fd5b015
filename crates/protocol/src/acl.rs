//! Request signatures of RocketMQ's remoting ACL (ACL 1.0, and ACL 2.0 over remoting, which
//! reuses the scheme): the bytes a signature covers, the HMAC-SHA1 over them, and the
//! `AccessKey`/`Signature`/`SecurityToken` ext fields that carry it. Pure functions, so the
//! client that signs and the broker that verifies cannot disagree about the byte string.
//!
//! The signed content is every ext field's *value* (no keys, no separators) in the byte order
//! of their keys, `Signature` itself left out, followed by the raw body.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::code::version;
use crate::command::{ExtFields, RemotingCommand};

/// Ext field naming the account.
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field carrying the Base64 HMAC-SHA1.
pub const SIGNATURE: &str = "Signature";
/// Ext field of temporary credentials (STS); signed like any other field.
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// `QUERY_MESSAGE`'s unique-key flag: clients up to 4.9.3 added it after signing, so their
/// signatures do not cover it.
const UNIQUE_MSG_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";

type HmacSha1 = Hmac<Sha1>;

/// An access key / secret key pair (and optional security token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }
}

impl std::fmt::Debug for Credentials {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Base64 HMAC-SHA1 of `data` under `secret_key`.
pub fn hmac_sha1_base64(secret_key: &str, data: &[&[u8]]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1(secret_key, data))
}

/// Raw HMAC-SHA1 of the concatenation of `data` under `secret_key`.
pub fn hmac_sha1(secret_key: &str, data: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha1::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key");
    for part in data {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The signature a request carrying `ext` and `body` must have under `secret_key`.
/// `client_version` is the request's `version` (older clients leave one field unsigned).
pub fn request_signature<'a>(
    ext: &ExtFields,
    body: impl IntoIterator<Item = &'a [u8]>,
    client_version: i32,
    secret_key: &str,
) -> String {
    let mut fields: Vec<(&str, &str)> = ext
        .iter()
        .filter(|(k, _)| {
            *k != SIGNATURE && !(*k == UNIQUE_MSG_QUERY_FLAG && client_version <= version::V4_9_3)
        })
        .collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // HMAC is streaming: feed the values and body parts without building the byte string.
    let mut mac = HmacSha1::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key");
    for (_, value) in fields {
        mac.update(value.as_bytes());
    }
    for part in body {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Adds `AccessKey` (and `SecurityToken`) to a request and signs it, as Java's
/// `AclClientRPCHook` does. Call after every header field is in the ext fields.
pub fn sign_request(request: &mut RemotingCommand, credentials: &Credentials) {
    request.ext_fields.remove(SIGNATURE);
    request
        .ext_fields
        .insert(ACCESS_KEY, &credentials.access_key);
    if let Some(token) = &credentials.security_token {
        request.ext_fields.insert(SECURITY_TOKEN, token);
    }
    let signature = request_signature(
        &request.ext_fields,
        request.body.parts().map(|b| &b[..]),
        request.version,
        &credentials.secret_key,
    );
    request.ext_fields.insert(SIGNATURE, signature);
}

/// Lower-case hex of `bytes` (gRPC `authorization` signatures).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Bytes of a hex string, either case; `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test case 2.
        let mac = hmac_sha1("Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(hex(&mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn signature_covers_sorted_values_then_body() {
        let mut req =
            RemotingCommand::request(RequestCode::SendMessageV2).with_body(b"hi".to_vec());
        req.ext_fields.insert("b", "TopicTest");
        req.ext_fields.insert("a", "group");
        let creds = Credentials::new("rocketmq2", "12345678");
        sign_request(&mut req, &creds);
        // Keys sorted: AccessKey, a, b → "rocketmq2" + "group" + "TopicTest" + body.
        let expected = hmac_sha1_base64("12345678", &[b"rocketmq2groupTopicTesthi"]);
        assert_eq!(req.ext_fields.get(SIGNATURE), Some(expected.as_str()));
        // Verifying the signed request reproduces it; any change breaks it.
        let again = request_signature(&req.ext_fields, [&b"hi"[..]], req.version, "12345678");
        assert_eq!(again, expected);
        let wrong = request_signature(&req.ext_fields, [&b"ho"[..]], req.version, "12345678");
        assert_ne!(wrong, expected);
    }

    #[test]
    fn old_clients_leave_the_unique_key_flag_unsigned() {
        let mut ext = ExtFields::new();
        ext.insert("topic", "T");
        let before = request_signature(&ext, [], version::V4_9_3, "sk");
        ext.insert(UNIQUE_MSG_QUERY_FLAG, "true");
        assert_eq!(request_signature(&ext, [], version::V4_9_3, "sk"), before);
        assert_ne!(
            request_signature(&ext, [], version::V4_9_3 + 1, "sk"),
            before
        );
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
    }
}
