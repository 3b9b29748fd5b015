//! The 5.x SDKs' credentials on gRPC: `authorization: MQv2-HMAC-SHA1 Credential=<AK>,
//! SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1(SK, x-mq-date-time)>`, checked
//! against the same accounts and white lists as remoting requests.

use std::net::IpAddr;

use ferrymq_protocol::acl::{constant_time_eq, unhex, SigningKey};

use crate::plain::{Account, AclError, AclRules};

/// Metadata key of the credentials.
pub const AUTHORIZATION: &str = "authorization";
/// Metadata key of the signed timestamp.
pub const DATE_TIME: &str = "x-mq-date-time";

/// The parts of an `authorization` value.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a str,
    signature: &'a str,
}

/// Splits an `authorization` value; `None` when it has no credential or signature.
pub fn parse(value: &str) -> Option<Authorization<'_>> {
    let (_scheme, rest) = value.trim().split_once(' ')?;
    let (mut access_key, mut signature) = (None, None);
    for pair in rest.split(',') {
        let Some((k, v)) = pair.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            // Go writes `Credential=<AK>//Rocketmq`: the user is the part before any `/`.
            "Credential" => access_key = v.trim().split('/').next(),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    Some(Authorization {
        access_key: access_key?,
        signature: signature?,
    })
}

/// Whether the header's signature is `key`'s HMAC of the date-time.
pub fn signed_by(
    key: &SigningKey,
    parsed: Option<&Authorization<'_>>,
    date_time: Option<&str>,
) -> bool {
    let (Some(parsed), Some(date_time)) = (parsed, date_time) else {
        return false;
    };
    let expected = key.mac(&[date_time.as_bytes()]);
    unhex(parsed.signature).is_some_and(|given| constant_time_eq(&given, &expected))
}

/// Authenticates one call from `remote` by its `authorization` and `x-mq-date-time`
/// metadata. `Ok(None)`: white-listed, nothing more to check.
pub fn authenticate<'r>(
    rules: &'r AclRules,
    authorization: Option<&str>,
    date_time: Option<&str>,
    remote: IpAddr,
) -> Result<Option<&'r Account>, AclError> {
    let parsed = authorization.and_then(parse);
    if authorization.is_some_and(|a| !a.trim().is_empty()) && parsed.is_none() {
        return Err(AclError::Authentication(
            "malformed authorization header".into(),
        ));
    }
    let signed_by =
        |account: &Account| signed_by(account.signing_key(), parsed.as_ref(), date_time);
    rules.authenticate(parsed.as_ref().map(|p| p.access_key), remote, signed_by)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::acl::{hex, hmac_sha1};

    const RULES: &str = "accounts:\n  - accessKey: app\n    secretKey: app-secret\n";

    fn header(ak: &str, sk: &str, date: &str, upper: bool) -> String {
        let sig = hex(&hmac_sha1(sk, &[date.as_bytes()]));
        let sig = if upper { sig.to_uppercase() } else { sig };
        format!("MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={sig}")
    }

    #[test]
    fn sdk_headers_are_verified() {
        let rules = AclRules::parse(RULES).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let date = "20261205T221100Z";
        for upper in [false, true] {
            let h = header("app", "app-secret", date, upper);
            let who = authenticate(&rules, Some(&h), Some(date), ip).unwrap();
            assert_eq!(who.map(|a| a.access_key.as_str()), Some("app"));
        }
        // Go's credential scope suffix.
        let h = header("app", "app-secret", date, false)
            .replace("Credential=app", "Credential=app//Rocketmq");
        assert!(authenticate(&rules, Some(&h), Some(date), ip).is_ok());
        let wrong = header("app", "not-it", date, false);
        assert!(matches!(
            authenticate(&rules, Some(&wrong), Some(date), ip),
            Err(AclError::Authentication(m)) if m.contains("bad signature")
        ));
        // Signed for another timestamp.
        let h = header("app", "app-secret", date, false);
        assert!(authenticate(&rules, Some(&h), Some("20261205T221101Z"), ip).is_err());
        assert!(authenticate(&rules, None, Some(date), ip).is_err());
        assert!(authenticate(&rules, Some("garbage"), Some(date), ip).is_err());
    }
}
