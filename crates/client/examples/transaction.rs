//! Sends two transactional messages to `ExampleTxTopic`: one whose local transaction commits,
//! one that rolls back; then reads the topic back and shows that only the committed one is
//! visible.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example transaction`

use std::time::Duration;

use ferrymq_client::consumer::{LitePullConsumer, PullStatus};
use ferrymq_client::{Message, MessageExt, TransactionProducer, TransactionState};

const TOPIC: &str = "ExampleTxTopic";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());

    let producer = TransactionProducer::builder("example_tx_producer")
        .namesrv_addr(&namesrv)
        // Asked by the broker about transactions whose outcome it never received.
        .checker(|msg: &MessageExt| {
            println!("broker asked about {}: committing", msg.msg_id());
            TransactionState::Commit
        })
        .start()
        .await?;
    let commit = Message::new(TOPIC, format!("{run} committed")).with_keys([run.clone()]);
    let r = producer
        .send_in_transaction(commit, |_| TransactionState::Commit)
        .await?;
    println!("half message {} → {:?}", r.send_result.msg_id, r.state);
    let rollback = Message::new(TOPIC, format!("{run} rolled back")).with_keys([run.clone()]);
    let r = producer
        .send_in_transaction(rollback, |_| TransactionState::Rollback)
        .await?;
    println!("half message {} → {:?}", r.send_result.msg_id, r.state);

    // Read the topic back: only the committed message of this run is there.
    let reader = LitePullConsumer::builder(format!("example_tx_reader_{run}"))
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    let queues = reader.fetch_queues(TOPIC).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let visible = loop {
        let mut mine = Vec::new();
        for q in &queues {
            let mut offset = 0;
            loop {
                let r = reader.pull(q, "*", offset, 32).await?;
                if r.status != PullStatus::Found {
                    break;
                }
                offset = r.next_begin_offset;
                mine.extend(
                    r.messages
                        .into_iter()
                        .filter(|m| m.keys().contains(&run.as_str()))
                        .map(|m| String::from_utf8_lossy(m.body()).into_owned()),
                );
            }
        }
        if !mine.is_empty() || tokio::time::Instant::now() > deadline {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    reader.shutdown().await;
    producer.shutdown().await;
    println!("visible messages of this run: {visible:?}");
    if visible != [format!("{run} committed")] {
        return Err("expected exactly the committed message".into());
    }
    println!("transaction: commit visible, rollback discarded");
    Ok(())
}
