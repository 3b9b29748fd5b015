//! Turning a topic route (GET_ROUTEINFO_BY_TOPIC) into the queue lists producers and consumers
//! work with (behaviour.md §2.1).
//!
//! Producers write to the queues of brokers that have a master and write permission (or to the
//! `orderTopicConf` list when the name server carries one); consumers read from every readable
//! queue. A topic the name servers do not know yet borrows the route of the auto-create template
//! `TBW102`, capped at the client's default queue count, so its first message can create it.

use ferrymq_protocol::body::{MessageQueue, TopicRouteData};
use ferrymq_protocol::message::perm;

/// The queues a producer may send a topic's messages to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishInfo {
    /// Writable queues, by broker name then queue id.
    pub queues: Vec<MessageQueue>,
    /// True when the list came from an order-topic configuration.
    pub ordered: bool,
}

impl PublishInfo {
    /// Derives the publish list of `topic` from its route.
    pub fn from_route(topic: &str, route: &TopicRouteData) -> PublishInfo {
        if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
            let mut queues = Vec::new();
            for entry in conf.split(';') {
                let Some((broker, count)) = entry.split_once(':') else {
                    continue;
                };
                let count: i32 = count.trim().parse().unwrap_or(0);
                for queue_id in 0..count {
                    queues.push(MessageQueue {
                        topic: topic.to_owned(),
                        broker_name: broker.trim().to_owned(),
                        queue_id,
                    });
                }
            }
            return PublishInfo {
                queues,
                ordered: true,
            };
        }
        let mut datas: Vec<_> = route.queue_datas.iter().collect();
        datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        let mut queues = Vec::new();
        for qd in datas {
            if !perm::is_writeable(qd.perm) {
                continue;
            }
            let has_master = route
                .broker_datas
                .iter()
                .any(|bd| bd.broker_name == qd.broker_name && bd.broker_addrs.contains_key(&0));
            if !has_master {
                continue;
            }
            for queue_id in 0..qd.write_queue_nums {
                queues.push(MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: qd.broker_name.clone(),
                    queue_id,
                });
            }
        }
        PublishInfo {
            queues,
            ordered: false,
        }
    }
}

/// The readable queues of `topic`, sorted the Java way (topic, broker name, queue id).
pub fn subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| perm::is_readable(qd.perm))
        .flat_map(|qd| {
            (0..qd.read_queue_nums).map(move |queue_id| MessageQueue {
                topic: topic.to_owned(),
                broker_name: qd.broker_name.clone(),
                queue_id,
            })
        })
        .collect();
    queues.sort();
    queues
}

/// The auto-create template's route adapted for a new topic: each broker offers at most
/// `queue_nums` queues (Java `defaultTopicQueueNums`, 4).
pub fn auto_create_route(template: &TopicRouteData, queue_nums: i32) -> TopicRouteData {
    let mut route = template.clone();
    for qd in &mut route.queue_datas {
        let n = queue_nums.min(qd.read_queue_nums);
        qd.read_queue_nums = n;
        qd.write_queue_nums = n;
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::body::{BrokerData, QueueData};

    fn route() -> TopicRouteData {
        let broker = |name: &str, master: bool| BrokerData {
            broker_addrs: if master {
                [(0, format!("{name}:1")), (1, format!("{name}:2"))].into()
            } else {
                [(1, format!("{name}:2"))].into()
            },
            broker_name: name.into(),
            cluster: "c".into(),
            ..Default::default()
        };
        let queues = |name: &str, perm: i32, n: i32| QueueData {
            broker_name: name.into(),
            perm,
            read_queue_nums: n,
            write_queue_nums: n,
            topic_sys_flag: 0,
        };
        TopicRouteData {
            broker_datas: vec![broker("b", true), broker("a", true), broker("s", false)],
            queue_datas: vec![
                queues("b", 6, 2),
                queues("a", 6, 3),
                queues("s", 6, 1),
                queues("r", 4, 1),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn publish_list_skips_masterless_and_readonly_brokers() {
        let info = PublishInfo::from_route("T", &route());
        let names: Vec<_> = info
            .queues
            .iter()
            .map(|q| format!("{}{}", q.broker_name, q.queue_id))
            .collect();
        assert_eq!(names, ["a0", "a1", "a2", "b0", "b1"]);
        assert!(!info.ordered);
    }

    #[test]
    fn order_conf_wins() {
        let mut r = route();
        r.order_topic_conf = Some("b:2;a:1".into());
        let info = PublishInfo::from_route("T", &r);
        assert!(info.ordered);
        assert_eq!(info.queues.len(), 3);
        assert_eq!(info.queues[2].broker_name, "a");
    }

    #[test]
    fn subscribe_list_has_every_readable_queue() {
        let q = subscribe_queues("T", &route());
        assert_eq!(q.len(), 2 + 3 + 1 + 1);
        assert_eq!(q[0].broker_name, "a");
    }

    #[test]
    fn template_route_is_capped() {
        let capped = auto_create_route(&route(), 2);
        assert!(capped.queue_datas.iter().all(|q| q.write_queue_nums <= 2));
    }
}
