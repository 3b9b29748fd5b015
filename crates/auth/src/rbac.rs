//! ACL 2.0 (RocketMQ 5.3, `authenticationEnabled` / `authorizationEnabled`): users with a
//! password and a type (Super or Normal), and per-user ACLs whose policy entries allow or deny
//! actions on resources (`Topic:orders`, `Group:app-*`, `Cluster:*`, `*`) from source IPs.
//!
//! The users and ACLs live in one JSON file, `<storePathRootDir>/config/auth.json`, written like
//! the broker's other config files (temp file, fsync, `.bak`, atomic rename). Java keeps them in
//! two RocksDB stores; a JSON file holds the same few hundred records, is readable and diffable
//! by an operator, needs no native dependency, and shares the crash discipline already tested
//! for topics.json. The wire shapes (`UserInfo`, `AclInfo`) are the file's shapes too.
//!
//! Evaluation follows Java: a Super user may do anything; otherwise the user's Custom policy
//! entries that match the resource, the action and the caller's IP are ranked (a named type
//! before `*`, literal before prefix before any, longer prefix first) and the first decides;
//! the Default policy is consulted only when no Custom entry matches; no match denies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use ferrymq_protocol::acl::SigningKey;
use ferrymq_store::config_file::ConfigFile;

/// The store's file name under `<storePathRootDir>/config/`.
pub const AUTH_FILE: &str = "auth.json";

pub use ferrymq_protocol::body::auth::{AclInfo, PolicyEntryInfo, PolicyInfo, UserInfo};

/// What can be done to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    All,
    Any,
    Pub,
    Sub,
    Create,
    Update,
    Delete,
    Get,
    List,
}

impl Action {
    const ALL: [Action; 9] = [
        Action::All,
        Action::Any,
        Action::Pub,
        Action::Sub,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Get,
        Action::List,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::All => "All",
            Action::Any => "Any",
            Action::Pub => "Pub",
            Action::Sub => "Sub",
            Action::Create => "Create",
            Action::Update => "Update",
            Action::Delete => "Delete",
            Action::Get => "Get",
            Action::List => "List",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// Every user request names a user; a blank name is refused as Java does.
fn require_username(username: &str) -> Result<(), AuthAdminError> {
    if username.trim().is_empty() {
        return Err(AuthAdminError::InvalidParameter(
            "The username is blank".into(),
        ));
    }
    Ok(())
}

fn canonical<'a>(names: &[&'a str], text: Option<&str>) -> Option<&'a str> {
    let text = text?.trim();
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(text))
}

const USER_TYPES: [&str; 2] = ["Super", "Normal"];
const USER_STATUSES: [&str; 2] = ["enable", "disable"];
const POLICY_TYPES: [&str; 2] = ["Custom", "Default"];
const DECISIONS: [&str; 2] = ["Allow", "Deny"];
const RESOURCE_TYPES: [&str; 4] = ["Cluster", "Namespace", "Topic", "Group"];

/// A resource a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Cluster(String),
    Topic(String),
    Group(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Cluster(_) => "Cluster",
            Target::Topic(_) => "Topic",
            Target::Group(_) => "Group",
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::Cluster(n) | Target::Topic(n) | Target::Group(n) => n,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

/// A resource pattern of a policy entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every type and name.
    Everything,
    Any(&'static str),
    Literal(&'static str, String),
    Prefixed(&'static str, String),
}

impl Pattern {
    /// `*`, `Type:*`, `Type:prefix*` or `Type:name` (type in any case, name as written).
    fn parse(text: &str) -> Option<Pattern> {
        let text = text.trim();
        if text == "*" {
            return Some(Pattern::Everything);
        }
        let (kind, name) = text.split_once(':')?;
        let kind = canonical(&RESOURCE_TYPES, Some(kind))?;
        Some(if name == "*" {
            Pattern::Any(kind)
        } else if name.ends_with('*') {
            let prefix = &name[..name.find('*').unwrap_or(name.len())];
            Pattern::Prefixed(kind, prefix.to_owned())
        } else if name.is_empty() {
            return None;
        } else {
            Pattern::Literal(kind, name.to_owned())
        })
    }

    fn matches(&self, target: &Target) -> bool {
        match self {
            Pattern::Everything => true,
            Pattern::Any(kind) => *kind == target.kind(),
            Pattern::Literal(kind, name) => *kind == target.kind() && name == target.name(),
            Pattern::Prefixed(kind, prefix) => {
                *kind == target.kind() && target.name().starts_with(prefix.as_str())
            }
        }
    }

    /// Lower ranks first: the most specific entry decides.
    fn rank(&self) -> (u8, u8, std::cmp::Reverse<usize>) {
        match self {
            Pattern::Everything => (1, 0, std::cmp::Reverse(0)),
            Pattern::Literal(..) => (0, 0, std::cmp::Reverse(0)),
            Pattern::Prefixed(_, p) => (0, 1, std::cmp::Reverse(p.len())),
            Pattern::Any(_) => (0, 2, std::cmp::Reverse(0)),
        }
    }
}

/// An IP or a CIDR block of `sourceIps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IpBlock {
    net: IpAddr,
    bits: u8,
}

impl IpBlock {
    fn parse(text: &str) -> Option<IpBlock> {
        let text = text.trim();
        let (ip, bits) = match text.split_once('/') {
            Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(IpBlock { net: ip, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        let mask = |bits: u8, width: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (!0u128 << (width - bits as u32)) & (!0u128 >> (128 - width))
            }
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask(self.bits, 32);
                (u32::from(n) as u128 & m) == (u32::from(a) as u128 & m)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask(self.bits, 128);
                (u128::from(n) & m) == (u128::from(a) & m)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    actions: Vec<Action>,
    sources: Vec<IpBlock>,
    allow: bool,
}

impl Entry {
    fn matches(&self, target: &Target, wanted: &[Action], ip: IpAddr) -> bool {
        self.pattern.matches(target)
            && !self.actions.is_empty()
            && (wanted.contains(&Action::Any)
                || self.actions.contains(&Action::All)
                || wanted.iter().any(|a| self.actions.contains(a)))
            && (self.sources.is_empty() || self.sources.iter().any(|s| s.contains(ip)))
    }
}

/// Why an admin request on users or ACLs failed, with the response code Java answers.
#[derive(Debug, thiserror::Error)]
pub enum AuthAdminError {
    /// INVALID_PARAMETER (29).
    #[error("{0}")]
    InvalidParameter(String),
    /// NO_PERMISSION (16): Java's AuthenticationException / AuthorizationException.
    #[error("{0}")]
    Refused(String),
    /// SYSTEM_ERROR (1).
    #[error("{0}")]
    System(String),
}

/// A user as kept in memory: its signing key is derived once.
#[derive(Debug, Clone)]
struct User {
    info: UserInfo,
    is_super: bool,
    enabled: bool,
    key: SigningKey,
}

impl User {
    fn from_info(info: UserInfo) -> User {
        let is_super = canonical(&USER_TYPES, info.user_type.as_deref()) == Some("Super");
        let enabled = canonical(&USER_STATUSES, info.user_status.as_deref()) != Some("disable");
        let key = SigningKey::new(info.password.as_deref().unwrap_or_default());
        User {
            info,
            is_super,
            enabled,
            key,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Compiled {
    custom: Vec<Entry>,
    default: Vec<Entry>,
}

/// The file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct AuthFile {
    users: Vec<UserInfo>,
    acls: Vec<AclInfo>,
}

#[derive(Debug, Clone, Default)]
struct State {
    users: BTreeMap<String, User>,
    /// Keyed by subject (`User:alice`), with the entries compiled for evaluation.
    acls: BTreeMap<String, (AclInfo, Compiled)>,
}

/// Users and ACLs, shared by the broker's remoting port and the gRPC endpoint.
pub struct AuthStore {
    file: ConfigFile,
    state: RwLock<Arc<State>>,
    /// Mutations are read-modify-write of the whole file: one at a time.
    write: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("file", &self.file.path())
            .finish_non_exhaustive()
    }
}

/// The ACL record key of a user.
pub fn subject_of(username: &str) -> String {
    format!("User:{username}")
}

/// `User:<name>` (type in any case) → the name.
fn subject_user(subject: &str) -> Option<&str> {
    let (kind, name) = subject.trim().split_once(':')?;
    (kind.eq_ignore_ascii_case("User") && !name.is_empty()).then_some(name)
}

fn compile(acl: &AclInfo) -> Result<Compiled, String> {
    let mut out = Compiled::default();
    for policy in &acl.policies {
        let mut entries = Vec::new();
        for e in &policy.entries {
            entries.push(compile_entry(e)?);
        }
        if canonical(&POLICY_TYPES, policy.policy_type.as_deref()) == Some("Default") {
            out.default.extend(entries);
        } else {
            out.custom.extend(entries);
        }
    }
    Ok(out)
}

fn compile_entry(e: &PolicyEntryInfo) -> Result<Entry, String> {
    let pattern = e
        .resource
        .as_deref()
        .and_then(Pattern::parse)
        .ok_or("The resource is null.")?;
    let actions: Vec<Action> = e.actions.iter().filter_map(|a| Action::parse(a)).collect();
    if actions.is_empty() {
        return Err("The actions is empty.".into());
    }
    if actions.contains(&Action::Any) {
        return Err("The actions can not be Any.".into());
    }
    let sources = e
        .source_ips
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| IpBlock::parse(s).ok_or("The source ip is invalid."))
        .collect::<Result<Vec<_>, _>>()?;
    let allow = match canonical(&DECISIONS, e.decision.as_deref()) {
        Some("Allow") => true,
        Some(_) => false,
        None => return Err("The decision is null or illegal.".into()),
    };
    Ok(Entry {
        pattern,
        actions,
        sources,
        allow,
    })
}

/// Canonical spellings in what is stored and answered.
fn normalize_entry(e: &PolicyEntryInfo) -> PolicyEntryInfo {
    PolicyEntryInfo {
        resource: e.resource.as_ref().map(|r| r.trim().to_owned()),
        actions: e
            .actions
            .iter()
            .filter_map(|a| Action::parse(a))
            .map(|a| a.name().to_owned())
            .collect(),
        source_ips: e
            .source_ips
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        decision: canonical(&DECISIONS, e.decision.as_deref()).map(str::to_owned),
    }
}

fn policy_type(text: Option<&str>) -> &'static str {
    canonical(&POLICY_TYPES, text).unwrap_or("Custom")
}

impl AuthStore {
    /// Opens (or starts empty) `<config_dir>/auth.json`. A corrupt file with no usable
    /// `.bak` stops start-up rather than opening the broker with no users.
    pub fn open(config_dir: &Path) -> Result<AuthStore, AuthAdminError> {
        let file = ConfigFile::in_store(config_dir, AUTH_FILE);
        let stored: AuthFile = file
            .load()
            .map_err(|e| AuthAdminError::System(format!("cannot read {AUTH_FILE}: {e}")))?
            .unwrap_or_default();
        let mut state = State::default();
        for info in stored.users {
            let Some(name) = info.username.clone() else {
                continue;
            };
            state.users.insert(name, User::from_info(info));
        }
        for acl in stored.acls {
            let Some(subject) = acl.subject.clone() else {
                continue;
            };
            let compiled = compile(&acl).map_err(|e| {
                AuthAdminError::System(format!("{AUTH_FILE}: ACL of {subject}: {e}"))
            })?;
            state.acls.insert(subject, (acl, compiled));
        }
        Ok(AuthStore {
            file,
            state: RwLock::new(Arc::new(state)),
            write: parking_lot::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Arc<State> {
        self.state.read().clone()
    }

    /// Applies `change` to a copy of the state, writes the file, then publishes the copy: a
    /// failed write changes nothing. Blocking (fsync): call off the async workers.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<T, AuthAdminError>,
    ) -> Result<T, AuthAdminError> {
        let _one_writer = self.write.lock();
        let mut next = (*self.snapshot()).clone();
        let out = change(&mut next)?;
        let file = AuthFile {
            users: next.users.values().map(|u| u.info.clone()).collect(),
            acls: next.acls.values().map(|(a, _)| a.clone()).collect(),
        };
        self.file
            .persist(&file)
            .map_err(|e| AuthAdminError::System(format!("cannot write {AUTH_FILE}: {e}")))?;
        *self.state.write() = Arc::new(next);
        Ok(out)
    }

    /// Creates a Super user at start-up if absent (`initAuthenticationUser`,
    /// `innerClientAuthenticationCredentials`); an existing user is left as it is.
    pub fn ensure_super_user(&self, username: &str, password: &str) -> Result<(), AuthAdminError> {
        if self.snapshot().users.contains_key(username) {
            return Ok(());
        }
        self.mutate(|s| {
            s.users.insert(
                username.to_owned(),
                User::from_info(UserInfo {
                    username: Some(username.to_owned()),
                    password: Some(password.to_owned()),
                    user_type: Some("Super".into()),
                    user_status: Some("enable".into()),
                }),
            );
            Ok(())
        })
    }

    fn caller_is_super(state: &State, caller: Option<&str>) -> bool {
        // No caller: authentication is off, as Java skips the check then.
        caller.is_none_or(|c| state.users.get(c).is_some_and(|u| u.is_super))
    }

    /// AUTH_CREATE_USER. `caller` is the request's AccessKey.
    pub fn create_user(
        &self,
        username: &str,
        info: UserInfo,
        caller: Option<&str>,
    ) -> Result<(), AuthAdminError> {
        require_username(username)?;
        self.mutate(|s| {
            let user_type = canonical(&USER_TYPES, info.user_type.as_deref()).unwrap_or("Normal");
            if user_type == "Super" && !Self::caller_is_super(s, caller) {
                return Err(AuthAdminError::System(
                    "The super user can only be create by super user".into(),
                ));
            }
            let password = info
                .password
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| AuthAdminError::Refused("password can not be blank".into()))?;
            if s.users.contains_key(username) {
                return Err(AuthAdminError::Refused("The user is existed".into()));
            }
            let status = canonical(&USER_STATUSES, info.user_status.as_deref()).unwrap_or("enable");
            s.users.insert(
                username.to_owned(),
                User::from_info(UserInfo {
                    username: Some(username.to_owned()),
                    password: Some(password),
                    user_type: Some(user_type.to_owned()),
                    user_status: Some(status.to_owned()),
                }),
            );
            Ok(())
        })
    }

    /// AUTH_UPDATE_USER: merges the non-blank password and the known type/status.
    pub fn update_user(
        &self,
        username: &str,
        info: UserInfo,
        caller: Option<&str>,
    ) -> Result<(), AuthAdminError> {
        require_username(username)?;
        self.mutate(|s| {
            let caller_super = Self::caller_is_super(s, caller);
            let old = s
                .users
                .get(username)
                .ok_or_else(|| AuthAdminError::Refused("The user is not exist".into()))?;
            let new_type = canonical(&USER_TYPES, info.user_type.as_deref());
            if (old.is_super || new_type == Some("Super")) && !caller_super {
                return Err(AuthAdminError::Refused(
                    "The super user can only be update by super user".into(),
                ));
            }
            let mut merged = old.info.clone();
            if let Some(p) = info.password.filter(|p| !p.trim().is_empty()) {
                merged.password = Some(p);
            }
            if let Some(t) = new_type {
                merged.user_type = Some(t.to_owned());
            }
            if let Some(st) = canonical(&USER_STATUSES, info.user_status.as_deref()) {
                merged.user_status = Some(st.to_owned());
            }
            s.users.insert(username.to_owned(), User::from_info(merged));
            Ok(())
        })
    }

    /// AUTH_DELETE_USER: idempotent; the user's ACL goes too.
    pub fn delete_user(&self, username: &str, caller: Option<&str>) -> Result<(), AuthAdminError> {
        require_username(username)?;
        if !self.snapshot().users.contains_key(username) {
            return Ok(());
        }
        self.mutate(|s| {
            if s.users.get(username).is_some_and(|u| u.is_super)
                && !Self::caller_is_super(s, caller)
            {
                return Err(AuthAdminError::Refused(
                    "The super user can only be delete by super user".into(),
                ));
            }
            s.users.remove(username);
            s.acls.remove(&subject_of(username));
            Ok(())
        })
    }

    /// AUTH_GET_USER.
    pub fn get_user(&self, username: &str) -> Result<Option<UserInfo>, AuthAdminError> {
        require_username(username)?;
        Ok(self.snapshot().users.get(username).map(|u| u.info.clone()))
    }

    /// AUTH_LIST_USER: `filter` is a substring of the name; blank lists all.
    pub fn list_users(&self, filter: Option<&str>) -> Vec<UserInfo> {
        let filter = filter.map(str::trim).unwrap_or_default();
        self.snapshot()
            .users
            .iter()
            .filter(|(name, _)| name.contains(filter))
            .map(|(_, u)| u.info.clone())
            .collect()
    }

    /// AUTH_CREATE_ACL and AUTH_UPDATE_ACL (the same in Java): merges `acl` into the
    /// subject's record, policy by type and entry by resource.
    pub fn upsert_acl(&self, subject: &str, acl: AclInfo) -> Result<(), AuthAdminError> {
        let subject = acl
            .subject
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(subject.to_owned());
        let user = subject_user(&subject)
            .ok_or_else(|| AuthAdminError::InvalidParameter(format!("bad subject `{subject}`")))?
            .to_owned();
        if acl.policies.is_empty() {
            return Err(AuthAdminError::System("The policies is empty.".into()));
        }
        for p in &acl.policies {
            if p.entries.is_empty() {
                return Err(AuthAdminError::Refused(
                    "The policy entries is empty.".into(),
                ));
            }
            for e in &p.entries {
                compile_entry(e).map_err(AuthAdminError::Refused)?;
            }
        }
        let key = subject_of(&user);
        self.mutate(|s| {
            if !s.users.contains_key(&user) {
                return Err(AuthAdminError::Refused(format!(
                    "The subject of {key} is not exist."
                )));
            }
            let mut record = s.acls.get(&key).map(|(a, _)| a.clone()).unwrap_or(AclInfo {
                subject: Some(key.clone()),
                policies: Vec::new(),
            });
            for incoming in acl.policies {
                let kind = policy_type(incoming.policy_type.as_deref());
                let pos = record
                    .policies
                    .iter()
                    .position(|p| policy_type(p.policy_type.as_deref()) == kind);
                let target = match pos {
                    Some(i) => &mut record.policies[i],
                    None => {
                        record.policies.push(PolicyInfo {
                            policy_type: Some(kind.to_owned()),
                            entries: Vec::new(),
                        });
                        record.policies.last_mut().expect("just pushed")
                    }
                };
                for e in &incoming.entries {
                    let e = normalize_entry(e);
                    let same = |old: &PolicyEntryInfo| {
                        old.resource.as_deref().and_then(Pattern::parse)
                            == e.resource.as_deref().and_then(Pattern::parse)
                    };
                    match target.entries.iter_mut().find(|old| same(old)) {
                        Some(old) => *old = e,
                        None => target.entries.push(e),
                    }
                }
            }
            let compiled = compile(&record).map_err(AuthAdminError::Refused)?;
            s.acls.insert(key.clone(), (record, compiled));
            Ok(())
        })
    }

    /// AUTH_DELETE_ACL: with a resource, only that entry of the policy type (Custom by
    /// default); without one (or one that does not parse), the subject's whole ACL.
    pub fn delete_acl(
        &self,
        subject: &str,
        policy: Option<&str>,
        resource: Option<&str>,
    ) -> Result<(), AuthAdminError> {
        let user = subject_user(subject)
            .ok_or_else(|| AuthAdminError::Refused("The subject is not exist.".into()))?
            .to_owned();
        let key = subject_of(&user);
        let kind = policy_type(policy);
        let pattern = resource.and_then(Pattern::parse);
        self.mutate(|s| {
            if !s.users.contains_key(&user) {
                return Err(AuthAdminError::Refused("The subject is not exist.".into()));
            }
            let Some((record, _)) = s.acls.get(&key) else {
                return Err(AuthAdminError::Refused("The acl is not exist.".into()));
            };
            let Some(pattern) = pattern else {
                s.acls.remove(&key);
                return Ok(());
            };
            let mut record = record.clone();
            for p in &mut record.policies {
                if policy_type(p.policy_type.as_deref()) == kind {
                    p.entries.retain(|e| {
                        e.resource.as_deref().and_then(Pattern::parse).as_ref() != Some(&pattern)
                    });
                }
            }
            record.policies.retain(|p| !p.entries.is_empty());
            if record.policies.is_empty() {
                s.acls.remove(&key);
            } else {
                let compiled = compile(&record).map_err(AuthAdminError::Refused)?;
                s.acls.insert(key.clone(), (record, compiled));
            }
            Ok(())
        })
    }

    /// AUTH_GET_ACL.
    pub fn get_acl(&self, subject: &str) -> Result<Option<AclInfo>, AuthAdminError> {
        let state = self.snapshot();
        let user = subject_user(subject)
            .filter(|u| state.users.contains_key(*u))
            .ok_or_else(|| AuthAdminError::Refused("The subject is not exist.".into()))?;
        Ok(state.acls.get(&subject_of(user)).map(|(a, _)| a.clone()))
    }

    /// AUTH_LIST_ACL: subjects containing `subject_filter`, entries whose resource contains
    /// `resource_filter`; what is left empty is left out.
    pub fn list_acls(
        &self,
        subject_filter: Option<&str>,
        resource_filter: Option<&str>,
    ) -> Vec<AclInfo> {
        let sf = subject_filter.map(str::trim).unwrap_or_default();
        let rf = resource_filter.map(str::trim).unwrap_or_default();
        let mut out = Vec::new();
        for (key, (acl, _)) in &self.snapshot().acls {
            if !key.contains(sf) {
                continue;
            }
            let mut acl = acl.clone();
            for p in &mut acl.policies {
                p.entries
                    .retain(|e| e.resource.as_deref().unwrap_or_default().contains(rf));
            }
            acl.policies.retain(|p| !p.entries.is_empty());
            if !acl.policies.is_empty() {
                out.push(acl);
            }
        }
        out
    }

    /// Authentication: the named user exists, is enabled, and `signed` accepts its key.
    /// Returns whether the user is Super.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        signed: impl FnOnce(&SigningKey) -> bool,
    ) -> Result<String, String> {
        let username = username
            .filter(|u| !u.is_empty())
            .ok_or("username cannot be null.")?;
        let state = self.snapshot();
        let user = state
            .users
            .get(username)
            .ok_or_else(|| format!("User:{username} is not found."))?;
        if !user.enabled {
            return Err(format!("User:{username} is disabled."));
        }
        if !signed(&user.key) {
            return Err(format!("User:{username} check signature failed."));
        }
        Ok(username.to_owned())
    }

    /// Authorization of `username` for every `(target, any-of actions)`.
    pub fn authorize(
        &self,
        username: &str,
        wanted: &[(Target, &[Action])],
        ip: IpAddr,
    ) -> Result<(), String> {
        let state = self.snapshot();
        let user = state
            .users
            .get(username)
            .ok_or_else(|| format!("User:{username} not found."))?;
        if user.is_super {
            return Ok(());
        }
        let compiled = state.acls.get(&subject_of(username)).map(|(_, c)| c);
        for (target, actions) in wanted {
            let decide = |entries: &[Entry]| {
                entries
                    .iter()
                    .filter(|e| e.matches(target, actions, ip))
                    .min_by_key(|e| (e.pattern.rank(), e.allow))
                    .map(|e| e.allow)
            };
            let decision = compiled.and_then(|c| decide(&c.custom).or_else(|| decide(&c.default)));
            let names: Vec<&str> = actions.iter().map(|a| a.name()).collect();
            match decision {
                Some(true) => {}
                Some(false) => {
                    return Err(format!(
                        "User:{username} is Deny {} on {target}",
                        names.join(",")
                    ))
                }
                None => {
                    return Err(format!(
                        "User:{username} has no matched policies for {} on {target}",
                        names.join(",")
                    ))
                }
            }
        }
        Ok(())
    }

    /// Whether `username` is a Super user.
    pub fn is_super(&self, username: &str) -> bool {
        self.snapshot()
            .users
            .get(username)
            .is_some_and(|u| u.is_super)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(resource: &str, actions: &[&str], decision: &str) -> PolicyEntryInfo {
        PolicyEntryInfo {
            resource: Some(resource.into()),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            source_ips: vec![],
            decision: Some(decision.into()),
        }
    }

    fn acl(entries: Vec<PolicyEntryInfo>) -> AclInfo {
        AclInfo {
            subject: None,
            policies: vec![PolicyInfo {
                policy_type: None,
                entries,
            }],
        }
    }

    fn store() -> (tempfile::TempDir, AuthStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = AuthStore::open(dir.path()).unwrap();
        s.ensure_super_user("root", "root-secret").unwrap();
        let user = UserInfo {
            password: Some("alice-secret".into()),
            ..Default::default()
        };
        s.create_user("alice", user, Some("root")).unwrap();
        (dir, s)
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn most_specific_entry_decides_and_no_match_denies() {
        let (_dir, s) = store();
        s.upsert_acl(
            "User:alice",
            acl(vec![
                entry("Topic:*", &["Pub", "Sub"], "Allow"),
                entry("Topic:secret*", &["Pub"], "Deny"),
                entry("Topic:secret-ok", &["pub"], "allow"),
            ]),
        )
        .unwrap();
        let t = |n: &str| Target::Topic(n.into());
        assert!(s
            .authorize("alice", &[(t("orders"), &[Action::Pub])], HERE)
            .is_ok());
        let denied = s
            .authorize("alice", &[(t("secret-x"), &[Action::Pub])], HERE)
            .unwrap_err();
        assert!(
            denied.contains("Deny") && denied.contains("Topic:secret-x"),
            "{denied}"
        );
        assert!(s
            .authorize("alice", &[(t("secret-ok"), &[Action::Pub])], HERE)
            .is_ok());
        assert!(s
            .authorize(
                "alice",
                &[(Target::Group("g".into()), &[Action::Sub])],
                HERE
            )
            .unwrap_err()
            .contains("no matched policies"));
        // Super users bypass ACLs.
        assert!(s
            .authorize("root", &[(t("secret-x"), &[Action::Pub])], HERE)
            .is_ok());
    }

    #[test]
    fn default_policy_only_when_no_custom_entry_matches_and_source_ips() {
        let (_dir, s) = store();
        let mut a = acl(vec![entry("Group:app", &["Sub"], "Allow")]);
        a.policies.push(PolicyInfo {
            policy_type: Some("default".into()),
            entries: vec![entry("*", &["All"], "Allow")],
        });
        s.upsert_acl("User:alice", a).unwrap();
        assert!(s
            .authorize(
                "alice",
                &[(Target::Topic("x".into()), &[Action::Pub])],
                HERE
            )
            .is_ok());
        let mut e = entry("Topic:lan", &["Pub"], "Deny");
        e.source_ips = vec!["10.0.0.0/8".into()];
        s.upsert_acl("User:alice", acl(vec![e])).unwrap();
        let lan = "10.1.2.3".parse().unwrap();
        assert!(s
            .authorize(
                "alice",
                &[(Target::Topic("lan".into()), &[Action::Pub])],
                lan
            )
            .is_err());
        // From elsewhere the Deny entry does not match and Default allows.
        assert!(s
            .authorize(
                "alice",
                &[(Target::Topic("lan".into()), &[Action::Pub])],
                HERE
            )
            .is_ok());
    }

    #[test]
    fn admin_rules_and_persistence() {
        let (dir, s) = store();
        let again = UserInfo {
            password: Some("x".repeat(8)),
            ..Default::default()
        };
        assert!(matches!(
            s.create_user("alice", again.clone(), Some("root")),
            Err(AuthAdminError::Refused(_))
        ));
        let sup = UserInfo {
            user_type: Some("SUPER".into()),
            ..again.clone()
        };
        assert!(matches!(
            s.create_user("bob", sup, Some("alice")),
            Err(AuthAdminError::System(_))
        ));
        assert!(matches!(
            s.create_user(" ", again.clone(), None),
            Err(AuthAdminError::InvalidParameter(_))
        ));
        assert!(s
            .upsert_acl(
                "User:nobody",
                acl(vec![entry("Topic:a", &["Pub"], "Allow")])
            )
            .is_err());
        assert!(s
            .upsert_acl("User:alice", acl(vec![entry("Topic:a", &["Any"], "Allow")]))
            .is_err());
        s.upsert_acl("User:alice", acl(vec![entry("Topic:a", &["Pub"], "Allow")]))
            .unwrap();
        s.upsert_acl("User:alice", acl(vec![entry("Topic:b", &["Sub"], "Allow")]))
            .unwrap();
        // Same resource again replaces the entry.
        s.upsert_acl("User:alice", acl(vec![entry("Topic:a", &["Sub"], "Deny")]))
            .unwrap();
        let got = s.get_acl("User:alice").unwrap().unwrap();
        assert_eq!(got.policies.len(), 1);
        assert_eq!(got.policies[0].entries.len(), 2);
        assert_eq!(got.policies[0].entries[0].decision.as_deref(), Some("Deny"));
        assert_eq!(s.list_acls(None, Some("Topic:b")).len(), 1);
        s.delete_acl("User:alice", None, Some("Topic:b")).unwrap();
        assert_eq!(s.list_acls(None, Some("Topic:b")).len(), 0);
        // Reopening reads back what was written.
        drop(s);
        let s = AuthStore::open(dir.path()).unwrap();
        assert_eq!(s.list_users(Some("ali")).len(), 1);
        assert!(s.is_super("root"));
        let key = SigningKey::new("alice-secret");
        let wanted = key.mac(&[b"x"]);
        assert!(s
            .authenticate(Some("alice"), |k| k.mac(&[b"x"]) == wanted)
            .is_ok());
        assert!(s.authenticate(Some("alice"), |_| false).is_err());
        s.update_user(
            "alice",
            UserInfo {
                user_status: Some("Disable".into()),
                ..Default::default()
            },
            Some("root"),
        )
        .unwrap();
        assert!(s
            .authenticate(Some("alice"), |_| true)
            .unwrap_err()
            .contains("disabled"));
        s.delete_user("alice", Some("root")).unwrap();
        assert!(s.get_acl("User:alice").is_err());
        s.delete_user("alice", Some("root")).unwrap();
    }

    #[test]
    fn resource_patterns_and_ip_blocks() {
        assert_eq!(
            Pattern::parse("topic:abc*"),
            Some(Pattern::Prefixed("Topic", "abc".into()))
        );
        assert_eq!(Pattern::parse("Group:*"), Some(Pattern::Any("Group")));
        assert_eq!(Pattern::parse("*"), Some(Pattern::Everything));
        assert_eq!(Pattern::parse("Queue:x"), None);
        assert_eq!(Pattern::parse("Topic:"), None);
        let b = IpBlock::parse("192.168.0.0/16").unwrap();
        assert!(b.contains("192.168.9.9".parse().unwrap()));
        assert!(!b.contains("192.169.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:192.168.1.1".parse().unwrap()));
        assert!(IpBlock::parse("1.2.3.4/33").is_none());
        assert!(IpBlock::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpBlock::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
