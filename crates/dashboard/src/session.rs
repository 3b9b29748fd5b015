//! Who is asking: sessions of signed-in visitors when ACL is on, one shared admin client when
//! it is off.
//!
//! The dashboard keeps no accounts of its own. A visitor signs in with credentials the
//! brokers know (an ACL 1.0 access key/secret key, or an ACL 2.0 username/password, which
//! RocketMQ's remoting clients send the same way); the sign-in is accepted when a broker
//! accepts a request signed with them. The session then owns an admin client that signs
//! with those credentials, so the brokers' own ACL decides every later call. Sessions are
//! an unguessable cookie (`HttpOnly`, `SameSite=Strict`) and end after 30 idle minutes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use ferrymq_client::{Admin, ClientError, ClientOptions};
use ferrymq_protocol::acl::Credentials;
use ferrymq_protocol::ResponseCode;
use parking_lot::Mutex;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use crate::error::DashboardError;

/// The session cookie's name.
pub const COOKIE: &str = "ferrymq_session";
/// A session unused this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);
/// At most this many sessions at once; the least recently used goes first.
const MAX_SESSIONS: usize = 64;
/// A refused sign-in answers after this long, to slow down guessing.
const REFUSAL_DELAY: Duration = Duration::from_millis(300);

/// Whether visitors sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// ACL off: everyone uses one admin client (with the configured credentials, if any).
    Open,
    /// ACL on: visitors sign in with ACL credentials the brokers accept.
    Required,
}

struct Session {
    admin: Admin,
    user: String,
    last_used: Instant,
}

/// The sessions (or the one open admin client).
pub(crate) struct Sessions {
    mode: LoginMode,
    template: ClientOptions,
    open: Option<Admin>,
    signed_in: Mutex<HashMap<String, Session>>,
}

/// The admin client a request runs on, and who it belongs to.
pub(crate) struct Caller {
    pub admin: Admin,
    pub user: Option<String>,
}

impl Sessions {
    pub async fn new(mode: LoginMode, template: ClientOptions) -> Result<Sessions, DashboardError> {
        let open = match mode {
            LoginMode::Open => Some(Admin::builder().options(template.clone()).start().await?),
            LoginMode::Required => None,
        };
        Ok(Sessions {
            mode,
            template,
            open,
            signed_in: Mutex::new(HashMap::new()),
        })
    }

    pub fn mode(&self) -> LoginMode {
        self.mode
    }

    /// The caller behind a request's cookie; without sign-in required, the shared client.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, DashboardError> {
        if let Some(admin) = &self.open {
            return Ok(Caller {
                admin: admin.clone(),
                user: None,
            });
        }
        let token = session_cookie(headers)
            .ok_or_else(|| DashboardError::Unauthorized("sign in first".into()))?;
        let mut sessions = self.signed_in.lock();
        let session = sessions.get_mut(token).ok_or_else(|| {
            DashboardError::Unauthorized("the session has ended; sign in again".into())
        })?;
        session.last_used = Instant::now();
        Ok(Caller {
            admin: session.admin.clone(),
            user: Some(session.user.clone()),
        })
    }

    /// Checks the credentials against a broker and opens a session; returns its token.
    pub async fn sign_in(
        &self,
        access_key: &str,
        secret_key: &str,
    ) -> Result<String, DashboardError> {
        if self.mode == LoginMode::Open {
            return Err(DashboardError::BadRequest(
                "sign-in is not needed: ACL is off".into(),
            ));
        }
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(DashboardError::BadRequest(
                "access key and secret key are both required".into(),
            ));
        }
        let options = ClientOptions {
            credentials: Some(Credentials::new(access_key, secret_key)),
            ..self.template.clone()
        };
        let admin = Admin::builder().options(options).start().await?;
        if let Err(e) = check_credentials(&admin).await {
            admin.shutdown().await;
            if matches!(e, DashboardError::Unauthorized(_)) {
                tokio::time::sleep(REFUSAL_DELAY).await;
            }
            return Err(e);
        }
        let token = new_token();
        let evicted = {
            let mut sessions = self.signed_in.lock();
            let evicted = if sessions.len() >= MAX_SESSIONS {
                let oldest = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone());
                oldest.and_then(|k| sessions.remove(&k))
            } else {
                None
            };
            sessions.insert(
                token.clone(),
                Session {
                    admin,
                    user: access_key.to_owned(),
                    last_used: Instant::now(),
                },
            );
            evicted
        };
        if let Some(s) = evicted {
            s.admin.shutdown().await;
        }
        tracing::info!(user = access_key, "dashboard sign-in");
        Ok(token)
    }

    /// Ends the request's session, if it has one.
    pub async fn sign_out(&self, headers: &HeaderMap) {
        let removed = session_cookie(headers).and_then(|t| self.signed_in.lock().remove(t));
        if let Some(s) = removed {
            s.admin.shutdown().await;
        }
    }

    /// Closes idle sessions once a minute until `stop`.
    pub async fn sweep_loop(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            let idle: Vec<Session> = {
                let mut sessions = self.signed_in.lock();
                let expired: Vec<String> = sessions
                    .iter()
                    .filter(|(_, s)| s.last_used.elapsed() > IDLE_LIMIT)
                    .map(|(k, _)| k.clone())
                    .collect();
                expired.iter().filter_map(|k| sessions.remove(k)).collect()
            };
            for s in idle {
                s.admin.shutdown().await;
            }
        }
    }

    pub async fn shutdown(&self) {
        let all: Vec<Session> = self.signed_in.lock().drain().map(|(_, s)| s).collect();
        for s in all {
            s.admin.shutdown().await;
        }
        if let Some(a) = &self.open {
            a.shutdown().await;
        }
    }
}

/// Sends one signed request to a master broker: a refusal means the brokers do not accept
/// these credentials.
async fn check_credentials(admin: &Admin) -> Result<(), DashboardError> {
    let clusters = admin.cluster_info().await?;
    let Some(addr) = clusters
        .broker_addr_table
        .values()
        .find_map(|b| b.broker_addrs.get(&0).cloned())
    else {
        return Err(DashboardError::NotFound(
            "no master broker is registered to check the credentials with".into(),
        ));
    };
    match admin.broker_runtime_info(&addr).await {
        Ok(_) => Ok(()),
        Err(ClientError::Broker {
            code: ResponseCode::NoPermission,
            remark,
            ..
        }) => Err(DashboardError::Unauthorized(format!(
            "sign-in refused by the broker: {remark}"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// 128 random bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Set-Cookie` value that stores `token` (or, with `None`, clears the cookie).
pub(crate) fn set_cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict"),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferrymq_session=abc ; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ferrymq_sessionx=1"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token());
    }
}
