//! Sends the steps of three orders (created → paid → shipped → done) so that each order's steps
//! share a queue, then consumes them with an orderly push consumer and checks that every order's
//! steps arrived in sequence.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p ferrymq-client --example orderly`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrymq_client::consumer::{ConsumeFrom, ConsumeResult, PushConsumer};
use ferrymq_client::{Message, MessageExt, Producer};

const TOPIC: &str = "ExampleOrderTopic";
const STEPS: [&str; 4] = ["created", "paid", "shipped", "done"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run = format!("run{}", std::process::id());

    let producer = Producer::builder("example_order_producer")
        .namesrv_addr(&namesrv)
        .start()
        .await?;
    for (step_no, step) in STEPS.iter().enumerate() {
        for order in 0..3 {
            let order_id = format!("{run}-order{order}");
            let msg = Message::new(TOPIC, format!("{order_id}:{step_no}:{step}"))
                .with_keys([run.clone()]);
            let r = producer.send_ordered(msg, &order_id).await?;
            println!("sent {order_id} {step} to queue {}", r.queue.queue_id);
        }
    }
    producer.shutdown().await;

    let steps: Arc<Mutex<BTreeMap<String, Vec<usize>>>> = Arc::default();
    let seen = steps.clone();
    let run_key = run.clone();
    let consumer = PushConsumer::builder(format!("example_order_group_{run}"))
        .namesrv_addr(&namesrv)
        .subscribe(TOPIC, "*")
        .orderly(true)
        .consume_from(ConsumeFrom::FirstOffset)
        .start(move |msgs: &[MessageExt]| {
            for m in msgs.iter().filter(|m| m.keys().contains(&run_key.as_str())) {
                let body = String::from_utf8_lossy(m.body()).into_owned();
                let mut parts = body.split(':');
                let (order, step) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                println!("queue {} consumed {body}", m.queue_id);
                seen.lock()
                    .unwrap()
                    .entry(order.to_owned())
                    .or_default()
                    .push(step.parse().unwrap_or(usize::MAX));
            }
            ConsumeResult::Success
        })
        .await?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = steps.lock().unwrap().values().map(Vec::len).sum::<usize>();
        if done >= 12 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            consumer.shutdown().await;
            return Err(format!("timed out: {done} of 12 steps consumed").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await;
    for (order, seq) in steps.lock().unwrap().iter() {
        if *seq != [0, 1, 2, 3] {
            return Err(format!("{order} consumed out of order: {seq:?}").into());
        }
    }
    println!("orderly: 3 orders, every step consumed in order");
    Ok(())
}
