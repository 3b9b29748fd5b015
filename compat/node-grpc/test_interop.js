'use strict';
// Interop test: Apache RocketMQ's official 5.x gRPC Node.js SDK (npm rocketmq-client-nodejs,
// pure JS on @grpc/grpc-js) against a real `ferrymq standalone`.
//
// Starts ferrymq from $FERRYMQ_BIN (or ../../target/{debug,release}/ferrymq) on free loopback
// ports (NameServer, broker, gRPC endpoint) with a private store, creates the topics with
// `ferrymq admin updateTopic` (gRPC clients never auto-create topics), runs the scenarios through
// the gRPC endpoint only, kills the server, prints "interop: N passed, N failed" and exits
// non-zero on any failure. Bounded by INTEROP_TIMEOUT seconds (default 110); every wait has its
// own deadline. INTEROP_KEEP=1 keeps the work directory with the store (on failure the server log
// and SDK log are kept); INTEROP_ONLY=a,b runs a subset; FERRYMQ_LOG sets the server's RUST_LOG;
// INTEROP_SDK_DEBUG=1 adds the SDK's debug lines to its log.

const { spawn, execFile } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const util = require('util');

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrymq-nodegrpc-'));
process.env.HOME = WORK; // anything the SDK writes under $HOME stays in WORK
const { Producer, SimpleConsumer, PushConsumer, ConsumeResult, FilterExpression } = require('rocketmq-client-nodejs');
const { FilterType, TransactionResolution } = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb');
const SDK_VERSION = require('rocketmq-client-nodejs/package.json').version;

const TIMEOUT = Number(process.env.INTEROP_TIMEOUT || 110) * 1000;
const T0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(2).padStart(7)}]`, ...a);
const sleep = ms => new Promise(r => setTimeout(r, ms));
const RID = Math.floor(Math.random() * 0xffffffff).toString(16);
const AWAIT_MS = 5000; // SimpleConsumer long polling (the server's minimum)

// The SDK's default logger is an egg-logger at INFO in ~/logs/rocketmq/; this one writes the same
// lines (plus debug ones on request) to one file in WORK.
const sdkLog = fs.createWriteStream(path.join(WORK, 'rocketmq_client_nodejs.log'));
const sdkLogger = {};
for (const level of [ 'info', 'warn', 'error', 'debug' ]) {
  // debug is optional in the SDK's ILogger but Transaction calls it unconditionally: keep a no-op
  sdkLogger[level] = level === 'debug' && !process.env.INTEROP_SDK_DEBUG ? () => {}
    : (...a) => sdkLog.write(`${new Date().toISOString()} ${level.toUpperCase()} ${util.format(...a)}\n`);
}

// On failure the logs are kept, not the store's pre-allocated commit-log segments.
function dropStore() {
  if (!process.env.INTEROP_KEEP) fs.rmSync(path.join(WORK, 'store'), { recursive: true, force: true });
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// ------------------------------------------------------------------------------------ server

function ferrymqBin() {
  if (process.env.FERRYMQ_BIN) return process.env.FERRYMQ_BIN;
  const cands = [];
  for (const p of [ 'debug', 'release' ]) {
    cands.push(path.join(__dirname, '..', '..', 'target', p, 'ferrymq'));
    if (process.env.CARGO_TARGET_DIR) cands.push(path.join(process.env.CARGO_TARGET_DIR, p, 'ferrymq'));
  }
  const found = cands.filter(c => fs.existsSync(c)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!found.length) throw new Error('ferrymq binary not found: set FERRYMQ_BIN');
  return found[0];
}

function portFree(p) {
  return new Promise(resolve => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function freePort(minus2) {
  for (let i = 0; i < 500; i++) {
    const p = 12000 + Math.floor(Math.random() * 20000);
    if (await portFree(p) && (!minus2 || await portFree(p - 2))) return p;
  }
  throw new Error('no free port');
}

function run(args) {
  return new Promise(resolve => execFile(ferrymqBin(), args, { timeout: 30000 },
    (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` })));
}

class Server {
  async init() {
    this.ns = `127.0.0.1:${await freePort(false)}`;
    this.port = await freePort(true); // the broker also binds listenPort - 2
    this.grpcPort = await freePort(false);
    this.haPort = await freePort(false);
    this.grpc = `127.0.0.1:${this.grpcPort}`;
    this.conf = path.join(WORK, 'broker.conf');
    // short transaction check-back so the orphaned-transaction scenario takes seconds;
    // a private HA port: the default, listenPort + 1, may belong to another server;
    // 64 MiB commit-log segments: the store pre-allocates (and writes) two of them
    fs.writeFileSync(this.conf, `brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\nlistenPort=${this.port}\n` +
      `brokerIP1=127.0.0.1\nstorePathRootDir=${path.join(WORK, 'store')}\ntransactionTimeOut=2000\ntransactionCheckInterval=1000\n` +
      `haListenPort=${this.haPort}\nmappedFileSizeCommitLog=67108864\n`);
    this.logPath = path.join(WORK, 'ferrymq.log');
  }

  async start() {
    const fd = fs.openSync(this.logPath, 'w');
    this.proc = spawn(ferrymqBin(), [ 'standalone', '-c', this.conf, '--namesrv-listen', this.ns, '--grpc-listen', this.grpc ],
      { stdio: [ 'ignore', fd, fd ], env: Object.assign({}, process.env, { RUST_LOG: process.env.FERRYMQ_LOG || 'info' }) });
    let exited = null;
    this.proc.once('exit', code => { exited = code; });
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (exited !== null) throw new Error(`ferrymq exited with ${exited}, see ${this.logPath}`);
      if (fs.readFileSync(this.logPath, 'utf8').includes('standalone ready') &&
          !await portFree(this.port) && !await portFree(this.grpcPort)) {
        log(`ferrymq up: namesrv ${this.ns} broker 127.0.0.1:${this.port} grpc ${this.grpc}`);
        return;
      }
      await sleep(100);
    }
    throw new Error(`ferrymq not ready in 30 s, see ${this.logPath}`);
  }

  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise(r => p.once('exit', r));
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 15000);
    await done;
    clearTimeout(t);
  }

  async admin(...args) {
    const r = await run([ 'admin', ...args, '-n', this.ns ]);
    check(r.ok, `ferrymq admin ${args.join(' ')} failed: ${r.out}`);
    return r.out;
  }

  async createTopic(topic, messageType) {
    const args = [ 'updateTopic', '-c', 'DefaultCluster', '-t', topic, '-r', '4', '-w', '4' ];
    if (messageType) args.push('-a', `+message.type=${messageType}`);
    await this.admin(...args);
    // the broker registers the topic with the name server at once; wait until it has a route
    const deadline = Date.now() + 15000;
    for (;;) {
      const r = await run([ 'admin', 'topicRoute', '-t', topic, '-n', this.ns ]);
      if (r.ok && r.out.includes('broker-a')) return;
      check(Date.now() < deadline, `topic ${topic} has no route 15 s after updateTopic`);
      await sleep(200);
    }
  }
}

const server = new Server();
const clients = new Set(); // started SDK clients, shut down at the end whatever happened
const lateShutdowns = []; // push consumers finishing their shutdown in the background

const options = extra => Object.assign({ endpoints: server.grpc, namespace: '', requestTimeout: 5000, logger: sdkLogger }, extra);

async function started(client) {
  await client.startup();
  clients.add(client);
  return client;
}

async function shutdown(client) {
  clients.delete(client);
  try {
    await client.shutdown();
  } catch (e) { // a failing shutdown must not hide the scenario's result
    log(`  (shutdown: ${e.message})`);
  }
}

// A push consumer's shutdown waits for its parked long poll (the server's 20 s): let it finish in
// the background while the next scenarios run. Messages received meanwhile are still consumed
// by our listener, which ignores them after the scenario.
function shutdownLater(client) {
  clients.delete(client);
  lateShutdowns.push(client.shutdown().catch(e => log(`  (shutdown: ${e.message})`)));
}

// ------------------------------------------------------------------------------------ helpers

function simpleConsumer(group, topic, expr = '*') {
  return started(new SimpleConsumer(options({ consumerGroup: group, subscriptions: new Map([[ topic, expr ]]), awaitDuration: AWAIT_MS })));
}

// Receives (acking unless ack is false) until pred(received) or timeout; returns [{ t, m }].
async function receiveUntil(consumer, pred, timeoutMs, { invisibleMs = 15000, ack = true, batch = 16 } = {}) {
  const got = [];
  const deadline = Date.now() + timeoutMs;
  while (!pred(got)) {
    check(Date.now() < deadline, `timed out after ${timeoutMs / 1000} s with ${got.length} message(s) received`);
    for (const m of await consumer.receive(batch, invisibleMs)) {
      got.push({ t: Date.now(), m });
      if (ack) await consumer.ack(m);
    }
  }
  return got;
}

async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    check(Date.now() < deadline, `timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

const sortedKeys = keys => [ ...keys ].sort().join(',');
const propsOf = map => JSON.stringify([ ...map.entries() ].sort());

function view(m) {
  return { topic: m.topic, body: m.body.toString('latin1'), tag: m.tag, keys: sortedKeys(m.keys), props: propsOf(m.properties),
    id: m.messageId, attempt: m.deliveryAttempt };
}

// got: MessageViews; sent: specs with body (latin1 string) and optional topic/tag/keys/props/id.
function expectExactly(got, sent, what) {
  const byBody = new Map();
  for (const m of got) {
    const v = view(m);
    byBody.set(v.body, (byBody.get(v.body) || []).concat([ v ]));
  }
  const want = new Map(sent.map(s => [ s.body, s ]));
  const short = b => b.slice(0, 40);
  const missing = [ ...want.keys() ].filter(b => !byBody.has(b)).map(short);
  const dups = [ ...byBody.entries() ].filter(([ , v ]) => v.length > 1).map(([ b ]) => short(b));
  const extra = [ ...byBody.keys() ].filter(b => !want.has(b)).map(short);
  check(!missing.length, `${what}: ${missing.length} missing: ${JSON.stringify(missing.slice(0, 5))}`);
  check(!dups.length, `${what}: delivered more than once: ${JSON.stringify(dups.slice(0, 5))}`);
  check(!extra.length, `${what}: unexpected: ${JSON.stringify(extra.slice(0, 5))}`);
  for (const [ b, s ] of want) {
    const g = byBody.get(b)[0];
    for (const k of [ 'topic', 'tag', 'keys', 'props', 'id' ]) {
      if (k in s) check(g[k] === s[k], `${what}: message ${short(b)} field ${k}: got ${g[k]}, sent ${s[k]}`);
    }
    check(g.attempt === 1, `${what}: message ${short(b)} deliveryAttempt ${g.attempt} on first delivery, want 1`);
  }
}

// ------------------------------------------------------------------------------------ scenarios

const TOPIC = `NodeGrpc_${RID}`;
const SENT = [];

class Checker {
  // Commits half messages with property resolve=commit; for the others the state stays unknown
  // (UNSPECIFIED: the SDK sends no EndTransaction), so the client decides.
  constructor() { this.checked = []; }
  async check(m) {
    this.checked.push(m);
    return m.properties.get('resolve') === 'commit' ? TransactionResolution.COMMIT : TransactionResolution.TRANSACTION_RESOLUTION_UNSPECIFIED;
  }
}

const scenarios = {
  async send_receive() {
    await server.createTopic(TOPIC, 'NORMAL');
    const p = await started(new Producer(options({ topics: [ TOPIC ] })));
    for (let i = 0; i < 20; i++) {
      const body = `node-grpc-${i}-${RID}` + (i === 7 ? 'z'.repeat(5000) : '');
      const keys = [ `K${i}`, `KEY-${i}` ];
      const props = new Map([[ 'uprop', `v${i}` ], [ 'utf', 'ü=é;€ x' ], [ 'n', String(i) ]]);
      const tag = i % 2 ? 'TagB' : 'TagA';
      const r = await p.send({ topic: TOPIC, tag, keys, properties: props, body: Buffer.from(body, 'utf8') });
      check(r.messageId, `send receipt without message id: ${JSON.stringify(r)}`);
      SENT.push({ topic: TOPIC, body: Buffer.from(body, 'utf8').toString('latin1'), tag, keys: sortedKeys(keys), props: propsOf(props), id: r.messageId });
    }
    await shutdown(p);
    const c = await simpleConsumer(`CG_NodeGrpc_${RID}`, TOPIC);
    const got = await receiveUntil(c, g => g.length >= SENT.length, 30000);
    await shutdown(c);
    expectExactly(got.map(x => x.m), SENT, 'SimpleConsumer');
  },

  async tag_filter() {
    const want = SENT.filter(s => s.tag === 'TagB');
    const c = await simpleConsumer(`CG_NodeGrpcTagB_${RID}`, TOPIC, 'TagB');
    const got = await receiveUntil(c, g => g.length >= want.length, 30000);
    await shutdown(c);
    expectExactly(got.map(x => x.m), want, 'tag filter TagB');
  },

  async sql_filter() {
    // user property n = 0..19 on the messages of send_receive
    const want = SENT.filter(s => JSON.parse(s.props).some(([ k, v ]) => k === 'n' && Number(v) > 15) && s.tag === 'TagA');
    const c = await started(new SimpleConsumer(options({ consumerGroup: `CG_NodeGrpcSql_${RID}`, awaitDuration: AWAIT_MS,
      subscriptions: new Map([[ TOPIC, new FilterExpression('n > 15 AND TAGS = \'TagA\'', FilterType.SQL) ]]) })));
    const got = await receiveUntil(c, g => g.length >= want.length, 30000);
    await shutdown(c);
    expectExactly(got.map(x => x.m), want, 'SQL92 filter n > 15 AND TAGS = \'TagA\'');
  },

  async redelivery() {
    const topic = `NodeGrpcRedeliver_${RID}`;
    await server.createTopic(topic, 'NORMAL');
    const p = await started(new Producer(options({ topics: [ topic ] })));
    const id = (await p.send({ topic, tag: 'R', keys: [ 'rk' ], properties: new Map([[ 'p', '1' ]]), body: Buffer.from('redeliver-me') })).messageId;
    await shutdown(p);
    const c = await simpleConsumer(`CG_NodeGrpcRedeliver_${RID}`, topic);
    const first = (await receiveUntil(c, g => g.length >= 1, 20000, { invisibleMs: 10000, ack: false }))[0];
    check(first.m.messageId === id && first.m.deliveryAttempt === 1,
      `first delivery: id ${first.m.messageId} attempt ${first.m.deliveryAttempt}, want ${id} attempt 1`);
    // not acked: must come back once the 10 s invisible time is over, with attempt 2
    const again = (await receiveUntil(c, g => g.length >= 1, 30000, { invisibleMs: 10000, ack: false }))[0];
    await c.ack(again.m);
    await shutdown(c);
    const m = again.m;
    const dt = (again.t - first.t) / 1000;
    check(m.messageId === id, `redelivered a different message ${m.messageId} (want ${id})`);
    check(m.deliveryAttempt === 2, `redelivery deliveryAttempt ${m.deliveryAttempt}, want 2`);
    check(dt >= 9, `redelivered after ${dt} s, before the 10 s invisible time`);
    check(m.body.toString() === 'redeliver-me' && m.tag === 'R' && sortedKeys(m.keys) === 'rk' && m.properties.get('p') === '1',
      `redelivered message changed: ${JSON.stringify(view(m))}`);
    log(`  redelivered after ${dt.toFixed(1)} s with deliveryAttempt 2`);
  },

  async change_invisible() {
    const topic = `NodeGrpcInvisible_${RID}`;
    await server.createTopic(topic, 'NORMAL');
    const p = await started(new Producer(options({ topics: [ topic ] })));
    const id = (await p.send({ topic, tag: 'C', body: Buffer.from('change-invisible') })).messageId;
    await shutdown(p);
    const c = await simpleConsumer(`CG_NodeGrpcInvisible_${RID}`, topic);
    const first = (await receiveUntil(c, g => g.length >= 1, 20000, { invisibleMs: 60000, ack: false }))[0];
    const old = first.m.receiptHandle;
    await c.changeInvisibleDuration(first.m, 2000); // 60 s -> 2 s from now; the SDK takes the new handle
    check(first.m.receiptHandle && first.m.receiptHandle !== old, 'ChangeInvisibleDuration returned no new receipt handle');
    const again = (await receiveUntil(c, g => g.length >= 1, 20000, { invisibleMs: 60000, ack: false }))[0];
    const dt = (again.t - first.t) / 1000;
    check(again.m.messageId === id, `got ${again.m.messageId}, want ${id}`);
    check(again.m.deliveryAttempt === 2, `deliveryAttempt ${again.m.deliveryAttempt} after ChangeInvisibleDuration, want 2`);
    check(dt < 30, `redelivered after ${dt} s: the 60 s invisible time was not shortened`);
    // extending works too, and the handle from the change acks the message
    await c.changeInvisibleDuration(again.m, 30000);
    await c.ack(again.m);
    await shutdown(c);
    log(`  shortened to 2 s: redelivered after ${dt.toFixed(1)} s`);
  },

  async push_consumer() {
    const topic = `NodeGrpcPush_${RID}`;
    await server.createTopic(topic, 'NORMAL');
    const got = [];
    let failed = false;
    let open = true;
    const c = await started(new PushConsumer(options({
      consumerGroup: `CG_NodeGrpcPush_${RID}`, subscriptions: new Map([[ topic, '*' ]]),
      messageListener: {
        async consume(m) {
          if (!open) return ConsumeResult.SUCCESS;
          got.push({ t: Date.now(), m });
          if (m.body.toString() === 'push-3' && !failed) {
            failed = true;
            return ConsumeResult.FAILURE;
          }
          return ConsumeResult.SUCCESS;
        },
      },
    })));
    const p = await started(new Producer(options({ topics: [ topic ] })));
    const sent = [];
    for (let i = 0; i < 10; i++) {
      const keys = [ `pk${i}` ];
      const props = new Map([[ 'i', String(i) ]]);
      const r = await p.send({ topic, tag: 'P', keys, properties: props, body: Buffer.from(`push-${i}`) });
      sent.push({ body: `push-${i}`, tag: 'P', keys: sortedKeys(keys), props: propsOf(props), id: r.messageId });
    }
    await shutdown(p);
    // 10 first deliveries + the FAILURE redelivered (nack = ChangeInvisibleDuration by the SDK)
    try {
      await waitFor(() => got.length >= 11, 40000, '10 messages + 1 redelivery in the push consumer');
    } finally {
      open = false;
      shutdownLater(c);
    }
    const firsts = got.filter(x => !(x.m.body.toString() === 'push-3' && x.m.deliveryAttempt !== 1)).map(x => x.m);
    expectExactly(firsts, sent, 'PushConsumer');
    const retried = got.filter(x => x.m.body.toString() === 'push-3');
    check(retried.length === 2, `push-3 delivered ${retried.length} times, want 2 (FAILURE once)`);
    check(retried[1].m.deliveryAttempt === 2, `push-3 redelivery attempt ${retried[1].m.deliveryAttempt}, want 2`);
    // SDK 1.0.8 ignores a customized backoff in the server's Settings (Java proxy default too):
    // it nacks with ChangeInvisibleDuration(0), so the redelivery is immediate.
    log(`  FAILURE redelivered after ${((retried[1].t - retried[0].t) / 1000).toFixed(1)} s`);
  },

  async fifo() {
    const topic = `NodeGrpcFifo_${RID}`;
    await server.createTopic(topic, 'FIFO');
    const p = await started(new Producer(options({ topics: [ topic ] })));
    const sent = {};
    for (let i = 0; i < 20; i++) {
      const g = `group-${i % 3}`;
      (sent[g] = sent[g] || []).push(i);
      await p.send({ topic, tag: 'F', messageGroup: g, properties: new Map([[ 'seq', String(i) ]]), body: Buffer.from(`fifo-${i}`) });
    }
    await shutdown(p);
    const c = await simpleConsumer(`CG_NodeGrpcFifo_${RID}`, topic);
    const got = await receiveUntil(c, g => g.length >= 20, 30000);
    await shutdown(c);
    const order = {};
    for (const { m } of got) {
      check(m.messageGroup, `FIFO message ${m.body} delivered without messageGroup`);
      (order[m.messageGroup] = order[m.messageGroup] || []).push(Number(m.properties.get('seq')));
    }
    const norm = o => JSON.stringify(Object.keys(o).sort().map(k => [ k, o[k] ]));
    check(norm(order) === norm(sent), `per-group order: got ${norm(order)}, sent ${norm(sent)}`);
  },

  // PushConsumer of an orderly group: the server's Settings must say fifo, and messages of one
  // group must reach the listener one after another in send order.
  async fifo_push() {
    const topic = `NodeGrpcFifoPush_${RID}`;
    const group = `CG_NodeGrpcFifoPush_${RID}`;
    await server.createTopic(topic, 'FIFO');
    await server.admin('updateSubGroup', '-c', 'DefaultCluster', '-g', group, '-o', 'true');
    const seen = [];
    let open = true;
    const c = await started(new PushConsumer(options({
      consumerGroup: group, subscriptions: new Map([[ topic, '*' ]]),
      messageListener: {
        async consume(m) {
          if (!open) return ConsumeResult.SUCCESS;
          const seq = Number(m.properties.get('seq'));
          seen.push(seq);
          await sleep(20 * (10 - seq)); // earlier ones take longer
          return ConsumeResult.SUCCESS;
        },
      },
    })));
    try {
      check(c.getPushConsumerSettings().isFifo(), `PushConsumer of orderly group ${group}: the server's Settings answer has ` +
        'subscription.fifo=false (Java proxy: fifo = group config consumeMessageOrderly), so the SDK consumes concurrently');
      const p = await started(new Producer(options({ topics: [ topic ] })));
      for (let i = 0; i < 10; i++) {
        await p.send({ topic, tag: 'F', messageGroup: 'one-group', properties: new Map([[ 'seq', String(i) ]]), body: Buffer.from(`fifo-push-${i}`) });
      }
      await shutdown(p);
      await waitFor(() => seen.length >= 10, 30000, '10 FIFO messages in the push consumer');
    } finally {
      open = false;
      shutdownLater(c);
    }
    check(JSON.stringify(seen.slice(0, 10)) === JSON.stringify([ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 ]), `orderly push consumer saw ${JSON.stringify(seen)}`);
  },

  async delay() {
    const topic = `NodeGrpcDelay_${RID}`;
    await server.createTopic(topic, 'DELAY');
    const c = await simpleConsumer(`CG_NodeGrpcDelay_${RID}`, topic);
    const p = await started(new Producer(options({ topics: [ topic ] })));
    const deliverAt = new Date(Date.now() + 4000);
    const id = (await p.send({ topic, tag: 'D', deliveryTimestamp: deliverAt, body: Buffer.from('delayed') })).messageId;
    await shutdown(p);
    const { t, m } = (await receiveUntil(c, g => g.length >= 1, 25000))[0];
    await shutdown(c);
    check(m.messageId === id, `got ${m.messageId}, want ${id}`);
    const early = deliverAt.getTime() - t;
    // RocketMQ's timer rounds the due time down to timerPrecisionMs (1 s), so delivery up to 1 s
    // early is correct.
    check(early < 1100, `delivered ${early} ms before its delivery timestamp`);
    check(-early < 10000, `delivered ${-early / 1000} s after its delivery timestamp`);
    check(m.deliveryTimestamp && m.deliveryTimestamp.getTime() === deliverAt.getTime(),
      `deliveryTimestamp ${m.deliveryTimestamp && m.deliveryTimestamp.toISOString()}, sent ${deliverAt.toISOString()}`);
    log(`  delivered ${(-early / 1000).toFixed(2)} s after the delivery timestamp`);
  },

  async transaction() {
    const topic = `NodeGrpcTx_${RID}`;
    await server.createTopic(topic, 'TRANSACTION');
    const checker = new Checker();
    const p = await started(new Producer(options({ topics: [ topic ], checker })));
    const c = await simpleConsumer(`CG_NodeGrpcTx_${RID}`, topic);
    let tx = p.beginTransaction();
    await p.send({ topic, tag: 'T', keys: [ 'txr' ], properties: new Map([[ 'resolve', 'no' ]]), body: Buffer.from('tx-rollback') }, tx);
    await tx.rollback();
    tx = p.beginTransaction();
    const committed = await p.send({ topic, tag: 'T', keys: [ 'txc' ], properties: new Map([[ 'resolve', 'yes' ]]), body: Buffer.from('tx-commit') }, tx);
    check(committed.transactionId, 'no transaction id in the send receipt');
    // neither the open half message nor the rolled-back one may be visible
    const early = await c.receive(16, 15000);
    check(!early.length, `visible before commit: ${JSON.stringify(early.map(m => m.body.toString()))}`);
    await tx.commit();
    const got = await receiveUntil(c, g => g.some(x => x.m.body.toString() === 'tx-commit'), 20000);
    await shutdown(c);
    await shutdown(p);
    const bodies = got.map(x => x.m.body.toString());
    check(JSON.stringify(bodies) === '["tx-commit"]', `after commit got ${JSON.stringify(bodies)}, want ["tx-commit"]`);
    const m = got[0].m;
    check(m.messageId === committed.messageId && m.tag === 'T' && sortedKeys(m.keys) === 'txc', `committed message changed: ${JSON.stringify(view(m))}`);
    const asked = checker.checked.map(x => x.body.toString());
    check(!asked.includes('tx-rollback'), `the server asked the checker about a rolled-back transaction: ${JSON.stringify(asked)}`);
    log(`  check-backs while the half message was open (answered 'unknown'): ${asked.filter(b => b === 'tx-commit').length}`);
  },

  // An orphaned half message (never ended by the client) is resolved by the server's check-back:
  // CHECK_TRANSACTION_STATE relayed as RecoverOrphanedTransactionCommand on the Telemetry stream.
  async transaction_checkback() {
    const topic = `NodeGrpcTxCheck_${RID}`;
    await server.createTopic(topic, 'TRANSACTION');
    const checker = new Checker();
    const p = await started(new Producer(options({ topics: [ topic ], checker })));
    const c = await simpleConsumer(`CG_NodeGrpcTxCheck_${RID}`, topic);
    const tx = p.beginTransaction();
    const r = await p.send({ topic, tag: 'O', properties: new Map([[ 'resolve', 'commit' ]]), body: Buffer.from('orphan-commit') }, tx);
    const got = await receiveUntil(c, g => g.length >= 1, 40000);
    await shutdown(c);
    await shutdown(p);
    const m = got[0].m;
    check(m.body.toString() === 'orphan-commit' && m.messageId === r.messageId, `got ${JSON.stringify(view(m))}`);
    check(checker.checked.length && checker.checked[0].body.toString() === 'orphan-commit' &&
      checker.checked[0].properties.get('resolve') === 'commit', `checker saw ${JSON.stringify(checker.checked.map(view))}`);
  },
};

async function main() {
  const watchdog = setTimeout(() => {
    console.log(`INTEROP TIMEOUT after ${TIMEOUT / 1000} s; logs kept in ${WORK}`);
    if (server.proc) server.proc.kill('SIGKILL');
    dropStore();
    process.exit(3);
  }, TIMEOUT);
  const only = new Set((process.env.INTEROP_ONLY || '').split(',').filter(Boolean));
  let passed = 0;
  const failed = [];
  log(`rocketmq-client-nodejs ${SDK_VERSION}, work dir ${WORK}`);
  await server.init();
  try {
    await server.start();
    for (const [ name, fn ] of Object.entries(scenarios)) {
      if (only.size && !only.has(name)) continue;
      const t = Date.now();
      try {
        await fn();
        log(`PASS ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
        passed++;
      } catch (e) {
        log(`FAIL ${name} (${((Date.now() - t) / 1000).toFixed(1)} s): ${e.stack || e}`);
        failed.push(name);
      }
      for (const c of [ ...clients ]) await shutdown(c); // whatever a failed scenario left running
    }
  } finally {
    for (const c of [ ...clients ]) await shutdown(c);
    // bounded: a push consumer's shutdown waits at most for its parked poll
    await Promise.race([ Promise.all(lateShutdowns), sleep(25000) ]);
    await server.stop();
  }
  clearTimeout(watchdog);
  console.log(`node gRPC interop, rocketmq-client-nodejs ${SDK_VERSION}`);
  console.log(`interop: ${passed} passed, ${failed.length} failed`);
  if (process.env.INTEROP_KEEP) console.log(`work dir kept: ${WORK}`);
  else if (failed.length) {
    dropStore();
    console.log(`failed: ${failed.join(', ')}; server log and SDK log kept in ${WORK}`);
  } else fs.rmSync(WORK, { recursive: true, force: true });
  process.exit(failed.length ? 1 : 0);
}

const onSignal = async sig => {
  await server.stop('SIGKILL');
  dropStore();
  console.log(`interrupted by ${sig}; logs kept in ${WORK}`);
  process.exit(2);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

main().catch(async e => {
  console.error('interop harness error:', e);
  await server.stop('SIGKILL');
  dropStore();
  console.log(`interop: 0 passed, 1 failed; work dir ${WORK}`);
  process.exit(1);
});
