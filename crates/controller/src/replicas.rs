//! The replicated controller metadata: per broker set (one `brokerName`), its members, the
//! elected master with its epoch, and the SyncStateSet with its own epoch. RocketMQ calls this
//! the replicas info; it is the Raft state machine's data and changes only by applying a
//! [`Command`], so every controller computes the same state from the same log.
//!
//! Decisions that need live information (is a broker's heartbeat fresh? which replica has the
//! most data?) are taken by the leader *before* proposing, in [`choose_master`]; applying a
//! command only checks that it still fits the state it was decided on (the epochs it names),
//! which fences decisions raced by a newer one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Why a command was refused; each maps to a RocketMQ controller response code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("broker set {0} is unknown to the controller")]
    UnknownBrokerSet(String),
    #[error("broker id {id} of {broker_name} is taken or not the next free one (next: {next})")]
    BrokerIdInvalid {
        broker_name: String,
        id: u64,
        next: u64,
    },
    #[error("broker {id} of {broker_name} has not applied for an id")]
    NeedToBeRegistered { broker_name: String, id: u64 },
    #[error("stale epoch: {what} is {current}, request names {given}")]
    FencedEpoch {
        what: String,
        current: i32,
        given: i32,
    },
    #[error("broker {given} is not the master of {broker_name} (master: {master:?})")]
    NotMaster {
        broker_name: String,
        given: u64,
        master: Option<u64>,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no broker of {0} can be elected master")]
    NoCandidate(String),
}

/// One member of a broker set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Remoting address of the broker, as last registered.
    pub address: String,
    /// What the broker presented when it applied for its id (`address;startTime`), so the
    /// same broker re-applying is recognised.
    pub register_check_code: String,
}

/// One broker set: a master and its slaves sharing a `brokerName`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerSet {
    pub cluster_name: String,
    pub broker_name: String,
    pub members: BTreeMap<u64, Member>,
    pub master: Option<u64>,
    pub master_epoch: i32,
    pub sync_state_set: BTreeSet<u64>,
    pub sync_state_set_epoch: i32,
}

impl BrokerSet {
    fn new(cluster_name: &str, broker_name: &str) -> BrokerSet {
        BrokerSet {
            cluster_name: cluster_name.to_owned(),
            broker_name: broker_name.to_owned(),
            members: BTreeMap::new(),
            master: None,
            master_epoch: 0,
            sync_state_set: BTreeSet::new(),
            sync_state_set_epoch: 0,
        }
    }

    /// Ids start at 1: 0 is what the master registers under on the NameServer.
    pub fn next_broker_id(&self) -> u64 {
        self.members.keys().next_back().map_or(1, |m| m + 1)
    }

    pub fn master_address(&self) -> Option<&str> {
        self.master
            .and_then(|m| self.members.get(&m))
            .map(|m| m.address.as_str())
    }

    fn set_master(&mut self, master: Option<u64>) {
        self.master = master;
        self.master_epoch += 1;
        if let Some(m) = master {
            self.sync_state_set = BTreeSet::from([m]);
            self.sync_state_set_epoch += 1;
        }
    }
}

/// A change to the replicas info; the Raft log's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker takes an id (the next free one, or the one it already holds).
    ApplyBrokerId {
        cluster_name: String,
        broker_name: String,
        broker_id: u64,
        register_check_code: String,
    },
    /// A broker with an id tells its current address. A set without a master elects this
    /// broker when it may be one (`elect` was decided by the leader).
    RegisterBroker {
        broker_name: String,
        broker_id: u64,
        address: String,
        elect: bool,
    },
    /// The leader's election result for a set; `None` records that no master is available.
    ElectMaster {
        broker_name: String,
        new_master: Option<u64>,
        /// The master epoch the decision was made on.
        expected_master_epoch: i32,
    },
    /// The master changes its SyncStateSet.
    AlterSyncStateSet {
        broker_name: String,
        master_id: u64,
        master_epoch: i32,
        sync_state_set_epoch: i32,
        new_set: BTreeSet<u64>,
    },
    /// Forget brokers (all of a set when `broker_ids` is empty).
    CleanBrokerData {
        broker_name: String,
        broker_ids: Vec<u64>,
    },
    /// A controller that became leader records its remoting address, so every controller
    /// can tell brokers and tools where the leader is served.
    AnnounceController { id: u64, address: String },
}

/// The outcome of applying a command: the set as it is afterwards, or why not.
pub type Outcome = Result<Option<BrokerSet>, Refusal>;

/// Every broker set the controllers know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    pub sets: BTreeMap<String, BrokerSet>,
    /// Remoting address of each controller that has been leader.
    #[serde(default)]
    pub controllers: BTreeMap<u64, String>,
}

impl Replicas {
    pub fn get(&self, broker_name: &str) -> Option<&BrokerSet> {
        self.sets.get(broker_name)
    }

    fn set_mut(&mut self, broker_name: &str) -> Result<&mut BrokerSet, Refusal> {
        self.sets
            .get_mut(broker_name)
            .ok_or_else(|| Refusal::UnknownBrokerSet(broker_name.to_owned()))
    }

    /// Applies one command. Deterministic: it reads nothing but `self` and the command.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::ApplyBrokerId {
                cluster_name,
                broker_name,
                broker_id,
                register_check_code,
            } => {
                let set = self
                    .sets
                    .entry(broker_name.clone())
                    .or_insert_with(|| BrokerSet::new(cluster_name, broker_name));
                match set.members.get(broker_id) {
                    Some(m) if m.register_check_code == *register_check_code => {}
                    None if *broker_id == set.next_broker_id() => {
                        let address = register_check_code
                            .split(';')
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        set.members.insert(
                            *broker_id,
                            Member {
                                address,
                                register_check_code: register_check_code.clone(),
                            },
                        );
                    }
                    _ => {
                        return Err(Refusal::BrokerIdInvalid {
                            broker_name: broker_name.clone(),
                            id: *broker_id,
                            next: set.next_broker_id(),
                        })
                    }
                }
                Ok(Some(set.clone()))
            }
            Command::RegisterBroker {
                broker_name,
                broker_id,
                address,
                elect,
            } => {
                let set = self.set_mut(broker_name)?;
                let Some(member) = set.members.get_mut(broker_id) else {
                    return Err(Refusal::NeedToBeRegistered {
                        broker_name: broker_name.clone(),
                        id: *broker_id,
                    });
                };
                member.address.clone_from(address);
                if *elect && set.master.is_none() && may_be_elected(set, *broker_id, false) {
                    set.set_master(Some(*broker_id));
                }
                Ok(Some(set.clone()))
            }
            Command::ElectMaster {
                broker_name,
                new_master,
                expected_master_epoch,
            } => {
                let set = self.set_mut(broker_name)?;
                if set.master_epoch != *expected_master_epoch {
                    return Err(Refusal::FencedEpoch {
                        what: "master epoch".to_owned(),
                        current: set.master_epoch,
                        given: *expected_master_epoch,
                    });
                }
                if let Some(m) = new_master {
                    if !set.members.contains_key(m) {
                        return Err(Refusal::NeedToBeRegistered {
                            broker_name: broker_name.clone(),
                            id: *m,
                        });
                    }
                }
                if *new_master == set.master && new_master.is_some() {
                    // Re-electing the sitting master changes nothing.
                    return Ok(Some(set.clone()));
                }
                if new_master.is_none() && set.master.is_none() {
                    return Ok(Some(set.clone()));
                }
                set.set_master(*new_master);
                Ok(Some(set.clone()))
            }
            Command::AlterSyncStateSet {
                broker_name,
                master_id,
                master_epoch,
                sync_state_set_epoch,
                new_set,
            } => {
                let set = self.set_mut(broker_name)?;
                if set.master != Some(*master_id) {
                    return Err(Refusal::NotMaster {
                        broker_name: broker_name.clone(),
                        given: *master_id,
                        master: set.master,
                    });
                }
                if set.master_epoch != *master_epoch {
                    return Err(Refusal::FencedEpoch {
                        what: "master epoch".to_owned(),
                        current: set.master_epoch,
                        given: *master_epoch,
                    });
                }
                if set.sync_state_set_epoch != *sync_state_set_epoch {
                    return Err(Refusal::FencedEpoch {
                        what: "sync state set epoch".to_owned(),
                        current: set.sync_state_set_epoch,
                        given: *sync_state_set_epoch,
                    });
                }
                if !new_set.contains(master_id) {
                    return Err(Refusal::Invalid(
                        "the new SyncStateSet does not contain the master".to_owned(),
                    ));
                }
                if let Some(unknown) = new_set.iter().find(|id| !set.members.contains_key(id)) {
                    return Err(Refusal::NeedToBeRegistered {
                        broker_name: broker_name.clone(),
                        id: *unknown,
                    });
                }
                if set.sync_state_set != *new_set {
                    set.sync_state_set.clone_from(new_set);
                    set.sync_state_set_epoch += 1;
                }
                Ok(Some(set.clone()))
            }
            Command::CleanBrokerData {
                broker_name,
                broker_ids,
            } => {
                if broker_ids.is_empty() {
                    self.sets.remove(broker_name);
                    return Ok(None);
                }
                let set = self.set_mut(broker_name)?;
                for id in broker_ids {
                    set.members.remove(id);
                    set.sync_state_set.remove(id);
                    if set.master == Some(*id) {
                        set.master = None;
                        set.master_epoch += 1;
                    }
                }
                Ok(Some(set.clone()))
            }
            Command::AnnounceController { id, address } => {
                self.controllers.insert(*id, address.clone());
                Ok(None)
            }
        }
    }
}

/// Whether `id` may become master: a member of the SyncStateSet, or anyone when the set is
/// empty (a new group) or unclean election is allowed.
fn may_be_elected(set: &BrokerSet, id: u64, unclean: bool) -> bool {
    set.sync_state_set.is_empty() || set.sync_state_set.contains(&id) || unclean
}

/// What the leader knows about a live broker from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub epoch: i32,
    pub max_offset: i64,
    /// Lower is preferred (RocketMQ's `electionPriority`).
    pub election_priority: i32,
}

/// Picks the master for `set` (RocketMQ's default elect policy): a designated broker if it is
/// alive and eligible; otherwise the sitting master if it is alive; otherwise the live
/// eligible broker with the highest epoch, then the most data, then the best priority.
/// `None` when nobody qualifies.
pub fn choose_master(
    set: &BrokerSet,
    alive: impl Fn(u64) -> Option<Liveness>,
    designated: Option<u64>,
    unclean: bool,
) -> Option<u64> {
    let eligible = |id: u64| {
        set.members.contains_key(&id)
            && alive(id).is_some()
            && (set.sync_state_set.contains(&id) || unclean)
    };
    if let Some(d) = designated {
        return eligible(d).then_some(d);
    }
    if let Some(m) = set.master {
        if eligible(m) {
            return Some(m);
        }
    }
    set.members
        .keys()
        .copied()
        .filter(|id| eligible(*id))
        .filter_map(|id| alive(id).map(|l| (id, l)))
        .max_by(|(a_id, a), (b_id, b)| {
            a.epoch
                .cmp(&b.epoch)
                .then(a.max_offset.cmp(&b.max_offset))
                .then(b.election_priority.cmp(&a.election_priority))
                .then(b_id.cmp(a_id))
        })
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_id(r: &mut Replicas, id: u64) -> Outcome {
        r.apply(&Command::ApplyBrokerId {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            broker_id: id,
            register_check_code: format!("127.0.0.1:{};1", 10000 + id),
        })
    }

    fn group_of_three() -> Replicas {
        let mut r = Replicas::default();
        for id in 1..=3 {
            apply_id(&mut r, id).unwrap();
        }
        r.apply(&Command::RegisterBroker {
            broker_name: "b".into(),
            broker_id: 1,
            address: "127.0.0.1:10001".into(),
            elect: true,
        })
        .unwrap();
        r.apply(&Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: 1,
            master_epoch: 1,
            sync_state_set_epoch: 1,
            new_set: BTreeSet::from([1, 2, 3]),
        })
        .unwrap();
        r
    }

    #[test]
    fn ids_are_handed_out_in_order_and_reapplying_is_idempotent() {
        let mut r = Replicas::default();
        assert!(apply_id(&mut r, 2).is_err());
        apply_id(&mut r, 1).unwrap();
        apply_id(&mut r, 1).unwrap();
        let other = r.apply(&Command::ApplyBrokerId {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            broker_id: 1,
            register_check_code: "10.0.0.9:1;5".into(),
        });
        assert!(matches!(
            other,
            Err(Refusal::BrokerIdInvalid { next: 2, .. })
        ));
        assert_eq!(r.get("b").unwrap().next_broker_id(), 2);
    }

    #[test]
    fn the_first_registered_broker_becomes_master_with_epoch_one() {
        let r = group_of_three();
        let set = r.get("b").unwrap();
        assert_eq!(set.master, Some(1));
        assert_eq!(set.master_epoch, 1);
        assert_eq!(set.sync_state_set, BTreeSet::from([1, 2, 3]));
        assert_eq!(set.sync_state_set_epoch, 2);
    }

    #[test]
    fn election_prefers_the_in_sync_replica_with_most_data_and_bumps_epochs() {
        let mut r = group_of_three();
        let set = r.get("b").unwrap().clone();
        let live = |id: u64| match id {
            2 => Some(Liveness {
                epoch: 1,
                max_offset: 100,
                election_priority: 0,
            }),
            3 => Some(Liveness {
                epoch: 1,
                max_offset: 200,
                election_priority: 0,
            }),
            _ => None,
        };
        let chosen = choose_master(&set, live, None, false);
        assert_eq!(chosen, Some(3));
        r.apply(&Command::ElectMaster {
            broker_name: "b".into(),
            new_master: chosen,
            expected_master_epoch: set.master_epoch,
        })
        .unwrap();
        let after = r.get("b").unwrap();
        assert_eq!(after.master, Some(3));
        assert_eq!(after.master_epoch, 2);
        assert_eq!(after.sync_state_set, BTreeSet::from([3]));
        // A decision made on the old epoch is fenced.
        let stale = r.apply(&Command::ElectMaster {
            broker_name: "b".into(),
            new_master: Some(2),
            expected_master_epoch: 1,
        });
        assert!(matches!(stale, Err(Refusal::FencedEpoch { .. })));
    }

    #[test]
    fn out_of_sync_replicas_are_elected_only_when_unclean_election_is_on() {
        let mut r = group_of_three();
        r.apply(&Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: 1,
            master_epoch: 1,
            sync_state_set_epoch: 2,
            new_set: BTreeSet::from([1]),
        })
        .unwrap();
        let set = r.get("b").unwrap();
        let live = |id: u64| {
            (id == 2).then_some(Liveness {
                epoch: 1,
                max_offset: 10,
                election_priority: 0,
            })
        };
        assert_eq!(choose_master(set, live, None, false), None);
        assert_eq!(choose_master(set, live, None, true), Some(2));
    }

    #[test]
    fn the_sync_state_set_changes_only_from_the_current_master_and_epochs() {
        let mut r = group_of_three();
        let wrong_master = r.apply(&Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: 2,
            master_epoch: 1,
            sync_state_set_epoch: 2,
            new_set: BTreeSet::from([2]),
        });
        assert!(matches!(wrong_master, Err(Refusal::NotMaster { .. })));
        let no_master = r.apply(&Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: 1,
            master_epoch: 1,
            sync_state_set_epoch: 2,
            new_set: BTreeSet::from([2, 3]),
        });
        assert!(matches!(no_master, Err(Refusal::Invalid(_))));
        let stale = r.apply(&Command::AlterSyncStateSet {
            broker_name: "b".into(),
            master_id: 1,
            master_epoch: 1,
            sync_state_set_epoch: 1,
            new_set: BTreeSet::from([1]),
        });
        assert!(matches!(stale, Err(Refusal::FencedEpoch { .. })));
    }
}
