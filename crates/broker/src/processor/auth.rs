//! ACL 2.0 administration (AUTH_CREATE_USER .. AUTH_LIST_ACL, 3001–3010): users and ACLs in
//! the broker's auth.json. Writes fsync the file, so they run on a blocking thread.

use std::sync::Arc;

use ferrymq_auth::{AclInfo, AuthAdminError, AuthStore, UserInfo};
use ferrymq_protocol::acl::ACCESS_KEY;
use ferrymq_protocol::{RemotingCommand, ResponseCode};

use super::{err, json_body, json_reply, ok};
use crate::state::BrokerState;

fn field<'a>(req: &'a RemotingCommand, key: &str) -> Option<&'a str> {
    req.ext_fields.get(key).filter(|v| !v.trim().is_empty())
}

fn answer(req: &RemotingCommand, result: Result<(), AuthAdminError>) -> RemotingCommand {
    match result {
        Ok(()) => ok(req),
        Err(e) => refusal(req, e),
    }
}

fn refusal(req: &RemotingCommand, e: AuthAdminError) -> RemotingCommand {
    let code = match e {
        AuthAdminError::InvalidParameter(_) => ResponseCode::InvalidParameter,
        AuthAdminError::Refused(_) => ResponseCode::NoPermission,
        AuthAdminError::System(_) => ResponseCode::SystemError,
    };
    err(req, code, e.to_string())
}

/// Runs a store write off the async workers.
async fn write(
    s: &BrokerState,
    change: impl FnOnce(&AuthStore) -> Result<(), AuthAdminError> + Send + 'static,
) -> Result<(), AuthAdminError> {
    let store: Arc<AuthStore> = s.auth.clone();
    tokio::task::spawn_blocking(move || change(&store))
        .await
        .unwrap_or_else(|e| {
            Err(AuthAdminError::System(format!(
                "auth store task failed: {e}"
            )))
        })
}

fn caller(req: &RemotingCommand) -> Option<String> {
    field(req, ACCESS_KEY).map(str::to_owned)
}

pub(super) async fn create_user(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    upsert_user(s, req, true).await
}

pub(super) async fn update_user(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    upsert_user(s, req, false).await
}

async fn upsert_user(s: &BrokerState, req: &RemotingCommand, create: bool) -> RemotingCommand {
    let info: UserInfo = if req.body.is_empty() {
        UserInfo::default()
    } else {
        match json_body(req) {
            Ok(info) => info,
            Err(reply) => return reply,
        }
    };
    // The header names the user whatever the body says.
    let username = field(req, "username").unwrap_or_default().to_owned();
    let caller = caller(req);
    let result = write(s, move |store| {
        if create {
            store.create_user(&username, info, caller.as_deref())
        } else {
            store.update_user(&username, info, caller.as_deref())
        }
    })
    .await;
    answer(req, result)
}

pub(super) async fn delete_user(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let username = field(req, "username").unwrap_or_default().to_owned();
    let caller = caller(req);
    let result = write(s, move |store| {
        store.delete_user(&username, caller.as_deref())
    })
    .await;
    answer(req, result)
}

pub(super) fn get_user(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    match s.auth.get_user(field(req, "username").unwrap_or_default()) {
        Ok(Some(user)) => json_reply(req, &user),
        Ok(None) => ok(req),
        Err(e) => refusal(req, e),
    }
}

pub(super) fn list_users(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let users = s.auth.list_users(field(req, "filter"));
    if users.is_empty() {
        ok(req)
    } else {
        json_reply(req, &users)
    }
}

pub(super) async fn upsert_acl(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let acl: AclInfo = match json_body(req) {
        Ok(acl) => acl,
        Err(reply) => return reply,
    };
    let subject = field(req, "subject").unwrap_or_default().to_owned();
    let result = write(s, move |store| store.upsert_acl(&subject, acl)).await;
    answer(req, result)
}

pub(super) async fn delete_acl(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let subject = field(req, "subject").unwrap_or_default().to_owned();
    let policy = field(req, "policyType").map(str::to_owned);
    let resource = field(req, "resource").map(str::to_owned);
    let result = write(s, move |store| {
        store.delete_acl(&subject, policy.as_deref(), resource.as_deref())
    })
    .await;
    answer(req, result)
}

pub(super) fn get_acl(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    match s.auth.get_acl(field(req, "subject").unwrap_or_default()) {
        Ok(Some(acl)) => json_reply(req, &acl),
        Ok(None) => ok(req),
        Err(e) => refusal(req, e),
    }
}

pub(super) fn list_acls(s: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let acls = s
        .auth
        .list_acls(field(req, "subjectFilter"), field(req, "resourceFilter"));
    if acls.is_empty() {
        ok(req)
    } else {
        json_reply(req, &acls)
    }
}
