//! ACL 2.0 administration bodies (AUTH_CREATE_USER .. AUTH_LIST_ACL): `UserInfo` and
//! `AclInfo` as RocketMQ 5.3's admin tools send and read them. The broker keeps the same
//! shapes in its auth store file, so what an operator reads there is what travels here.

use serde::{Deserialize, Serialize};

/// `UserInfo` on the wire and in the file. Enum fields are strings, parsed leniently as Java
/// does (any case; unknown values count as absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_status: Option<String>,
}

/// `AclInfo`: one subject's policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AclInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub policies: Vec<PolicyInfo>,
}

/// One policy (Custom or Default) of a subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_type: Option<String>,
    pub entries: Vec<PolicyEntryInfo>,
}

/// Actions allowed or denied on one resource, from some source IPs (none: any).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyEntryInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub actions: Vec<String>,
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}
