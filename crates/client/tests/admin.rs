//! The admin client against an in-process NameServer and broker: topics, routes, cluster info,
//! broker statistics, consumer progress and connections, message queries and offset resets.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, messages, unique, Cluster};
use ferrymq_client::admin::{Admin, TopicSpec};
use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use ferrymq_client::{MessageExt, Producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_stats_queries_progress_and_reset() {
    let cluster = Cluster::start(1).await;
    let admin = Admin::builder()
        .options(cluster.options())
        .start()
        .await
        .unwrap();

    let info = admin.cluster_info().await.unwrap();
    assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    let masters = admin.cluster_masters("DefaultCluster").await.unwrap();
    assert_eq!(masters, vec![cluster.broker_addr(0)]);
    let runtime = admin.broker_runtime_info(&masters[0]).await.unwrap();
    assert!(runtime.contains_key("brokerVersion"), "{runtime:?}");

    let topic = unique("AdminT");
    admin
        .create_topic(&TopicSpec::new(&topic, 3), "DefaultCluster")
        .await
        .unwrap();
    cluster
        .wait_route(&topic, |r| !r.queue_datas.is_empty())
        .await;
    let route = admin.topic_route(&topic).await.unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, 3);
    assert!(admin.topic_list().await.unwrap().contains(&topic));

    let p = Producer::builder(unique("pg"))
        .options(cluster.options())
        .start()
        .await
        .unwrap();
    let mut results = Vec::new();
    for m in messages(&topic, "A", "adm", 9) {
        results.push(p.send(m).await.unwrap());
    }
    // Consume queues are built asynchronously after the append.
    eventually(
        Duration::from_secs(10),
        "stats count 9 messages",
        || async {
            let stats = admin.topic_stats(&topic).await.unwrap();
            stats.len() == 3 && stats.values().map(|o| o.max_offset).sum::<i64>() == 9
        },
    )
    .await;

    // By offset id, by client id, by key.
    let r = &results[4];
    let m = admin.view_message(&r.offset_msg_id).await.unwrap();
    assert_eq!(&m.body()[..], b"adm-4");
    let m = admin
        .query_message_by_id(&topic, &r.msg_id)
        .await
        .unwrap()
        .expect("found by UNIQ_KEY");
    assert_eq!(&m.body()[..], b"adm-4");
    eventually(Duration::from_secs(10), "key indexed", || async {
        let found = admin
            .query_messages_by_key(&topic, "adm-key-7", 32, 0, i64::MAX)
            .await
            .unwrap();
        found.len() == 1 && &found[0].body()[..] == b"adm-7"
    })
    .await;

    // A group consuming everything has no lag.
    let group = unique("acg");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let c = PushConsumer::builder(&group)
        .options(cluster.options())
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .persist_interval(Duration::from_millis(200))
        .start(move |msgs: &[MessageExt]| {
            s.lock().unwrap().extend(
                msgs.iter()
                    .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
            );
            ConsumeResult::Success
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "lag 0", || async {
        match admin.consumer_progress(&group, Some(&topic)).await {
            Ok(p) => p.queues.len() == 3 && p.lag() == 0,
            Err(_) => false,
        }
    })
    .await;
    let all = admin.consumer_progress(&group, None).await.unwrap();
    assert!(all.queues.keys().any(|q| q.topic == topic));
    let conns = admin.consumer_connections(&group).await.unwrap();
    assert_eq!(conns.connection_set.len(), 1);
    assert_eq!(conns.connection_set[0].client_id, c.instance().client_id());
    assert!(conns.subscription_table.contains_key(&topic));

    // The consumer describes itself, and consumes a message on request, through the broker.
    let info = admin
        .consumer_running_info(&group, c.instance().client_id())
        .await
        .unwrap();
    assert_eq!(info["properties"]["PROP_CONSUMEORDERLY"], "false");
    // The topic's three queues (and, once its route is known, the retry topic's).
    let owned = info["mqTable"].as_array().map_or(0, Vec::len);
    assert!(owned >= 3, "{info}");
    assert!(info["subscriptionSet"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["topic"] == topic.as_str()));
    let before = seen.lock().unwrap().len();
    let direct = admin
        .consume_message_directly(&group, c.instance().client_id(), &topic, &r.offset_msg_id)
        .await
        .unwrap();
    assert_eq!(direct["consumeResult"], "CR_SUCCESS");
    assert_eq!(seen.lock().unwrap().len(), before + 1);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "adm-4");

    // Reset to the beginning: the online consumer reads everything again.
    let reset = admin
        .reset_offset_by_time(&group, &topic, 0, true)
        .await
        .unwrap();
    assert_eq!(reset.len(), 3);
    assert!(reset.values().all(|o| *o == 0), "{reset:?}");
    // The reset is served on each queue's next pull; one message per queue ends the
    // long polls now instead of at their 15 s timeout.
    for q in 0..3 {
        let queue = ferrymq_client::MessageQueue {
            topic: topic.clone(),
            broker_name: "broker-a".into(),
            queue_id: q,
        };
        let kick = messages(&topic, "A", &format!("kick{q}"), 1).remove(0);
        p.send_to_queue(kick, &queue).await.unwrap();
    }
    // Everything is seen again from offset 0: the 9 originals a second time plus the 3 kicks
    // (a kick may arrive before or after the others, so wait for both conditions).
    eventually(
        Duration::from_secs(20),
        "consumed again after reset",
        || async {
            let seen = seen.lock().unwrap();
            let distinct: HashSet<&String> = seen.iter().collect();
            seen.len() >= 9 + 9 + 3 && distinct.len() == 12
        },
    )
    .await;

    c.shutdown().await;
    admin.delete_topic(&topic, "DefaultCluster").await.unwrap();
    eventually(Duration::from_secs(10), "route gone", || async {
        admin.topic_route(&topic).await.is_err()
    })
    .await;
    p.shutdown().await;
    admin.shutdown().await;
    cluster.shutdown().await;
}
