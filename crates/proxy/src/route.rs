//! QueryRoute and QueryAssignment (grpc-v5.md §8, §10.3): queue shapes built from the name
//! servers' route the way the Java proxy does in cluster mode. Every queue points at the
//! endpoints the client itself used, so clients keep talking to this proxy.

use ferrymq_protocol::body::{QueueData, TopicRouteData};
use ferrymq_protocol::message::flag::perm;

use crate::pb::{self, Code, MessageType, Permission};
use crate::service::Context;
use crate::status::Failure;

/// Message types a queue accepts. Topic types (`message.type`) are not known from the route,
/// so queues accept all four, like a MIXED topic.
const ACCEPTED_TYPES: [MessageType; 4] = [
    MessageType::Normal,
    MessageType::Fifo,
    MessageType::Delay,
    MessageType::Transaction,
];

fn queue(
    topic: &pb::Resource,
    broker: &pb::Broker,
    id: i32,
    permission: Permission,
) -> pb::MessageQueue {
    pb::MessageQueue {
        topic: Some(topic.clone()),
        id,
        permission: permission as i32,
        broker: Some(broker.clone()),
        accept_message_types: ACCEPTED_TYPES.iter().map(|t| *t as i32).collect(),
    }
}

/// The queues of one broker: read-only ones, then write-only, then read-write, ids counted
/// on (Java `genMessageQueueFromQueueData`).
fn broker_queues(
    topic: &pb::Resource,
    broker: &pb::Broker,
    qd: &QueueData,
) -> Vec<pb::MessageQueue> {
    let readable = perm::is_readable(qd.perm);
    let writable = perm::is_writeable(qd.perm);
    let (r, w) = (qd.read_queue_nums.max(0), qd.write_queue_nums.max(0));
    let (read_only, write_only, read_write) = if readable && writable {
        ((r - w).max(0), (w - r).max(0), r.min(w))
    } else if readable {
        (r, 0, 0)
    } else if writable {
        (0, w, 0)
    } else {
        (0, 0, 0)
    };
    let mut out = Vec::new();
    let mut id = 0;
    for (n, p) in [
        (read_only, Permission::Read),
        (write_only, Permission::Write),
        (read_write, Permission::ReadWrite),
    ] {
        for _ in 0..n {
            out.push(queue(topic, broker, id, p));
            id += 1;
        }
    }
    out
}

/// The master brokers of a route with their queue data, sorted by broker name.
fn masters(route: &TopicRouteData) -> Vec<&QueueData> {
    let mut qds: Vec<&QueueData> = route
        .queue_datas
        .iter()
        .filter(|qd| {
            route
                .broker_datas
                .iter()
                .any(|bd| bd.broker_name == qd.broker_name && bd.broker_addrs.contains_key(&0))
        })
        .collect();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    qds
}

fn broker(name: &str, endpoints: &pb::Endpoints) -> pb::Broker {
    pb::Broker {
        name: name.to_owned(),
        id: 0,
        endpoints: Some(endpoints.clone()),
    }
}

pub(crate) fn route_queues(
    topic: &pb::Resource,
    endpoints: &pb::Endpoints,
    route: &TopicRouteData,
) -> Vec<pb::MessageQueue> {
    masters(route)
        .into_iter()
        .flat_map(|qd| broker_queues(topic, &broker(&qd.broker_name, endpoints), qd))
        .collect()
}

/// Push-consumer assignments: per master with readable queues, one queue id −1 ("pop any
/// queue of this broker"), or every read queue for a FIFO group.
pub(crate) fn assignments(
    topic: &pb::Resource,
    endpoints: &pb::Endpoints,
    route: &TopicRouteData,
    fifo: bool,
) -> Vec<pb::Assignment> {
    let mut out = Vec::new();
    for qd in masters(route) {
        if !perm::is_readable(qd.perm) || qd.read_queue_nums <= 0 {
            continue;
        }
        let b = broker(&qd.broker_name, endpoints);
        if fifo {
            for id in 0..qd.read_queue_nums {
                out.push(pb::Assignment {
                    message_queue: Some(queue(topic, &b, id, Permission::ReadWrite)),
                });
            }
        } else {
            out.push(pb::Assignment {
                message_queue: Some(queue(topic, &b, -1, Permission::ReadWrite)),
            });
        }
    }
    out
}

fn endpoints_of(e: Option<pb::Endpoints>) -> Result<pb::Endpoints, Failure> {
    match e {
        Some(e) if !e.addresses.is_empty() => Ok(e),
        _ => Err(Failure::new(
            Code::IllegalAccessPoint,
            "endpoints are missing",
        )),
    }
}

pub(crate) async fn query_route(
    ctx: &Context,
    req: pb::QueryRouteRequest,
) -> Result<Vec<pb::MessageQueue>, Failure> {
    let topic = req.topic.unwrap_or_default();
    crate::send::check_topic(&topic.name)?;
    let endpoints = endpoints_of(req.endpoints)?;
    let route = ctx.instance.route(&topic.name).await?;
    Ok(route_queues(&topic, &endpoints, &route))
}

pub(crate) async fn query_assignment(
    ctx: &Context,
    req: pb::QueryAssignmentRequest,
) -> Result<Vec<pb::Assignment>, Failure> {
    let topic = req.topic.unwrap_or_default();
    crate::send::check_topic(&topic.name)?;
    let group = req.group.unwrap_or_default();
    crate::send::check_group(&group.name)?;
    let endpoints = endpoints_of(req.endpoints)?;
    let route = ctx.instance.route(&topic.name).await?;
    let fifo = match crate::group::any_master(&route) {
        Some(addr) => crate::group::policy(ctx, &group.name, &addr).await.fifo,
        None => false,
    };
    let out = assignments(&topic, &endpoints, &route, fifo);
    if out.is_empty() {
        return Err(Failure::new(Code::Forbidden, "no readable queue"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrymq_protocol::body::BrokerData;

    fn route(r: i32, w: i32, p: i32) -> TopicRouteData {
        TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "b1".into(),
                perm: p,
                read_queue_nums: r,
                write_queue_nums: w,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                broker_addrs: [(0, "127.0.0.1:10911".to_owned())].into_iter().collect(),
                broker_name: "b1".into(),
                cluster: "c".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn ep() -> pb::Endpoints {
        pb::Endpoints {
            scheme: pb::AddressScheme::IPv4 as i32,
            addresses: vec![pb::Address {
                host: "127.0.0.1".into(),
                port: 8081,
            }],
        }
    }

    fn t() -> pb::Resource {
        pb::Resource {
            resource_namespace: String::new(),
            name: "T".into(),
        }
    }

    #[test]
    fn queue_shapes_follow_java() {
        let qs = route_queues(&t(), &ep(), &route(4, 4, perm::READ | perm::WRITE));
        assert_eq!(qs.len(), 4);
        assert!(qs
            .iter()
            .all(|q| q.permission == Permission::ReadWrite as i32));
        assert_eq!(
            qs.iter().map(|q| q.id).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let b = qs[0].broker.as_ref().unwrap();
        assert_eq!((b.name.as_str(), b.id), ("b1", 0));
        assert_eq!(b.endpoints.as_ref().unwrap().addresses[0].port, 8081);
        assert_eq!(qs[0].accept_message_types.len(), 4);

        let qs = route_queues(&t(), &ep(), &route(6, 4, perm::READ | perm::WRITE));
        let perms: Vec<i32> = qs.iter().map(|q| q.permission).collect();
        assert_eq!(perms[..2], [Permission::Read as i32; 2]);
        assert_eq!(perms[2..], [Permission::ReadWrite as i32; 4]);

        let qs = route_queues(&t(), &ep(), &route(4, 4, perm::READ));
        assert!(qs.iter().all(|q| q.permission == Permission::Read as i32));
    }

    #[test]
    fn assignments_are_one_per_broker_unless_fifo() {
        let r = route(4, 4, perm::READ | perm::WRITE);
        let a = assignments(&t(), &ep(), &r, false);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].message_queue.as_ref().unwrap().id, -1);
        assert_eq!(assignments(&t(), &ep(), &r, true).len(), 4);
        assert!(assignments(&t(), &ep(), &route(4, 4, perm::WRITE), false).is_empty());
    }
}
