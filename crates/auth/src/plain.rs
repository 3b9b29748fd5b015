//! ACL 1.0 ("plain ACL", `aclEnable=true`): who may do what, from RocketMQ's `plain_acl.yml`.
//!
//! Every request is checked before it reaches a processor, in Java's order: a remote address in
//! `globalWhiteRemoteAddresses` passes; otherwise the request must name a known `AccessKey`; an
//! account whose `whiteRemoteAddress` matches passes; otherwise the `Signature` must match, and
//! then admin codes need `admin: true` and each topic/group the request touches needs the
//! permission (PUB to send, SUB to consume) from the account's per-resource or default perms.
//! A refusal is NO_PERMISSION with a remark naming the cause; the connection stays open.
//!
//! The file is polled for changes every second and swapped in whole, so a bad edit keeps the
//! last good rules (with a warning) instead of opening or closing the broker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use serde_yaml::Value;

use ferrymq_protocol::acl::{SigningKey, ACCESS_KEY};
use ferrymq_protocol::body::HeartbeatData;
use ferrymq_protocol::naming::RETRY_GROUP_TOPIC_PREFIX;
use ferrymq_protocol::{RemotingCommand, RequestCode};

/// How often the file's modification time is looked at.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// A permission bit set, as Java's `Permission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm(u8);

impl Perm {
    pub const DENY: Perm = Perm(1);
    pub const PUB: Perm = Perm(1 << 2);
    pub const SUB: Perm = Perm(1 << 3);
    /// Needed by calls that either side may make (route lookups): PUB or SUB suffices.
    pub const ANY: Perm = Perm(Perm::PUB.0 | Perm::SUB.0);

    /// `PUB`, `SUB`, `PUB|SUB` (also `SUB|PUB`, `PUB/SUB`, `ANY`), `DENY`; anything else is
    /// DENY, as in Java.
    pub fn parse(text: &str) -> Perm {
        let mut bits = 0;
        for part in text.split(['|', '/']) {
            match part.trim().to_ascii_uppercase().as_str() {
                "PUB" => bits |= Perm::PUB.0,
                "SUB" => bits |= Perm::SUB.0,
                "ANY" => bits |= Perm::PUB.0 | Perm::SUB.0,
                _ => return Perm::DENY,
            }
        }
        if bits == 0 {
            Perm::DENY
        } else {
            Perm(bits)
        }
    }

    pub fn allows(self, needed: Perm) -> bool {
        self.0 & needed.0 != 0
    }

    fn name(self) -> &'static str {
        match self {
            Perm::PUB => "PUB",
            Perm::SUB => "SUB",
            _ => "PUB|SUB",
        }
    }
}

/// A `whiteRemoteAddress` / `globalWhiteRemoteAddresses` pattern: `*`, an IPv4 address whose
/// dotted parts may be `*`, `a-b` or `{a,b,c}` (`192.168.0.*`, `10.1.1-20.*`, `10.0.0.{1,2}`),
/// a comma-separated list of addresses, or an exact IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPattern(String);

impl AddressPattern {
    pub fn new(text: &str) -> Option<AddressPattern> {
        let text = text.trim();
        (!text.is_empty()).then(|| AddressPattern(text.to_owned()))
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let pattern = self.0.as_str();
        if pattern == "*" || pattern == "*.*.*.*" {
            return true;
        }
        if !pattern.contains('{') && pattern.contains(',') {
            return pattern
                .split(',')
                .filter_map(AddressPattern::new)
                .any(|p| p.matches(ip));
        }
        let IpAddr::V4(v4) = ip else {
            return pattern.parse::<IpAddr>().is_ok_and(|p| p == ip);
        };
        let parts: Vec<&str> = pattern.split('.').collect();
        if parts.len() != 4 {
            return false;
        }
        parts
            .iter()
            .zip(v4.octets())
            .all(|(part, octet)| octet_matches(part, octet))
    }
}

fn octet_matches(part: &str, octet: u8) -> bool {
    let part = part.trim();
    if part == "*" {
        return true;
    }
    if let Some(set) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        return set.split(',').any(|v| v.trim().parse() == Ok(octet));
    }
    if let Some((lo, hi)) = part.split_once('-') {
        return matches!((lo.trim().parse::<u8>(), hi.trim().parse::<u8>()),
            (Ok(lo), Ok(hi)) if (lo..=hi).contains(&octet));
    }
    part.parse() == Ok(octet)
}

/// One `accounts[]` entry.
#[derive(Debug, Clone)]
pub struct Account {
    pub access_key: String,
    secret_key: String,
    signing_key: SigningKey,
    white_remote_address: Option<AddressPattern>,
    pub admin: bool,
    default_topic_perm: Perm,
    default_group_perm: Perm,
    topic_perms: HashMap<String, Perm>,
    group_perms: HashMap<String, Perm>,
}

impl Account {
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The secret key prepared for HMAC, so verifying a request does not re-derive it.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }
}

/// A parsed `plain_acl.yml`.
#[derive(Debug, Clone, Default)]
pub struct AclRules {
    global_white: Vec<AddressPattern>,
    accounts: HashMap<String, Account>,
}

/// Why a `plain_acl.yml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACL file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// `name=PERM` entries of topicPerms / groupPerms.
fn resource_perms(v: Option<&Value>) -> Result<HashMap<String, Perm>, String> {
    strings(v)
        .into_iter()
        .map(|entry| {
            let (name, perm) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not `name=PERM`"))?;
            Ok((name.trim().to_owned(), Perm::parse(perm)))
        })
        .collect()
}

impl AclRules {
    /// Parses the YAML text of a `plain_acl.yml`.
    pub fn parse(text: &str) -> Result<AclRules, String> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if doc.is_null() {
            return Ok(AclRules::default());
        }
        let global_white = strings(doc.get("globalWhiteRemoteAddresses"))
            .iter()
            .filter_map(|s| AddressPattern::new(s))
            .collect();
        let mut accounts = HashMap::new();
        let entries = match doc.get("accounts") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Sequence(items)) => &items[..],
            Some(_) => return Err("`accounts` is not a list".into()),
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = |name: &str| entry.get(name).and_then(scalar);
            let access_key = field("accessKey")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("account #{} has no accessKey", i + 1))?;
            let secret_key = field("secretKey")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("account `{access_key}` has no secretKey"))?;
            // Java refuses secrets shorter than 6 characters.
            if secret_key.len() < 6 {
                return Err(format!(
                    "account `{access_key}`: secretKey must have at least 6 characters"
                ));
            }
            let account = Account {
                white_remote_address: field("whiteRemoteAddress")
                    .and_then(|a| AddressPattern::new(&a)),
                admin: field("admin").is_some_and(|a| a.eq_ignore_ascii_case("true")),
                default_topic_perm: Perm::parse(&field("defaultTopicPerm").unwrap_or_default()),
                default_group_perm: Perm::parse(&field("defaultGroupPerm").unwrap_or_default()),
                topic_perms: resource_perms(entry.get("topicPerms"))
                    .map_err(|e| format!("account `{access_key}` topicPerms: {e}"))?,
                group_perms: resource_perms(entry.get("groupPerms"))
                    .map_err(|e| format!("account `{access_key}` groupPerms: {e}"))?,
                access_key: access_key.clone(),
                signing_key: SigningKey::new(&secret_key),
                secret_key,
            };
            if accounts.insert(access_key.clone(), account).is_some() {
                return Err(format!("accessKey `{access_key}` appears twice"));
            }
        }
        Ok(AclRules {
            global_white,
            accounts,
        })
    }

    /// The first admin account: the credentials the broker's own outbound requests (slave
    /// metadata sync, the embedded proxy) sign with.
    pub fn admin_account(&self) -> Option<&Account> {
        let mut admins: Vec<&Account> = self.accounts.values().filter(|a| a.admin).collect();
        admins.sort_by(|a, b| a.access_key.cmp(&b.access_key));
        admins.into_iter().next()
    }

    /// Who is asking: `Ok(None)` when `remote` is white-listed (globally, or for the named
    /// account), so nothing more is checked; `Ok(Some(account))` once `signed_by` accepted
    /// the account's secret key.
    pub fn authenticate(
        &self,
        access_key: Option<&str>,
        remote: IpAddr,
        signed_by: impl FnOnce(&Account) -> bool,
    ) -> Result<Option<&Account>, AclError> {
        if self.global_white.iter().any(|p| p.matches(remote)) {
            return Ok(None);
        }
        let access_key = access_key.filter(|k| !k.is_empty()).ok_or_else(|| {
            AclError::Authentication(
                "no AccessKey in the request (the client is not signing its requests)".into(),
            )
        })?;
        let account = self.accounts.get(access_key).ok_or_else(|| {
            AclError::Authentication(format!("unknown access key `{access_key}`"))
        })?;
        if account
            .white_remote_address
            .as_ref()
            .is_some_and(|p| p.matches(remote))
        {
            return Ok(None);
        }
        if !signed_by(account) {
            return Err(AclError::Authentication(format!(
                "bad signature for access key `{access_key}`"
            )));
        }
        Ok(Some(account))
    }

    /// Whether `account` may do something that needs `admin` and touches `resources`.
    pub fn authorize(
        &self,
        account: &Account,
        admin: bool,
        resources: &[(Resource, Perm)],
    ) -> Result<(), AclError> {
        if admin_gate(account, admin)? {
            return Ok(());
        }
        resources
            .iter()
            .try_for_each(|(resource, needed)| permits(account, resource.borrowed(), *needed))
    }

    /// Checks one remoting request from `remote`. `Err` is the NO_PERMISSION remark.
    /// Borrows the names it checks from the request: nothing is allocated for a request that
    /// passes.
    pub fn check(&self, request: &RemotingCommand, remote: IpAddr) -> Result<(), String> {
        let ext = &request.ext_fields;
        let signed_by = |account: &Account| account.signing_key.verifies(request);
        let Some(account) = self
            .authenticate(ext.get(ACCESS_KEY), remote, signed_by)
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if admin_gate(account, needs_admin(request.request_code())).map_err(|e| e.to_string())? {
            return Ok(());
        }
        for_each_resource(request, &mut |resource, needed| {
            permits(account, resource, needed).map_err(|e| e.to_string())
        })
    }
}

/// `Err` when the call needs an admin and `account` is not one; `Ok(true)` when nothing more
/// is checked (an admin without per-resource permissions may do anything).
fn admin_gate(account: &Account, admin: bool) -> Result<bool, AclError> {
    if admin && !account.admin {
        return Err(AclError::Authorization(format!(
            "needs admin permission, access key `{}` is not admin",
            account.access_key
        )));
    }
    Ok(account.admin && account.topic_perms.is_empty() && account.group_perms.is_empty())
}

/// Whether `account` holds `needed` on `resource`, from its per-resource or default perms.
fn permits(account: &Account, resource: ResourceRef<'_>, needed: Perm) -> Result<(), AclError> {
    let (perms, default, kind, name) = match resource {
        ResourceRef::Topic(t) => (&account.topic_perms, account.default_topic_perm, "topic", t),
        ResourceRef::Group(g) => (&account.group_perms, account.default_group_perm, "group", g),
    };
    let owned = perms.get(name).copied().unwrap_or(default);
    if owned.allows(needed) {
        return Ok(());
    }
    Err(AclError::Authorization(format!(
        "no {} permission on {kind} `{name}` for access key `{}`",
        needed.name(),
        account.access_key
    )))
}

/// Why a request was refused: the caller is not who it says (or says nothing), or may not do
/// what it asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("{0}")]
    Authentication(String),
    #[error("{0}")]
    Authorization(String),
}

/// Codes that change the broker's configuration or other clients' state.
fn needs_admin(code: RequestCode) -> bool {
    matches!(
        code,
        RequestCode::UpdateAndCreateTopic
            | RequestCode::DeleteTopicInBroker
            | RequestCode::UpdateBrokerConfig
            | RequestCode::UpdateAndCreateSubscriptiongroup
            | RequestCode::DeleteSubscriptiongroup
            | RequestCode::InvokeBrokerToResetOffset
            | RequestCode::AuthCreateUser
            | RequestCode::AuthUpdateUser
            | RequestCode::AuthDeleteUser
            | RequestCode::AuthGetUser
            | RequestCode::AuthListUser
            | RequestCode::AuthCreateAcl
            | RequestCode::AuthUpdateAcl
            | RequestCode::AuthDeleteAcl
            | RequestCode::AuthGetAcl
            | RequestCode::AuthListAcl
    )
}

/// A topic or a consumer group, the two kinds of resource permissions name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
}

/// A [`Resource`] borrowed from the request that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceRef<'a> {
    Topic(&'a str),
    Group(&'a str),
}

impl Resource {
    /// A topic by name; a `%RETRY%<group>` topic stands for its group (sending to it is
    /// consuming), so it needs SUB on the group instead of `perm` on a topic.
    pub fn topic(name: &str, perm: Perm) -> (Resource, Perm) {
        let (resource, perm) = ResourceRef::topic(name, perm);
        (resource.owned(), perm)
    }

    /// A consumer group (always SUB).
    pub fn group(name: &str) -> (Resource, Perm) {
        (Resource::Group(name.to_owned()), Perm::SUB)
    }

    pub(crate) fn borrowed(&self) -> ResourceRef<'_> {
        match self {
            Resource::Topic(t) => ResourceRef::Topic(t),
            Resource::Group(g) => ResourceRef::Group(g),
        }
    }
}

impl<'a> ResourceRef<'a> {
    /// As [`Resource::topic`].
    fn topic(name: &'a str, perm: Perm) -> (ResourceRef<'a>, Perm) {
        match name.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
            Some(group) => (ResourceRef::Group(group), Perm::SUB),
            None => (ResourceRef::Topic(name), perm),
        }
    }

    pub(crate) fn owned(self) -> Resource {
        match self {
            ResourceRef::Topic(t) => Resource::Topic(t.to_owned()),
            ResourceRef::Group(g) => Resource::Group(g.to_owned()),
        }
    }
}

/// The topics and groups a request touches, with the permission each needs (Java's
/// `PlainAccessResource.parse`).
pub(crate) fn resources(request: &RemotingCommand) -> Result<Vec<(Resource, Perm)>, String> {
    let mut out = Vec::new();
    for_each_resource(request, &mut |resource, perm| {
        out.push((resource.owned(), perm));
        Ok(())
    })?;
    Ok(out)
}

/// What [`for_each_resource`] calls for each resource.
pub(crate) type Visit<'v> = dyn FnMut(ResourceRef<'_>, Perm) -> Result<(), String> + 'v;

/// Calls `f` with each topic and group a request touches and the permission it needs,
/// stopping at the first error; an `Err` of its own is a request it cannot read.
pub(crate) fn for_each_resource(
    request: &RemotingCommand,
    f: &mut Visit<'_>,
) -> Result<(), String> {
    let ext = &request.ext_fields;
    let field = |k: &str| ext.get(k).filter(|v| !v.is_empty());
    let topic = |key: &str, perm: Perm, f: &mut Visit<'_>| match field(key) {
        Some(t) => {
            let (resource, perm) = ResourceRef::topic(t, perm);
            f(resource, perm)
        }
        None => Ok(()),
    };
    let group = |key: &str, f: &mut Visit<'_>| match field(key) {
        Some(g) => f(ResourceRef::Group(g), Perm::SUB),
        None => Ok(()),
    };
    match request.request_code() {
        RequestCode::SendMessage | RequestCode::SendReplyMessage => topic("topic", Perm::PUB, f),
        RequestCode::SendMessageV2
        | RequestCode::SendBatchMessage
        | RequestCode::SendReplyMessageV2 => topic("b", Perm::PUB, f),
        RequestCode::EndTransaction | RequestCode::RecallMessage => topic("topic", Perm::PUB, f),
        RequestCode::ConsumerSendMsgBack => group("group", f),
        RequestCode::PullMessage
        | RequestCode::LitePullMessage
        | RequestCode::QueryConsumerOffset
        | RequestCode::UpdateConsumerOffset
        | RequestCode::PopMessage
        | RequestCode::AckMessage
        | RequestCode::ChangeMessageInvisibletime
        | RequestCode::Notification
        | RequestCode::PeekMessage
        | RequestCode::PollingInfo => {
            topic("topic", Perm::SUB, f)?;
            group("consumerGroup", f)
        }
        RequestCode::QueryMessage => topic("topic", Perm::SUB, f),
        RequestCode::UnregisterClient | RequestCode::GetConsumerListByGroup => {
            group("consumerGroup", f)
        }
        RequestCode::HeartBeat => {
            let body = request.body.to_bytes();
            let text = std::str::from_utf8(&body).map_err(|_| "heartbeat body is not UTF-8")?;
            let data: HeartbeatData = ferrymq_protocol::body::from_java_json(text)
                .map_err(|e| format!("malformed heartbeat body: {e}"))?;
            for consumer in &data.consumer_data_set {
                for sub in &consumer.subscription_data_set {
                    if !sub.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
                        f(ResourceRef::Topic(&sub.topic), Perm::SUB)?;
                    }
                }
                f(ResourceRef::Group(&consumer.group_name), Perm::SUB)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The ACL file and its current rules, reloaded when the file changes.
#[derive(Debug)]
pub struct PlainAcl {
    path: PathBuf,
    rules: RwLock<(Arc<AclRules>, Option<SystemTime>)>,
}

impl PlainAcl {
    /// Loads `path`; a missing or invalid file fails start-up.
    pub fn load(path: &Path) -> Result<PlainAcl, AclFileError> {
        let (rules, modified) = read_rules(path)?;
        Ok(PlainAcl {
            path: path.to_owned(),
            rules: RwLock::new((Arc::new(rules), modified)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<AclRules> {
        self.rules.read().0.clone()
    }

    /// [`AclRules::check`] under the rules in force, without taking a reference to them.
    pub fn check(&self, request: &RemotingCommand, remote: IpAddr) -> Result<(), String> {
        self.rules.read().0.check(request, remote)
    }

    /// Re-reads the file if its modification time changed. Keeps the old rules when the new
    /// file cannot be used.
    pub fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.rules.read().1 {
            return;
        }
        match read_rules(&self.path) {
            Ok((rules, modified)) => {
                tracing::info!(file = %self.path.display(), accounts = rules.accounts.len(), "ACL file reloaded");
                *self.rules.write() = (Arc::new(rules), modified);
            }
            Err(e) => {
                tracing::warn!(error = %e, "ACL file changed but cannot be used; keeping the previous rules");
                // Do not retry a broken file every second: wait for its next change.
                self.rules.write().1 = modified;
            }
        }
    }

    /// Polls the file until `stop`; runs the reads on a blocking thread.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RELOAD_POLL) => {}
            }
            let acl = self.clone();
            let _ = tokio::task::spawn_blocking(move || acl.reload_if_changed()).await;
        }
    }
}

fn read_rules(path: &Path) -> Result<(AclRules, Option<SystemTime>), AclFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let rules = AclRules::parse(&text).map_err(|reason| AclFileError::Invalid {
        path: path.to_owned(),
        reason,
    })?;
    Ok((rules, modified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::acl::{sign_request, Credentials};

    const FILE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.{1,2}
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: 87654321
    whiteRemoteAddress: 172.16.1-9.*
    admin: true
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn send(topic: &str, creds: &Credentials) -> RemotingCommand {
        let mut req =
            RemotingCommand::request(RequestCode::SendMessageV2).with_body(b"payload".to_vec());
        req.ext_fields.insert("a", "producer");
        req.ext_fields.insert("b", topic);
        sign_request(&mut req, creds);
        req
    }

    #[test]
    fn perms_parse_like_java() {
        assert_eq!(Perm::parse("PUB"), Perm::PUB);
        assert_eq!(Perm::parse("SUB|PUB"), Perm(Perm::PUB.0 | Perm::SUB.0));
        assert_eq!(Perm::parse("PUB/SUB"), Perm(Perm::PUB.0 | Perm::SUB.0));
        assert_eq!(Perm::parse(""), Perm::DENY);
        assert_eq!(Perm::parse("BOGUS"), Perm::DENY);
        assert!(!Perm::DENY.allows(Perm::PUB));
    }

    #[test]
    fn address_patterns() {
        let p = |s| AddressPattern::new(s).unwrap();
        assert!(p("10.10.103.*").matches(ip("10.10.103.7")));
        assert!(!p("10.10.103.*").matches(ip("10.10.104.7")));
        assert!(p("192.168.0.{1,2}").matches(ip("192.168.0.2")));
        assert!(!p("192.168.0.{1,2}").matches(ip("192.168.0.3")));
        assert!(p("172.16.1-9.*").matches(ip("172.16.5.1")));
        assert!(!p("172.16.1-9.*").matches(ip("172.16.10.1")));
        assert!(p("1.1.1.1,2.2.2.2").matches(ip("2.2.2.2")));
        assert!(p("*").matches(ip("::1")));
        assert!(p("127.0.0.1").matches(ip("::ffff:127.0.0.1")));
        assert!(!p("garbage").matches(ip("127.0.0.1")));
    }

    #[test]
    fn checks_in_javas_order() {
        let rules = AclRules::parse(FILE).unwrap();
        let user = Credentials::new("RocketMQ", "12345678");
        let here = ip("127.0.0.1");
        assert_eq!(rules.check(&send("topicB", &user), here), Ok(()));
        let e = rules.check(&send("topicA", &user), here).unwrap_err();
        assert!(e.contains("no PUB permission on topic `topicA`"), "{e}");
        // Default topic perm DENY.
        assert!(rules.check(&send("other", &user), here).is_err());
        // Sending to a retry topic needs SUB on its group (default SUB).
        assert_eq!(rules.check(&send("%RETRY%groupC", &user), here), Ok(()));
        assert!(rules.check(&send("%RETRY%groupA", &user), here).is_err());

        let wrong = Credentials::new("RocketMQ", "wrong-secret");
        let e = rules.check(&send("topicB", &wrong), here).unwrap_err();
        assert!(e.contains("bad signature"), "{e}");
        let e = rules
            .check(&send("topicB", &Credentials::new("nobody", "123456")), here)
            .unwrap_err();
        assert!(e.contains("unknown access key `nobody`"), "{e}");
        let unsigned = RemotingCommand::request(RequestCode::SendMessageV2);
        assert!(rules
            .check(&unsigned, here)
            .unwrap_err()
            .contains("no AccessKey"));
        // Globally white-listed addresses need nothing.
        assert_eq!(rules.check(&unsigned, ip("10.10.103.9")), Ok(()));

        // Tampering with a signed request breaks the signature.
        let mut tampered = send("topicB", &user);
        tampered.ext_fields.insert("b", "topicC");
        assert!(rules
            .check(&tampered, here)
            .unwrap_err()
            .contains("bad signature"));
    }

    #[test]
    fn admin_codes_need_admin() {
        let rules = AclRules::parse(FILE).unwrap();
        let mut create = RemotingCommand::request(RequestCode::UpdateAndCreateTopic);
        create.ext_fields.insert("topic", "topicB");
        let mut as_user = create.clone();
        sign_request(&mut as_user, &Credentials::new("RocketMQ", "12345678"));
        let e = rules.check(&as_user, ip("127.0.0.1")).unwrap_err();
        assert!(e.contains("needs admin"), "{e}");
        sign_request(&mut create, &Credentials::new("rocketmq2", "87654321"));
        assert_eq!(rules.check(&create, ip("127.0.0.1")), Ok(()));
        assert_eq!(
            rules.admin_account().map(|a| a.access_key.as_str()),
            Some("rocketmq2")
        );
    }

    #[test]
    fn account_white_address_skips_the_signature() {
        let rules = AclRules::parse(FILE).unwrap();
        let mut req = RemotingCommand::request(RequestCode::SendMessageV2);
        req.ext_fields.insert(ACCESS_KEY, "rocketmq2");
        assert_eq!(rules.check(&req, ip("172.16.3.3")), Ok(()));
        assert!(rules.check(&req, ip("172.16.30.3")).is_err());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(AclRules::parse("accounts: 5")
            .unwrap_err()
            .contains("not a list"));
        let e = AclRules::parse("accounts:\n  - accessKey: a\n    secretKey: 123\n").unwrap_err();
        assert!(e.contains("at least 6"), "{e}");
        assert!(AclRules::parse("accounts:\n  - secretKey: 1234567\n")
            .unwrap_err()
            .contains("no accessKey"));
        assert!(AclRules::parse("").unwrap().accounts.is_empty());
    }

    #[test]
    fn heartbeat_needs_sub_on_its_groups_and_topics() {
        let rules = AclRules::parse(FILE).unwrap();
        let body = r#"{"clientID":"c","producerDataSet":[],"consumerDataSet":[{"groupName":"groupB","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"topic":"topicC","subString":"*"},{"topic":"%RETRY%groupB","subString":"*"}],"unitMode":false}]}"#;
        let mut hb =
            RemotingCommand::request(RequestCode::HeartBeat).with_body(body.as_bytes().to_vec());
        sign_request(&mut hb, &Credentials::new("RocketMQ", "12345678"));
        assert_eq!(rules.check(&hb, ip("127.0.0.1")), Ok(()));
        let denied = body.replace("groupB", "groupA");
        let mut hb =
            RemotingCommand::request(RequestCode::HeartBeat).with_body(denied.into_bytes());
        sign_request(&mut hb, &Credentials::new("RocketMQ", "12345678"));
        assert!(rules
            .check(&hb, ip("127.0.0.1"))
            .unwrap_err()
            .contains("group `groupA`"));
    }
}
