//! Sends five messages tagged with this run's id to `ExamplePushTopic`, then receives them with
//! a clustering push consumer and exits once all five arrived (or fails after 30 s).
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example push_consumer`

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, Expression, PushConsumer};
use ferrymq_client::{Message, MessageExt, Producer};

const TOPIC: &str = "ExamplePushTopic";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());

    let producer = Producer::builder("example_push_producer")
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    for i in 0..5 {
        let msg = Message::new(TOPIC, format!("{run} message {i}"))
            .with_tags("TagA")
            .with_keys([run.clone()]);
        producer.send(msg).await?;
    }
    producer.shutdown().await;
    println!("sent 5 messages tagged {run}");

    let received = Arc::new(Mutex::new(HashSet::new()));
    let seen = received.clone();
    let run_key = run.clone();
    let consumer = PushConsumer::builder(format!("example_push_group_{run}"))
        .namesrv_addr(&namesrv)
        .subscribe(TOPIC, Expression::tags("TagA"))
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            for m in msgs.iter().filter(|m| m.keys().contains(&run_key.as_str())) {
                println!(
                    "received {} {:?}",
                    m.msg_id(),
                    String::from_utf8_lossy(m.body())
                );
                seen.lock().unwrap().insert(m.msg_id().to_owned());
            }
            ConsumeResult::Success
        })
        .await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < 5 {
        if tokio::time::Instant::now() > deadline {
            consumer.shutdown().await;
            return Err("timed out waiting for the messages".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await;
    println!("push consumer: all 5 messages received");
    Ok(())
}
