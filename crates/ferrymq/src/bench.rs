//! `ferrymq bench produce|batch|consume`: load generators with the flags of RocketMQ's
//! `producer.sh` / `consumer.sh` benchmarks (`-n -t -w -s -k -l -q -y -b -g …`), plus
//! `--duration`, `--rate` (a fixed offered load, for latency runs) and `--json`.
//!
//! Senders are tasks on the client library. With `--rate`, sends have a schedule and latency is
//! measured from when a send was *due*, not when it started, so a stalled broker shows as
//! latency instead of silently lowering the load (no coordinated omission). The schedule is kept
//! by a pacer thread rather than Tokio timers: those fire on whole milliseconds, which made
//! every send start up to a millisecond late (counted as latency) and released the sends of a
//! millisecond as one burst. Due sends wait in one queue that every idle sender takes from, as
//! requests wait for any free thread of a pool: with a queue per sender, one slow send would
//! hold back the sends dealt to that sender while others sat idle, and the bench would measure
//! its own head-of-line blocking. Latencies go to per-sender HDR histograms merged at the end;
//! the live line reads only counters.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{ArgAction, Args, Subcommand};
use ferrymq_client::{
    Compression, ConsumeResult, Expression, Message, MessageExt, Producer, PushConsumer,
};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::sync::mpsc;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Send messages one per request (producer.sh).
    Produce(ProduceArgs),
    /// Send batches of messages (batchproducer.sh).
    Batch(BatchArgs),
    /// Consume with a push consumer (consumer.sh).
    Consume(ConsumeArgs),
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// NameServer addresses, `host:port;host:port`.
    #[arg(
        short = 'n',
        long = "namesrvAddr",
        env = "NAMESRV_ADDR",
        default_value = "127.0.0.1:9876"
    )]
    namesrv: String,
    #[command(flatten)]
    security: crate::connect::SecurityArgs,
    /// Topic.
    #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
    topic: String,
    /// Stop after this many seconds (default: until -q is reached or Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Concurrent senders.
    #[arg(short = 'w', long = "threadCount", default_value_t = 64)]
    threads: usize,
    /// Body size in bytes.
    #[arg(short = 's', long = "messageSize", default_value_t = 128)]
    size: usize,
    /// Give every message a key.
    #[arg(short = 'k', long = "keyEnable", default_value_t = false, action = ArgAction::Set)]
    keys: bool,
    /// Spread messages over this many tags (0 = no tag).
    #[arg(short = 'l', long = "tagCount", default_value_t = 0)]
    tags: u32,
    /// Messages to send in total (0 = no limit).
    #[arg(short = 'q', long = "messageQuantity", default_value_t = 0)]
    quantity: u64,
    /// Send delayed messages.
    #[arg(short = 'd', long = "delayEnable", default_value_t = false, action = ArgAction::Set)]
    delay: bool,
    /// Delay level for -d.
    #[arg(short = 'e', long = "delayLevel", default_value_t = 1)]
    delay_level: i32,
    /// Pipeline sends (16 in flight per sender) instead of waiting for each.
    #[arg(short = 'y', long = "asyncEnable", default_value_t = false, action = ArgAction::Set)]
    asynchronous: bool,
    /// Let the client compress bodies over 4 KiB.
    #[arg(short = 'c', long = "compressEnable", default_value_t = false, action = ArgAction::Set)]
    compress: bool,
    /// Codec for -c true: ZLIB, LZ4 or ZSTD (Java's rocketmq.message.compressType).
    #[arg(long = "compressType", default_value = "ZLIB", value_parser = parse_compression)]
    compress_type: Compression,
    /// Fixed offered load in messages per second over all senders (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Args, Clone)]
pub struct BatchArgs {
    #[command(flatten)]
    produce: ProduceArgs,
    /// Messages per batch.
    #[arg(short = 'b', long = "batchSize", default_value_t = 16)]
    batch: usize,
    /// Bytes of user properties per message.
    #[arg(short = 'p', long = "propertySize", default_value_t = 0)]
    property_size: usize,
}

#[derive(Args, Clone)]
pub struct ConsumeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Consumer group.
    #[arg(short = 'g', long = "group", default_value = "benchmark_consumer")]
    group: String,
    /// Consume threads.
    #[arg(short = 'w', long = "threadCount", default_value_t = 20)]
    threads: usize,
    /// Filter type: TAG or SQL92.
    #[arg(short = 'f', long = "filterType", default_value = "TAG")]
    filter_type: String,
    /// Filter expression (`*`, `TagA || TagB`, or SQL92 text).
    #[arg(short = 'e', long = "expression", default_value = "*")]
    expression: String,
    /// Fraction of batches answered RECONSUME_LATER (0.0-1.0).
    #[arg(short = 'r', long = "failRate", default_value_t = 0.0)]
    fail_rate: f64,
    /// Stop after this many messages (0 = no limit).
    #[arg(short = 'q', long = "messageQuantity", default_value_t = 0)]
    quantity: u64,
    /// Stop once nothing arrived for this many seconds after the first message (0 = never).
    #[arg(long, default_value_t = 0.0)]
    idle_stop: f64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Counters the live line reads.
#[derive(Default)]
struct Counters {
    /// Messages handed to a send so far, so `-q` stops exactly at the quantity.
    issued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    stop: AtomicBool,
}

fn progress_bar(json: bool) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Ticks the live line once a second until `stop` is set; returns when the run should end.
async fn supervise(
    counters: &Counters,
    bar: &ProgressBar,
    verb: &str,
    duration: Option<f64>,
    quantity: u64,
) {
    let start = Instant::now();
    let deadline = duration.map(|d| start + Duration::from_secs_f64(d.max(0.0)));
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let ok = counters.ok.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (ok - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, ok);
        bar.set_message(format!(
            "{verb} {ok} | {rate:.0} msg/s | failed {}",
            counters.failed.load(Ordering::Relaxed)
        ));
        bar.tick();
        if counters.stop.load(Ordering::Relaxed)
            || deadline.is_some_and(|d| now >= d)
            || (quantity > 0 && ok + counters.failed.load(Ordering::Relaxed) >= quantity)
        {
            break;
        }
    }
    counters.stop.store(true, Ordering::Relaxed);
}

struct Report {
    mode: &'static str,
    topic: String,
    workers: usize,
    size: usize,
    elapsed: Duration,
    ok: u64,
    failed: u64,
    bytes: u64,
    latencies: Vec<(&'static str, Histogram<u64>)>,
}

fn quantiles(h: &Histogram<u64>) -> [(&'static str, u64); 5] {
    [
        ("p50", h.value_at_quantile(0.50)),
        ("p90", h.value_at_quantile(0.90)),
        ("p99", h.value_at_quantile(0.99)),
        ("p99.9", h.value_at_quantile(0.999)),
        ("max", h.max()),
    ]
}

impl Report {
    fn print(&self, json: bool) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let tps = self.ok as f64 / secs;
        let mib = self.bytes as f64 / secs / (1024.0 * 1024.0);
        if json {
            let mut lat = serde_json::Map::new();
            for (name, h) in &self.latencies {
                let mut q = serde_json::Map::new();
                for (k, v) in quantiles(h) {
                    q.insert(k.replace('.', ""), v.into());
                }
                q.insert("count".into(), h.len().into());
                lat.insert(format!("{name}_us"), q.into());
            }
            let v = serde_json::json!({
                "mode": self.mode,
                "topic": self.topic,
                "workers": self.workers,
                "message_size": self.size,
                "elapsed_s": secs,
                "ok": self.ok,
                "failed": self.failed,
                "tps": tps,
                "mib_per_s": mib,
                "latency": lat,
            });
            println!("{v}");
            return;
        }
        println!(
            "ferrymq bench {}: topic {}, {} workers, {} B bodies, {:.1} s",
            self.mode, self.topic, self.workers, self.size, secs
        );
        println!(
            "  ok {} msgs ({tps:.0} msg/s, {mib:.1} MiB/s), failed {}",
            self.ok, self.failed
        );
        for (name, h) in &self.latencies {
            let q = quantiles(h).map(|(k, v)| format!("{k} {v}")).join("  ");
            println!("  {name} latency µs: {q}  (n={})", h.len());
        }
    }
}

fn payload(size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn build_message(a: &ProduceArgs, body: &Bytes, n: u64) -> Message {
    let mut m = Message::new(a.common.topic.clone(), body.clone());
    if a.tags > 0 {
        m = m.with_tags(format!("tag{}", n % u64::from(a.tags)));
    }
    if a.keys {
        m = m.with_keys([format!("key{n}")]);
    }
    if a.delay {
        m = m.with_delay_level(a.delay_level);
    }
    m
}

fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "ZLIB" => Ok(Compression::Zlib),
        "LZ4" => Ok(Compression::Lz4),
        "ZSTD" => Ok(Compression::Zstd),
        other => Err(format!(
            "unknown compression type {other} (ZLIB, LZ4 or ZSTD)"
        )),
    }
}

async fn start_producer(a: &ProduceArgs) -> Result<Producer> {
    let mut b = Producer::builder("benchmark_producer")
        .options(a.common.security.client_options(&a.common.namesrv))
        .send_timeout(Duration::from_secs(3));
    if a.compress {
        b = b.compression(a.compress_type);
    } else {
        b = b.compress_threshold(usize::MAX);
    }
    b.start().await.context("cannot start the producer")
}

/// Shortest pacer sleep. Sleeping until each send's due time would wake the pacer (and a
/// runtime thread) once per send, which at 20,000 msg/s cost a sizeable share of a core on a
/// small machine; with this floor the pacer wakes at most 10,000 times a second and releases
/// what has come due, so a send starts at most this much (plus timer slack) after its due time.
const PACER_TICK: Duration = Duration::from_micros(100);

/// The schedule shared by the senders: idle senders wait in line (a fair lock) for the next due
/// send.
type DueQueue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>>;

/// Starts the `--rate` pacer: a thread that queues send `i` (due at `start + i / rate`) once it
/// is due, so sends start within about [`PACER_TICK`] of their due time when a sender is free.
/// Stops when `stop` is set; the senders then see the queue close.
fn start_pacer(rate: u64, start: Instant, stop: Arc<Counters>) -> Result<DueQueue> {
    let (tx, rx) = mpsc::unbounded_channel();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let mut i = 0u64;
            while !stop.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                loop {
                    let due = start + every.mul_f64(i as f64);
                    if due > now {
                        std::thread::sleep((due - now).max(PACER_TICK));
                        break;
                    }
                    if tx.send(due).is_err() {
                        return;
                    }
                    i += 1;
                }
            }
        })
        .context("cannot start the pacer thread")?;
    Ok(Arc::new(tokio::sync::Mutex::new(rx)))
}

async fn produce_loop(
    producer: Arc<Producer>,
    args: Arc<ProduceArgs>,
    batch: Option<(usize, usize)>,
    counters: Arc<Counters>,
    worker: usize,
    due: Option<DueQueue>,
) -> Histogram<u64> {
    let mut hist = histogram();
    let body = payload(args.size);
    let mut k = 0u64;
    let per_request = batch.map_or(1, |(n, _)| n as u64);
    let mut in_flight = futures_util_lite::InFlight::default();
    while !counters.stop.load(Ordering::Relaxed) {
        let planned = match &due {
            Some(queue) => match queue.lock().await.recv().await {
                Some(at) => at,
                None => break,
            },
            None => Instant::now(),
        };
        if args.quantity > 0
            && counters.issued.fetch_add(per_request, Ordering::Relaxed) >= args.quantity
        {
            break;
        }
        let n = k * args.threads as u64 + worker as u64;
        k += 1;
        if let Some((size, prop)) = batch {
            let msgs: Vec<Message> = (0..size as u64)
                .map(|i| {
                    let mut m = build_message(&args, &body, n * size as u64 + i);
                    if prop > 0 {
                        m = m.with_property("bench", "p".repeat(prop));
                    }
                    m
                })
                .collect();
            let r = producer.send_batch(msgs).await;
            record(
                &counters,
                &mut hist,
                planned,
                r.is_ok(),
                per_request,
                (args.size * size) as u64,
            );
        } else if args.asynchronous {
            let handle = producer.send_async(build_message(&args, &body, n));
            in_flight.push(planned, handle);
            while in_flight.len() >= 16
                || (counters.stop.load(Ordering::Relaxed) && !in_flight.is_empty())
            {
                let Some((at, ok)) = in_flight.next().await else {
                    break;
                };
                record(&counters, &mut hist, at, ok, 1, args.size as u64);
            }
        } else {
            let r = producer.send(build_message(&args, &body, n)).await;
            record(
                &counters,
                &mut hist,
                planned,
                r.is_ok(),
                1,
                args.size as u64,
            );
        }
    }
    while let Some((at, ok)) = in_flight.next().await {
        record(&counters, &mut hist, at, ok, 1, args.size as u64);
    }
    hist
}

fn record(
    counters: &Counters,
    hist: &mut Histogram<u64>,
    planned: Instant,
    ok: bool,
    msgs: u64,
    bytes: u64,
) {
    if ok {
        let _ = hist.record(planned.elapsed().as_micros().max(1) as u64);
        counters.ok.fetch_add(msgs, Ordering::Relaxed);
        counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    } else {
        counters.failed.fetch_add(msgs, Ordering::Relaxed);
    }
}

/// A tiny ordered set of pending async sends (completed in submission order, which is what
/// a per-sender pipeline needs), so the bench does not pull in a futures combinator crate.
mod futures_util_lite {
    use std::collections::VecDeque;
    use std::time::Instant;

    use ferrymq_client::SendHandle;

    #[derive(Default)]
    pub struct InFlight {
        queue: VecDeque<(Instant, SendHandle)>,
    }

    impl InFlight {
        pub fn push(&mut self, at: Instant, h: SendHandle) {
            self.queue.push_back((at, h));
        }
        pub fn len(&self) -> usize {
            self.queue.len()
        }
        pub fn is_empty(&self) -> bool {
            self.queue.is_empty()
        }
        pub async fn next(&mut self) -> Option<(Instant, bool)> {
            let (at, h) = self.queue.pop_front()?;
            Some((at, h.await.is_ok()))
        }
    }
}

async fn run_produce(args: ProduceArgs, batch: Option<(usize, usize)>) -> Result<()> {
    if args.threads == 0 {
        bail!("-w/--threadCount must be at least 1");
    }
    let producer = Arc::new(start_producer(&args).await?);
    let counters = Arc::new(Counters::default());
    let bar = progress_bar(args.common.json);
    let args = Arc::new(args);
    let start = Instant::now();
    let pacing = match args.rate {
        0 => None,
        rate => Some(start_pacer(rate, start, counters.clone())?),
    };
    let mut tasks = Vec::with_capacity(args.threads);
    for w in 0..args.threads {
        tasks.push(tokio::spawn(produce_loop(
            producer.clone(),
            args.clone(),
            batch,
            counters.clone(),
            w,
            pacing.clone(),
        )));
    }
    supervise(&counters, &bar, "sent", args.common.duration, args.quantity).await;
    let mut merged = histogram();
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = merged.add(&h);
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    producer.shutdown().await;
    Report {
        mode: if batch.is_some() { "batch" } else { "produce" },
        topic: args.common.topic.clone(),
        workers: args.threads,
        size: args.size,
        elapsed,
        ok: counters.ok.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        latencies: vec![(
            if batch.is_some() {
                "batch send"
            } else {
                "send"
            },
            merged,
        )],
    }
    .print(args.common.json);
    Ok(())
}

struct ConsumeState {
    counters: Counters,
    born: Mutex<Histogram<u64>>,
    stored: Mutex<Histogram<u64>>,
    first: Mutex<Option<Instant>>,
    last: Mutex<Instant>,
    fail_rate: f64,
    size: AtomicU64,
}

impl ConsumeState {
    fn on_batch(&self, msgs: &[MessageExt]) -> ConsumeResult {
        let now = now_ms();
        let instant = Instant::now();
        self.first.lock().get_or_insert(instant);
        *self.last.lock() = instant;
        if self.fail_rate > 0.0 && rand_fraction() < self.fail_rate {
            self.counters
                .failed
                .fetch_add(msgs.len() as u64, Ordering::Relaxed);
            return ConsumeResult::ReconsumeLater;
        }
        {
            let mut born = self.born.lock();
            let mut stored = self.stored.lock();
            for m in msgs {
                let _ = born.record(((now - m.born_timestamp).max(0) as u64 * 1000).max(1));
                let _ = stored.record(((now - m.store_timestamp).max(0) as u64 * 1000).max(1));
            }
        }
        let bytes: u64 = msgs.iter().map(|m| m.message.body().len() as u64).sum();
        if let Some(m) = msgs.first() {
            self.size
                .store(m.message.body().len() as u64, Ordering::Relaxed);
        }
        self.counters
            .ok
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        ConsumeResult::Success
    }
}

/// A cheap fraction in [0, 1) for the failure injection (quality does not matter here).
fn rand_fraction() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(0x9E37_79B9_7F4A_7C15 ^ now_ms() as u64));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

async fn run_consume(args: ConsumeArgs) -> Result<()> {
    let expression = match args.filter_type.to_ascii_uppercase().as_str() {
        "TAG" => Expression::tags(args.expression.clone()),
        "SQL92" => Expression::sql92(args.expression.clone()),
        other => bail!("-f/--filterType must be TAG or SQL92, not `{other}`"),
    };
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!("-r/--failRate must be between 0 and 1");
    }
    let state = Arc::new(ConsumeState {
        counters: Counters::default(),
        born: Mutex::new(histogram()),
        stored: Mutex::new(histogram()),
        first: Mutex::new(None),
        last: Mutex::new(Instant::now()),
        fail_rate: args.fail_rate,
        size: AtomicU64::new(0),
    });
    let listener_state = state.clone();
    let consumer = PushConsumer::builder(args.group.clone())
        .options(args.common.security.client_options(&args.common.namesrv))
        .subscribe(args.common.topic.clone(), expression)
        .consume_threads(args.threads.max(1))
        .start(move |msgs: &[MessageExt]| listener_state.on_batch(msgs))
        .await
        .context("cannot start the consumer")?;
    let bar = progress_bar(args.common.json);
    let idle = args.idle_stop;
    let watcher_state = state.clone();
    let idle_watch = tokio::spawn(async move {
        if idle <= 0.0 {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = watcher_state.first.lock().is_some();
            if started && watcher_state.last.lock().elapsed().as_secs_f64() >= idle {
                watcher_state.counters.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
    supervise(
        &state.counters,
        &bar,
        "consumed",
        args.common.duration,
        args.quantity,
    )
    .await;
    idle_watch.abort();
    bar.finish_and_clear();
    consumer.shutdown().await;
    let first = (*state.first.lock()).unwrap_or_else(Instant::now);
    let elapsed = state.last.lock().saturating_duration_since(first);
    Report {
        mode: "consume",
        topic: args.common.topic.clone(),
        workers: args.threads,
        size: state.size.load(Ordering::Relaxed) as usize,
        elapsed,
        ok: state.counters.ok.load(Ordering::Relaxed),
        failed: state.counters.failed.load(Ordering::Relaxed),
        bytes: state.counters.bytes.load(Ordering::Relaxed),
        latencies: vec![
            ("born→consume", state.born.lock().clone()),
            ("store→consume", state.stored.lock().clone()),
        ],
    }
    .print(args.common.json);
    Ok(())
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Produce(a) => run_produce(a, None).await,
        BenchCommand::Batch(b) => {
            if b.batch == 0 {
                bail!("-b/--batchSize must be at least 1");
            }
            run_produce(b.produce, Some((b.batch, b.property_size))).await
        }
        BenchCommand::Consume(c) => run_consume(c).await,
    }
}
