//! The one access check the broker and the gRPC endpoint call, whichever ACL generation the
//! broker runs: ACL 1.0 (`aclEnable`, plain_acl.yml) or ACL 2.0 (`authenticationEnabled` /
//! `authorizationEnabled`, users and policies in [`AuthStore`]). Both verify the same
//! remoting signature and the same gRPC `authorization` header; they differ in what an
//! identity may do.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use ferrymq_protocol::acl::ACCESS_KEY;
use ferrymq_protocol::body::SubscriptionGroupConfig;
use ferrymq_protocol::{RemotingCommand, RequestCode};

use crate::grpc;
use crate::plain::{resources, AclError, Perm, PlainAcl, Resource};
use crate::rbac::{Action, AuthStore, Target};

/// ACL 2.0 switches of a broker (Java's `AuthConfig`).
#[derive(Debug)]
pub struct Rbac {
    pub store: Arc<AuthStore>,
    pub authentication: bool,
    pub authorization: bool,
    /// `brokerClusterName`: what `Cluster:<name>` resources match.
    pub cluster: String,
    /// Request codes (remoting) that skip authentication / authorization.
    pub authentication_whitelist: HashSet<i32>,
    pub authorization_whitelist: HashSet<i32>,
}

/// The access control a server runs.
#[derive(Debug, Clone)]
pub enum AccessControl {
    Plain(Arc<PlainAcl>),
    Rbac(Arc<Rbac>),
}

impl AccessControl {
    /// Checks one remoting request; the error is the NO_PERMISSION remark.
    pub fn check_remoting(&self, request: &RemotingCommand, remote: IpAddr) -> Result<(), String> {
        match self {
            AccessControl::Plain(acl) => acl.check(request, remote),
            AccessControl::Rbac(rbac) => rbac.check_remoting(request, remote),
        }
    }

    /// Checks one gRPC call: `authorization` and `x-mq-date-time` metadata, and the
    /// topics/groups it touches.
    pub fn check_grpc(
        &self,
        authorization: Option<&str>,
        date_time: Option<&str>,
        remote: IpAddr,
        needs: &[(Resource, Perm)],
    ) -> Result<(), AclError> {
        match self {
            AccessControl::Plain(acl) => {
                let rules = acl.rules();
                match grpc::authenticate(&rules, authorization, date_time, remote)? {
                    Some(account) => rules.authorize(account, false, needs),
                    None => Ok(()),
                }
            }
            AccessControl::Rbac(rbac) => {
                let parsed = authorization.and_then(grpc::parse);
                if authorization.is_some_and(|a| !a.trim().is_empty()) && parsed.is_none() {
                    return Err(AclError::Authentication(
                        "malformed authorization header".into(),
                    ));
                }
                let username = parsed.as_ref().map(|p| p.access_key);
                if rbac.authentication {
                    rbac.store
                        .authenticate(username, |key| {
                            grpc::signed_by(key, parsed.as_ref(), date_time)
                        })
                        .map_err(AclError::Authentication)?;
                }
                if rbac.authorization {
                    let user = username.filter(|u| !u.is_empty()).ok_or_else(|| {
                        AclError::Authorization("username cannot be null.".into())
                    })?;
                    let wanted: Vec<(Target, &[Action])> =
                        needs.iter().map(|(r, p)| from_plain(r, *p)).collect();
                    rbac.store
                        .authorize(user, &wanted, remote)
                        .map_err(AclError::Authorization)?;
                }
                Ok(())
            }
        }
    }
}

const PUB: &[Action] = &[Action::Pub];
const SUB: &[Action] = &[Action::Sub];
const PUB_OR_SUB: &[Action] = &[Action::Pub, Action::Sub];
const SUB_OR_GET: &[Action] = &[Action::Sub, Action::Get];
const SUB_OR_UPDATE: &[Action] = &[Action::Sub, Action::Update];
const CREATE_OR_UPDATE: &[Action] = &[Action::Create, Action::Update];
const UPDATE: &[Action] = &[Action::Update];
const DELETE: &[Action] = &[Action::Delete];
const GET: &[Action] = &[Action::Get];
const LIST: &[Action] = &[Action::List, Action::Get];

fn from_plain(resource: &Resource, perm: Perm) -> (Target, &'static [Action]) {
    let actions = if perm == Perm::PUB {
        PUB
    } else if perm == Perm::SUB {
        SUB
    } else {
        PUB_OR_SUB
    };
    match resource {
        Resource::Topic(t) => (Target::Topic(t.clone()), actions),
        Resource::Group(g) => (Target::Group(g.clone()), SUB),
    }
}

impl Rbac {
    fn check_remoting(&self, request: &RemotingCommand, remote: IpAddr) -> Result<(), String> {
        let code = request.code;
        let username = request.ext_fields.get(ACCESS_KEY);
        if self.authentication && !self.authentication_whitelist.contains(&code) {
            self.store
                .authenticate(username, |key| key.verifies(request))?;
        }
        if self.authorization && !self.authorization_whitelist.contains(&code) {
            let user = username
                .filter(|u| !u.is_empty())
                .ok_or("username cannot be null.")?;
            let wanted = self.targets(request)?;
            self.store.authorize(user, &wanted, remote)?;
        }
        Ok(())
    }

    /// What a remoting request touches and the actions (any one suffices) it needs, as
    /// Java's `DefaultAuthorizationContextBuilder`; codes it does not list are not checked.
    fn targets(
        &self,
        request: &RemotingCommand,
    ) -> Result<Vec<(Target, &'static [Action])>, String> {
        let ext = &request.ext_fields;
        let field = |k: &str| ext.get(k).filter(|v| !v.is_empty()).map(str::to_owned);
        let cluster = || Target::Cluster(self.cluster.clone());
        let code = request.request_code();
        let retouch = |actions: &'static [Action]| -> Vec<(Target, &'static [Action])> {
            // Offset reads and writes: Java asks for Sub or Get / Sub or Update.
            resources(request)
                .unwrap_or_default()
                .iter()
                .map(|(r, p)| {
                    let (t, _) = from_plain(r, *p);
                    (t, actions)
                })
                .collect()
        };
        Ok(match code {
            RequestCode::QueryConsumerOffset | RequestCode::QueryMessage => retouch(SUB_OR_GET),
            RequestCode::GetConsumerListByGroup => retouch(SUB_OR_GET),
            RequestCode::UpdateConsumerOffset => retouch(SUB_OR_UPDATE),
            RequestCode::UpdateAndCreateTopic => field("topic")
                .map(|t| vec![(Target::Topic(t), CREATE_OR_UPDATE)])
                .unwrap_or_default(),
            RequestCode::DeleteTopicInBroker => field("topic")
                .map(|t| vec![(Target::Topic(t), DELETE)])
                .unwrap_or_default(),
            RequestCode::UpdateAndCreateSubscriptiongroup => {
                let body = request.body.to_bytes();
                let group = std::str::from_utf8(&body)
                    .ok()
                    .and_then(|t| {
                        ferrymq_protocol::body::from_java_json::<SubscriptionGroupConfig>(t).ok()
                    })
                    .map(|c| c.group_name)
                    .filter(|g| !g.is_empty())
                    .ok_or("malformed subscription group body")?;
                vec![(Target::Group(group), CREATE_OR_UPDATE)]
            }
            RequestCode::DeleteSubscriptiongroup => field("groupName")
                .map(|g| vec![(Target::Group(g), DELETE)])
                .unwrap_or_default(),
            RequestCode::InvokeBrokerToResetOffset => {
                let mut out = Vec::new();
                if let Some(g) = field("group") {
                    out.push((Target::Group(g), UPDATE));
                }
                if let Some(t) = field("topic") {
                    out.push((Target::Topic(t), UPDATE));
                }
                out
            }
            RequestCode::GetTopicConfig
            | RequestCode::GetTopicStatsInfo
            | RequestCode::ViewMessageById => field("topic")
                .map(|t| vec![(Target::Topic(t), GET)])
                .unwrap_or_default(),
            RequestCode::GetMaxOffset
            | RequestCode::GetMinOffset
            | RequestCode::SearchOffsetByTimestamp
            | RequestCode::GetEarliestMsgStoretime => field("topic")
                .map(|t| vec![(Target::Topic(t), SUB_OR_GET)])
                .unwrap_or_default(),
            RequestCode::UpdateBrokerConfig
            | RequestCode::AuthCreateUser
            | RequestCode::AuthUpdateUser
            | RequestCode::AuthDeleteUser
            | RequestCode::AuthCreateAcl
            | RequestCode::AuthUpdateAcl
            | RequestCode::AuthDeleteAcl => vec![(cluster(), UPDATE)],
            RequestCode::AuthGetUser | RequestCode::AuthGetAcl => vec![(cluster(), GET)],
            RequestCode::AuthListUser | RequestCode::AuthListAcl => vec![(cluster(), LIST)],
            _ => resources(request)?
                .iter()
                .map(|(r, p)| from_plain(r, *p))
                .collect(),
        })
    }
}
