//! `ferrymq admin getControllerMetaData | getSyncStateSet | getBrokerEpoch | electMaster`:
//! mqadmin's controller-mode commands, same names and flags (`-a` controller addresses,
//! `-b` broker name, `-c` cluster, `-i` broker id).

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;

use super::fmt::Table;
use super::{ctx_err, pretty, Ctx};

/// The controller-mode subcommands (flattened into `ferrymq admin`).
#[derive(Debug, Subcommand)]
pub(super) enum ControllerSub {
    /// Print a controller's Raft group, its leader and peers (controller mode).
    #[command(name = "getControllerMetaData")]
    GetControllerMetaData {
        /// Controller address(es), `host:port;host:port`: each is asked.
        #[arg(short = 'a', long = "controllerAddress")]
        controller_address: String,
    },
    /// Print the master, epochs and in-sync replicas of broker groups (controller mode).
    #[command(name = "getSyncStateSet")]
    GetSyncStateSet {
        /// Controller address(es), `host:port;host:port`.
        #[arg(short = 'a', long = "controllerAddress")]
        controller_address: String,
        /// Broker name(s), comma-separated.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
        /// Every broker name of this cluster (from the name servers).
        #[arg(short = 'c', long = "clusterName")]
        cluster_name: Option<String>,
    },
    /// Print the master epochs of controller-mode brokers.
    #[command(name = "getBrokerEpoch")]
    GetBrokerEpoch {
        /// Broker name(s), comma-separated.
        #[arg(short = 'b', long = "brokerName")]
        broker_name: Option<String>,
        /// Every broker name of this cluster.
        #[arg(short = 'c', long = "clusterName")]
        cluster_name: Option<String>,
    },
    /// Ask the controllers to elect a master: a given broker id, or their own choice.
    #[command(name = "electMaster")]
    ElectMaster {
        /// Controller address(es), `host:port;host:port`.
        #[arg(short = 'a', long = "controllerAddress")]
        controller_address: String,
        /// Cluster name.
        #[arg(short = 'c', long = "clusterName")]
        cluster_name: String,
        /// Broker name (the broker group).
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        /// Controller-assigned id of the broker to make master.
        #[arg(short = 'i', long = "brokerId")]
        broker_id: Option<u64>,
    },
}

impl Ctx {
    /// Broker names from `-b a,b` or every broker name of `-c cluster`.
    async fn broker_names(
        &self,
        names: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Vec<String>> {
        if let Some(names) = names {
            let list: Vec<String> = names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if list.is_empty() {
                bail!("-b names no broker");
            }
            return Ok(list);
        }
        let Some(cluster) = cluster else {
            bail!("give -b brokerName or -c clusterName");
        };
        let info = self
            .admin
            .cluster_info()
            .await
            .map_err(|e| ctx_err("cluster info", &e))?;
        match info.cluster_addr_table.get(cluster) {
            Some(names) => Ok(names.iter().cloned().collect()),
            None => bail!("cluster {cluster} is not known to the name servers"),
        }
    }

    pub(super) async fn exec_controller(&self, cmd: ControllerSub) -> Result<String> {
        match cmd {
            ControllerSub::GetControllerMetaData { controller_address } => {
                let mut rows = Vec::new();
                for addr in controller_address
                    .split(';')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                {
                    let m = self
                        .admin
                        .controller_metadata(addr)
                        .await
                        .map_err(|e| ctx_err(format!("controller {addr}"), &e))?;
                    rows.push((addr.to_owned(), m));
                }
                if self.json {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|(addr, m)| {
                            json!({"controller": addr, "group": m.group, "controllerLeaderId": m.leader_id,
                                "controllerLeaderAddress": m.leader_address, "isLeader": m.is_leader, "peers": m.peers})
                        })
                        .collect();
                    return Ok(pretty(&json!(v)));
                }
                let mut out = String::new();
                for (addr, m) in rows {
                    out.push_str(&format!(
                        "#Controller         : {addr}\n#ControllerGroup    : {}\n#ControllerLeaderId : {}\n#ControllerLeaderAddress : {}\n#IsLeader           : {}\n#Peers              : {}\n\n",
                        m.group.unwrap_or_default(),
                        m.leader_id.unwrap_or_default(),
                        m.leader_address.unwrap_or_default(),
                        m.is_leader,
                        m.peers.unwrap_or_default()
                    ));
                }
                Ok(out)
            }
            ControllerSub::GetSyncStateSet {
                controller_address,
                broker_name,
                cluster_name,
            } => {
                let names = self
                    .broker_names(broker_name.as_deref(), cluster_name.as_deref())
                    .await?;
                let info = self
                    .admin
                    .sync_state_set(&controller_address, &names)
                    .await
                    .map_err(|e| ctx_err("sync state set", &e))?;
                if self.json {
                    return Ok(pretty(&json!(info)));
                }
                let mut t = Table::new(&[
                    "#BrokerName",
                    "#MasterId",
                    "#MasterAddr",
                    "#MasterEpoch",
                    "#SyncStateSetEpoch",
                    "#BrokerId",
                    "#BrokerAddr",
                    "#InSync",
                    "#Alive",
                ]);
                for (name, set) in &info.replicas_info_table {
                    let replicas = set
                        .in_sync_replicas
                        .iter()
                        .map(|r| (r, true))
                        .chain(set.not_in_sync_replicas.iter().map(|r| (r, false)));
                    for (r, in_sync) in replicas {
                        t.row(vec![
                            name.clone(),
                            set.master_broker_id.map_or("-".into(), |m| m.to_string()),
                            set.master_address.clone().unwrap_or_else(|| "-".into()),
                            set.master_epoch.to_string(),
                            set.sync_state_set_epoch.to_string(),
                            r.broker_id.to_string(),
                            r.broker_address.clone(),
                            in_sync.to_string(),
                            r.alive.to_string(),
                        ]);
                    }
                }
                Ok(t.render())
            }
            ControllerSub::GetBrokerEpoch {
                broker_name,
                cluster_name,
            } => {
                let names = self
                    .broker_names(broker_name.as_deref(), cluster_name.as_deref())
                    .await?;
                let info = self
                    .admin
                    .cluster_info()
                    .await
                    .map_err(|e| ctx_err("cluster info", &e))?;
                let mut all = Vec::new();
                for name in &names {
                    let Some(addr) = info
                        .broker_addr_table
                        .get(name)
                        .and_then(|b| b.broker_addrs.get(&0))
                    else {
                        bail!("broker {name} has no master registered with the name servers");
                    };
                    let cache = self
                        .admin
                        .broker_epoch(addr)
                        .await
                        .map_err(|e| ctx_err(format!("broker {addr}"), &e))?;
                    all.push((addr.clone(), cache));
                }
                if self.json {
                    let v: Vec<_> = all.iter().map(|(_, c)| json!(c)).collect();
                    return Ok(pretty(&json!(v)));
                }
                let mut t = Table::new(&[
                    "#ClusterName",
                    "#BrokerName",
                    "#BrokerAddr",
                    "#BrokerId",
                    "#Epoch",
                    "#StartOffset",
                    "#EndOffset",
                ]);
                for (addr, c) in &all {
                    for e in &c.epoch_list {
                        t.row(vec![
                            c.cluster_name.clone(),
                            c.broker_name.clone(),
                            addr.clone(),
                            c.broker_id.to_string(),
                            e.epoch.to_string(),
                            e.start_offset.to_string(),
                            e.end_offset.to_string(),
                        ]);
                    }
                }
                Ok(t.render())
            }
            ControllerSub::ElectMaster {
                controller_address,
                cluster_name,
                broker_name,
                broker_id,
            } => {
                let elected = self
                    .admin
                    .elect_master(&controller_address, &cluster_name, &broker_name, broker_id)
                    .await
                    .map_err(|e| ctx_err(format!("elect master of {broker_name}"), &e))?;
                if self.json {
                    return Ok(pretty(&json!({
                        "brokerName": broker_name,
                        "masterBrokerId": elected.master_broker_id,
                        "masterAddress": elected.master_address,
                        "masterEpoch": elected.master_epoch,
                        "syncStateSetEpoch": elected.sync_state_set_epoch,
                    })));
                }
                Ok(format!(
                    "elect master of {broker_name}: broker {} ({}) is master of epoch {}\n",
                    elected
                        .master_broker_id
                        .map_or("-".into(), |m| m.to_string()),
                    elected.master_address.unwrap_or_default(),
                    elected.master_epoch.unwrap_or_default()
                ))
            }
        }
    }
}
