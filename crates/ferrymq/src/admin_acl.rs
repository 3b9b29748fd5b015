//! `ferrymq admin createUser … listAcl`: mqadmin's ACL 2.0 commands, same names and flags.
//! Writes go to every broker a target names (masters and slaves of a cluster: each keeps its
//! own users and ACLs); reads ask the masters and merge what they answer.

use anyhow::{bail, Result};
use clap::Subcommand;
use ferrymq_client::admin::{AclInfo, PolicyEntryInfo, PolicyInfo, UserInfo};
use serde_json::json;

use super::fmt::Table;
use super::{ctx_err, pretty, Ctx, Target};

/// The ACL 2.0 subcommands (flattened into `ferrymq admin`).
#[derive(Debug, Subcommand)]
pub(super) enum AclSub {
    /// Create a user (ACL 2.0).
    #[command(name = "createUser")]
    CreateUser {
        #[command(flatten)]
        target: Target,
        /// User name.
        #[arg(short = 'u', long = "username")]
        username: String,
        /// Password (the secret key of the user's signatures).
        #[arg(short = 'p', long = "password")]
        password: String,
        /// Super or Normal (default Normal).
        #[arg(short = 't', long = "userType")]
        user_type: Option<String>,
    },
    /// Change a user's password, type or status (ACL 2.0).
    #[command(name = "updateUser")]
    UpdateUser {
        #[command(flatten)]
        target: Target,
        /// User name.
        #[arg(short = 'u', long = "username")]
        username: String,
        /// New password.
        #[arg(short = 'p', long = "password")]
        password: Option<String>,
        /// New type: Super or Normal.
        #[arg(short = 't', long = "userType")]
        user_type: Option<String>,
        /// New status: enable or disable.
        #[arg(short = 's', long = "userStatus")]
        user_status: Option<String>,
    },
    /// Delete a user and its ACL (ACL 2.0).
    #[command(name = "deleteUser")]
    DeleteUser {
        #[command(flatten)]
        target: Target,
        /// User name.
        #[arg(short = 'u', long = "username")]
        username: String,
    },
    /// Print one user (ACL 2.0).
    #[command(name = "getUser")]
    GetUser {
        #[command(flatten)]
        target: Target,
        /// User name.
        #[arg(short = 'u', long = "username")]
        username: String,
    },
    /// List users, optionally those whose name contains a filter (ACL 2.0).
    #[command(name = "listUser")]
    ListUser {
        #[command(flatten)]
        target: Target,
        /// Part of the user name.
        #[arg(short = 'f', long = "filter")]
        filter: Option<String>,
    },
    /// Grant or deny actions on resources to a subject (ACL 2.0).
    #[command(name = "createAcl")]
    CreateAcl {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        acl: AclArgs,
    },
    /// Replace a subject's entries for the given resources (ACL 2.0).
    #[command(name = "updateAcl")]
    UpdateAcl {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        acl: AclArgs,
    },
    /// Delete a subject's ACL, or only its entries for one resource (ACL 2.0).
    #[command(name = "deleteAcl")]
    DeleteAcl {
        #[command(flatten)]
        target: Target,
        /// Subject, e.g. `User:alice`.
        #[arg(short = 's', long = "subject")]
        subject: String,
        /// Resource, e.g. `Topic:orders` (all of the subject's entries without one).
        #[arg(short = 'r', long = "resources")]
        resource: Option<String>,
    },
    /// Print a subject's ACL (ACL 2.0).
    #[command(name = "getAcl")]
    GetAcl {
        #[command(flatten)]
        target: Target,
        /// Subject, e.g. `User:alice`.
        #[arg(short = 's', long = "subject")]
        subject: String,
    },
    /// List ACLs, optionally filtered by subject and resource (ACL 2.0).
    #[command(name = "listAcl")]
    ListAcl {
        #[command(flatten)]
        target: Target,
        /// Part of the subject.
        #[arg(short = 's', long = "subject")]
        subject: Option<String>,
        /// Part of the resource.
        #[arg(short = 'r', long = "resource")]
        resource: Option<String>,
    },
}

/// One Custom policy for a subject: the same actions, decision and sources for each resource.
#[derive(Debug, clap::Args)]
pub(super) struct AclArgs {
    /// Subject, e.g. `User:alice`.
    #[arg(short = 's', long = "subject")]
    subject: String,
    /// Resources, comma separated: `Topic:orders,Group:billing,Topic:app-*,*`.
    #[arg(short = 'r', long = "resources", value_delimiter = ',')]
    resources: Vec<String>,
    /// Actions, comma separated: Pub, Sub, Create, Update, Delete, Get, List, All.
    #[arg(short = 'a', long = "actions", value_delimiter = ',')]
    actions: Vec<String>,
    /// Allow or Deny.
    #[arg(short = 'd', long = "decision")]
    decision: String,
    /// Source IPs or CIDR blocks, comma separated (any source without).
    #[arg(short = 'i', long = "sourceIp", value_delimiter = ',')]
    source_ips: Vec<String>,
}

impl AclArgs {
    fn info(self) -> AclInfo {
        let trimmed = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let actions = trimmed(self.actions);
        let source_ips = trimmed(self.source_ips);
        AclInfo {
            subject: Some(self.subject.trim().to_owned()),
            policies: vec![PolicyInfo {
                policy_type: Some("Custom".to_owned()),
                entries: trimmed(self.resources)
                    .into_iter()
                    .map(|resource| PolicyEntryInfo {
                        resource: Some(resource),
                        actions: actions.clone(),
                        source_ips: source_ips.clone(),
                        decision: Some(self.decision.trim().to_owned()),
                    })
                    .collect(),
            }],
        }
    }
}

impl Ctx {
    pub(super) async fn exec_acl(&self, cmd: AclSub) -> Result<String> {
        match cmd {
            AclSub::CreateUser {
                target,
                username,
                password,
                user_type,
            } => {
                let user = UserInfo {
                    username: Some(username.trim().to_owned()),
                    password: Some(password),
                    user_type: Some(user_type.unwrap_or_else(|| "Normal".to_owned())),
                    user_status: None,
                };
                self.write_each(&target, "create user", async |addr| {
                    self.admin.create_user(addr, &user).await
                })
                .await
            }
            AclSub::UpdateUser {
                target,
                username,
                password,
                user_type,
                user_status,
            } => {
                if password.is_none() && user_type.is_none() && user_status.is_none() {
                    bail!("updateUser needs at least one of -p/--password, -t/--userType, -s/--userStatus");
                }
                let user = UserInfo {
                    username: Some(username.trim().to_owned()),
                    password,
                    user_type,
                    user_status,
                };
                self.write_each(&target, "update user", async |addr| {
                    self.admin.update_user(addr, &user).await
                })
                .await
            }
            AclSub::DeleteUser { target, username } => {
                self.write_each(&target, "delete user", async |addr| {
                    self.admin.delete_user(addr, username.trim()).await
                })
                .await
            }
            AclSub::GetUser { target, username } => {
                let users = self
                    .read_masters(&target, async |addr| {
                        self.admin.get_user(addr, username.trim()).await
                    })
                    .await?;
                if users.is_empty() {
                    bail!("user [{}] not found", username.trim());
                }
                self.users(users)
            }
            AclSub::ListUser { target, filter } => {
                let users = self
                    .read_masters(&target, async |addr| {
                        self.admin
                            .list_users(addr, filter.as_deref().map(str::trim))
                            .await
                    })
                    .await?;
                self.users(users)
            }
            AclSub::CreateAcl { target, acl } => {
                let acl = acl.info();
                self.write_each(&target, "create acl", async |addr| {
                    self.admin.create_acl(addr, &acl).await
                })
                .await
            }
            AclSub::UpdateAcl { target, acl } => {
                let acl = acl.info();
                self.write_each(&target, "update acl", async |addr| {
                    self.admin.update_acl(addr, &acl).await
                })
                .await
            }
            AclSub::DeleteAcl {
                target,
                subject,
                resource,
            } => {
                self.write_each(&target, "delete acl", async |addr| {
                    self.admin
                        .delete_acl(
                            addr,
                            subject.trim(),
                            None,
                            resource.as_deref().map(str::trim),
                        )
                        .await
                })
                .await
            }
            AclSub::GetAcl { target, subject } => {
                let acls = self
                    .read_masters(&target, async |addr| {
                        self.admin.get_acl(addr, subject.trim()).await
                    })
                    .await?;
                if acls.is_empty() {
                    bail!("acl of [{}] not found", subject.trim());
                }
                self.acls(acls)
            }
            AclSub::ListAcl {
                target,
                subject,
                resource,
            } => {
                let acls = self
                    .read_masters(&target, async |addr| {
                        self.admin
                            .list_acls(
                                addr,
                                subject.as_deref().map(str::trim),
                                resource.as_deref().map(str::trim),
                            )
                            .await
                    })
                    .await?;
                self.acls(acls)
            }
        }
    }

    /// mqadmin's "<what> to <addr> success." lines, or JSON.
    /// Sends one write to every broker the target names (each keeps its own copy).
    async fn write_each(
        &self,
        target: &Target,
        what: &str,
        write: impl AsyncFn(&str) -> ferrymq_client::Result<()>,
    ) -> Result<String> {
        let brokers = self.target_members(target).await?;
        for addr in &brokers {
            write(addr)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
        }
        Ok(self.done(what, &brokers))
    }

    /// Asks every master the target names and gathers the answers.
    async fn read_masters<T, I: IntoIterator<Item = T>>(
        &self,
        target: &Target,
        read: impl AsyncFn(&str) -> ferrymq_client::Result<I>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        for addr in self.target_masters(target).await? {
            let found = read(&addr)
                .await
                .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
            all.extend(found);
        }
        Ok(all)
    }

    fn done(&self, what: &str, brokers: &[String]) -> String {
        if self.json {
            return pretty(&json!({ "brokers": brokers }));
        }
        brokers
            .iter()
            .map(|addr| format!("{what} to {addr} success.\n"))
            .collect()
    }

    /// Users, once each (a cluster's masters answer the same ones).
    fn users(&self, mut users: Vec<UserInfo>) -> Result<String> {
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users.dedup();
        if self.json {
            return Ok(pretty(&serde_json::to_value(&users)?));
        }
        let mut table = Table::new(&["#UserName", "#Password", "#UserType", "#UserStatus"]);
        for u in users {
            table.row(vec![
                u.username.unwrap_or_default(),
                u.password.unwrap_or_default(),
                u.user_type.unwrap_or_default(),
                u.user_status.unwrap_or_default(),
            ]);
        }
        Ok(table.render())
    }

    /// ACLs, one row per policy entry.
    fn acls(&self, mut acls: Vec<AclInfo>) -> Result<String> {
        acls.sort_by(|a, b| a.subject.cmp(&b.subject));
        acls.dedup();
        if self.json {
            return Ok(pretty(&serde_json::to_value(&acls)?));
        }
        let mut table = Table::new(&[
            "#Subject",
            "#PolicyType",
            "#Resource",
            "#Actions",
            "#SourceIp",
            "#Decision",
        ]);
        for acl in acls {
            let subject = acl.subject.unwrap_or_default();
            for policy in acl.policies {
                let policy_type = policy.policy_type.unwrap_or_default();
                for entry in policy.entries {
                    table.row(vec![
                        subject.clone(),
                        policy_type.clone(),
                        entry.resource.unwrap_or_default(),
                        entry.actions.join(","),
                        entry.source_ips.join(","),
                        entry.decision.unwrap_or_default(),
                    ]);
                }
            }
        }
        Ok(table.render())
    }
}
