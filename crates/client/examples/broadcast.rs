//! Starts two broadcasting consumers of one group, sends five messages, and checks that each
//! consumer received all five (clustering would have split them).
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example broadcast`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, MessageModel, PushConsumer};
use ferrymq_client::{Message, MessageExt, Producer};

const TOPIC: &str = "ExampleBroadcastTopic";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());
    let offsets_dir = std::env::temp_dir().join("ferrymq-broadcast-example");

    let producer = Producer::builder("example_broadcast_producer")
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    // The first send creates the topic, so the consumers find its route.
    for i in 0..5 {
        let msg = Message::new(TOPIC, format!("{run} broadcast {i}")).with_keys([run.clone()]);
        producer.send(msg).await?;
    }
    producer.shutdown().await;
    println!("sent 5 messages tagged {run}");

    let group = format!("example_broadcast_group_{run}");
    let mut consumers = Vec::new();
    let mut counters = Vec::new();
    for name in ["first", "second"] {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let run_key = run.clone();
        let consumer = PushConsumer::builder(&group)
            .namesrv_addr(&namesrv)
            .instance_name(format!("{run}-{name}"))
            .subscribe(TOPIC, "*")
            .message_model(MessageModel::Broadcasting)
            .consume_from(ConsumeFrom::FirstOffset)
            .offset_store_dir(&offsets_dir)
            .start(move |msgs: &[MessageExt]| {
                for m in msgs.iter().filter(|m| m.keys().contains(&run_key.as_str())) {
                    println!(
                        "{name} consumer received {:?}",
                        String::from_utf8_lossy(m.body())
                    );
                    c.fetch_add(1, Ordering::SeqCst);
                }
                ConsumeResult::Success
            })
            .await?;
        consumers.push(consumer);
        counters.push(count);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counters.iter().any(|c| c.load(Ordering::SeqCst) < 5) {
        if tokio::time::Instant::now() > deadline {
            return Err("timed out: not every consumer received every message".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &consumers {
        c.shutdown().await;
    }
    println!("broadcast: both consumers received all 5 messages");
    Ok(())
}
