//! Sends ten tagged messages to `ExampleTopic` (created on first use) and prints where each
//! was stored.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example producer`

use ferrymq_client::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder("example_producer_group")
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    for i in 0..10 {
        let msg = Message::new("ExampleTopic", format!("hello #{i}"))
            .with_tags("TagA")
            .with_keys([format!("example-key-{i}")]);
        let r = producer.send(msg).await?;
        println!(
            "sent #{i}: {:?} msg_id={} queue={}/{} offset={}",
            r.status, r.msg_id, r.queue.broker_name, r.queue.queue_id, r.queue_offset
        );
    }
    producer.shutdown().await;
    println!("producer: 10 messages sent to ExampleTopic");
    Ok(())
}
