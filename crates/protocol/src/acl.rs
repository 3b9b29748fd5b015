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
    SigningKey::new(secret_key).mac(data)
}

/// A secret key ready for HMAC-SHA1: its padded key blocks are hashed once, not per request.
#[derive(Clone)]
pub struct SigningKey(HmacSha1);

impl SigningKey {
    pub fn new(secret_key: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        SigningKey(HmacSha1::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key"))
    }

    /// Raw HMAC-SHA1 of the concatenation of `data`.
    pub fn mac(&self, data: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.0.clone();
        for part in data {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The raw HMAC-SHA1 a request carrying `ext` and `body` must be signed with.
    /// `client_version` is the request's `version` (older clients leave one field unsigned).
    pub fn request_mac<'a>(
        &self,
        ext: &ExtFields,
        body: impl IntoIterator<Item = &'a [u8]>,
        client_version: i32,
    ) -> [u8; 20] {
        // HMAC is streaming: feed the values and body parts without building the byte string.
        let mut mac = self.0.clone();
        ext.for_each_sorted_bytes(|key, value| {
            if is(key, SIGNATURE)
                || (is(key, UNIQUE_MSG_QUERY_FLAG) && client_version <= version::V4_9_3)
            {
                return;
            }
            mac.update(value);
        });
        for part in body {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `request`'s `Signature` is this key's signature of it.
    pub fn verifies(&self, request: &RemotingCommand) -> bool {
        let Some(given) = request.ext_fields.get(SIGNATURE) else {
            return false;
        };
        // Decode the given signature instead of encoding ours: no allocation per request.
        let mut decoded = [0u8; 32];
        let Ok(len) =
            base64::engine::general_purpose::STANDARD.decode_slice(given.as_bytes(), &mut decoded)
        else {
            return false;
        };
        let expected = self.request_mac(
            &request.ext_fields,
            request.body.parts().map(|b| &b[..]),
            request.version,
        );
        constant_time_eq(&decoded[..len], &expected)
    }
}

impl std::fmt::Debug for SigningKey {
    // Derived from the secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Signs requests for one account, as Java's `AclClientRPCHook` does.
#[derive(Clone)]
pub struct Signer {
    access_key: String,
    security_token: Option<String>,
    key: SigningKey,
}

impl Signer {
    pub fn new(credentials: &Credentials) -> Self {
        Signer {
            access_key: credentials.access_key.clone(),
            security_token: credentials.security_token.clone(),
            key: SigningKey::new(&credentials.secret_key),
        }
    }

    /// Adds `AccessKey` (and `SecurityToken`) to a request and signs it. Call after every
    /// header field is in the ext fields.
    pub fn sign(&self, request: &mut RemotingCommand) {
        let ext = &mut request.ext_fields;
        let token = self.security_token.as_deref();
        ext.reserve(
            3,
            ACCESS_KEY.len()
                + self.access_key.len()
                + token.map_or(0, |t| SECURITY_TOKEN.len() + t.len())
                + SIGNATURE.len()
                + SIGNATURE_BASE64_LEN,
        );
        // In key order: a header written in order (SEND_MESSAGE_V2's `a`..`n`) stays sorted,
        // which makes the sort in signing and verifying a single pass.
        ext.discard(SIGNATURE);
        ext.set_in_order_with(ACCESS_KEY, |t| t.push_str(&self.access_key));
        if let Some(token) = token {
            ext.set_in_order_with(SECURITY_TOKEN, |t| t.push_str(token));
        }
        let mac = self.key.request_mac(
            &request.ext_fields,
            request.body.parts().map(|b| &b[..]),
            request.version,
        );
        request.ext_fields.set_in_order_with(SIGNATURE, |text| {
            base64::engine::general_purpose::STANDARD.encode_string(mac, text)
        });
    }
}

/// Base64 length of a 20-byte HMAC-SHA1.
const SIGNATURE_BASE64_LEN: usize = 28;

/// Header text a [`Signer`] adds, with an access key of up to 32 bytes and no token: callers
/// that size a request's fields up front add this so that signing does not grow the buffer.
pub const SIGNING_ROOM: usize = ACCESS_KEY.len() + SIGNATURE.len() + SIGNATURE_BASE64_LEN + 32;

/// The Base64 signature a request carrying `ext` and `body` must have under `secret_key`.
pub fn request_signature<'a>(
    ext: &ExtFields,
    body: impl IntoIterator<Item = &'a [u8]>,
    client_version: i32,
    secret_key: &str,
) -> String {
    let mac = SigningKey::new(secret_key).request_mac(ext, body, client_version);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Signs `request` once with `credentials`; a client signing many requests keeps a [`Signer`].
pub fn sign_request(request: &mut RemotingCommand, credentials: &Credentials) {
    Signer::new(credentials).sign(request)
}

/// `key == name` without a `memcmp` call for nearly every key.
fn is(key: &[u8], name: &str) -> bool {
    crate::command::key_eq(key, name.as_bytes())
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

    proptest::proptest! {
        /// A verifier accepts a signed request whatever order its fields arrive in (a Java
        /// client's JSON follows a hash map), and the signer keeps a sorted header sorted.
        #[test]
        fn verifies_in_any_field_order(
            fields in proptest::collection::btree_map("[A-Za-z]{1,12}", "[ -~]{0,20}", 0..20),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            rotate in 0usize..40,
        ) {
            let mut req = RemotingCommand::request(RequestCode::SendMessageV2).with_body(body);
            for (k, v) in &fields {
                req.ext_fields.insert(k, v);
            }
            sign_request(&mut req, &Credentials::new("ak", "secret-key"));
            let signed: Vec<(String, String)> = req
                .ext_fields
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let mut in_order = signed.clone();
            in_order.sort();
            proptest::prop_assert_eq!(&signed, &in_order);
            let key = SigningKey::new("secret-key");
            proptest::prop_assert!(key.verifies(&req));
            let mut moved = signed.clone();
            let len = moved.len();
            moved.rotate_left(rotate % len);
            moved.reverse();
            req.ext_fields = moved.into_iter().collect();
            proptest::prop_assert!(key.verifies(&req));
            req.ext_fields.insert(ACCESS_KEY, "ak2");
            proptest::prop_assert!(!key.verifies(&req));
        }
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
        assert!(SigningKey::new("12345678").verifies(&req));
        assert!(!SigningKey::new("1234567").verifies(&req));
        req.ext_fields.insert("a", "other-group");
        assert!(!SigningKey::new("12345678").verifies(&req));
        req.ext_fields.insert(SIGNATURE, "not base64!");
        assert!(!SigningKey::new("12345678").verifies(&req));
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
