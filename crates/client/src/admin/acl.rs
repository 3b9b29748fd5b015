//! ACL 2.0 administration (mqadmin's createUser .. listAcl): users and ACLs kept by each
//! broker. Every broker of a group keeps its own copy, so the command-line tool sends writes
//! to each broker it is pointed at, as mqadmin does.

use ferrymq_protocol::body::auth::{AclInfo, UserInfo};
use ferrymq_protocol::{RemotingCommand, RequestCode};

use super::{json_body, Admin};
use crate::error::{ClientError, Result};

/// A request whose header is a few optional strings (absent ones are not sent).
fn request(code: RequestCode, fields: &[(&str, Option<&str>)]) -> RemotingCommand {
    let mut req = RemotingCommand::request(code);
    for (key, value) in fields {
        if let Some(value) = value {
            req.ext_fields.insert(key, value);
        }
    }
    req
}

fn json(value: &impl serde::Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ClientError::InvalidArgument(format!("{what}: {e}")))
}

impl Admin {
    /// Sends `req` and decodes its JSON body; an empty body (nothing found) is `None`.
    async fn fetch_optional<T: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        req: RemotingCommand,
        what: &str,
    ) -> Result<Option<T>> {
        let resp = self.instance.invoke_ok(addr, req, self.timeout()).await?;
        if resp.body.is_empty() {
            Ok(None)
        } else {
            json_body(&resp, what).map(Some)
        }
    }

    /// Creates a user (AUTH_CREATE_USER) on one broker. `user.username` names it.
    pub async fn create_user(&self, broker_addr: &str, user: &UserInfo) -> Result<()> {
        self.write_user(broker_addr, RequestCode::AuthCreateUser, user)
            .await
    }

    /// Changes a user's password, type or status (AUTH_UPDATE_USER); absent fields stay.
    pub async fn update_user(&self, broker_addr: &str, user: &UserInfo) -> Result<()> {
        self.write_user(broker_addr, RequestCode::AuthUpdateUser, user)
            .await
    }

    async fn write_user(&self, addr: &str, code: RequestCode, user: &UserInfo) -> Result<()> {
        let name = user
            .username
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ClientError::InvalidArgument("a user needs a username".into()))?;
        let req = request(code, &[("username", Some(name))]).with_body(json(user, "user")?);
        self.invoke_unit(addr, req).await
    }

    /// Deletes a user and its ACL (AUTH_DELETE_USER) on one broker.
    pub async fn delete_user(&self, broker_addr: &str, username: &str) -> Result<()> {
        let req = request(RequestCode::AuthDeleteUser, &[("username", Some(username))]);
        self.invoke_unit(broker_addr, req).await
    }

    /// One user (AUTH_GET_USER); `None` if the broker has no such user.
    pub async fn get_user(&self, broker_addr: &str, username: &str) -> Result<Option<UserInfo>> {
        let req = request(RequestCode::AuthGetUser, &[("username", Some(username))]);
        self.fetch_optional(broker_addr, req, "user").await
    }

    /// The users whose names contain `filter` (all without one) (AUTH_LIST_USER).
    pub async fn list_users(
        &self,
        broker_addr: &str,
        filter: Option<&str>,
    ) -> Result<Vec<UserInfo>> {
        let req = request(RequestCode::AuthListUser, &[("filter", filter)]);
        Ok(self
            .fetch_optional(broker_addr, req, "users")
            .await?
            .unwrap_or_default())
    }

    /// Creates a subject's ACL (AUTH_CREATE_ACL); policies merge with what it has.
    pub async fn create_acl(&self, broker_addr: &str, acl: &AclInfo) -> Result<()> {
        self.write_acl(broker_addr, RequestCode::AuthCreateAcl, acl)
            .await
    }

    /// Updates a subject's ACL (AUTH_UPDATE_ACL): entries for the same resource are replaced.
    pub async fn update_acl(&self, broker_addr: &str, acl: &AclInfo) -> Result<()> {
        self.write_acl(broker_addr, RequestCode::AuthUpdateAcl, acl)
            .await
    }

    async fn write_acl(&self, addr: &str, code: RequestCode, acl: &AclInfo) -> Result<()> {
        let subject = acl
            .subject
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ClientError::InvalidArgument("an ACL needs a subject".into()))?;
        let req = request(code, &[("subject", Some(subject))]).with_body(json(acl, "acl")?);
        self.invoke_unit(addr, req).await
    }

    /// Deletes a subject's ACL (AUTH_DELETE_ACL), or only its entries for `resource` (of
    /// `policy_type`, Custom when absent).
    pub async fn delete_acl(
        &self,
        broker_addr: &str,
        subject: &str,
        policy_type: Option<&str>,
        resource: Option<&str>,
    ) -> Result<()> {
        let req = request(
            RequestCode::AuthDeleteAcl,
            &[
                ("subject", Some(subject)),
                ("policyType", policy_type),
                ("resource", resource),
            ],
        );
        self.invoke_unit(broker_addr, req).await
    }

    /// A subject's ACL (AUTH_GET_ACL); `None` if it has none.
    pub async fn get_acl(&self, broker_addr: &str, subject: &str) -> Result<Option<AclInfo>> {
        let req = request(RequestCode::AuthGetAcl, &[("subject", Some(subject))]);
        self.fetch_optional(broker_addr, req, "acl").await
    }

    /// The ACLs whose subject contains `subject_filter` and that have an entry whose resource
    /// contains `resource_filter` (AUTH_LIST_ACL).
    pub async fn list_acls(
        &self,
        broker_addr: &str,
        subject_filter: Option<&str>,
        resource_filter: Option<&str>,
    ) -> Result<Vec<AclInfo>> {
        let req = request(
            RequestCode::AuthListAcl,
            &[
                ("subjectFilter", subject_filter),
                ("resourceFilter", resource_filter),
            ],
        );
        Ok(self
            .fetch_optional(broker_addr, req, "acls")
            .await?
            .unwrap_or_default())
    }
}
