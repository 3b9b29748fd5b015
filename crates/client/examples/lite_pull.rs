//! Sends ten messages to `ExampleLiteTopic`, then reads them with a lite pull consumer:
//! subscribe, poll until all ten arrived, commit the offsets.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example lite_pull`

use std::time::Duration;

use ferrymq_client::consumer::{ConsumeFrom, LitePullConsumer};
use ferrymq_client::{Message, Producer};

const TOPIC: &str = "ExampleLiteTopic";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());

    let producer = Producer::builder("example_lite_producer")
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    for i in 0..10 {
        producer
            .send(Message::new(TOPIC, format!("{run} lite {i}")).with_keys([run.clone()]))
            .await?;
    }
    producer.shutdown().await;
    println!("sent 10 messages tagged {run}");

    let consumer = LitePullConsumer::builder(format!("example_lite_group_{run}"))
        .namesrv_addr(&namesrv)
        .consume_from(ConsumeFrom::FirstOffset)
        .auto_commit(false)
        .start()
        .await?;
    consumer.subscribe(TOPIC, "*").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut mine = 0;
    while mine < 10 {
        if tokio::time::Instant::now() > deadline {
            consumer.shutdown().await;
            return Err(format!("timed out: {mine} of 10 polled").into());
        }
        for m in consumer.poll(Duration::from_secs(1)).await? {
            if m.keys().contains(&run.as_str()) {
                mine += 1;
                println!(
                    "polled queue {} offset {}: {:?}",
                    m.queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(m.body())
                );
            }
        }
    }
    consumer.commit().await?;
    for q in consumer.assignment() {
        println!(
            "committed {}/{}: {:?}",
            q.broker_name,
            q.queue_id,
            consumer.committed(&q).await?
        );
    }
    consumer.shutdown().await;
    println!("lite pull: 10 messages polled and committed");
    Ok(())
}
