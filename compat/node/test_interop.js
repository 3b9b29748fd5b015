'use strict';
// Interop test: ali-ons (pure-JS RocketMQ 4.x remoting client, npm) against `ferrymq standalone`.
//
// Starts ferrymq from $FERRYMQ_BIN (or ../../target/{debug,release}/ferrymq) on free loopback
// ports with a private store, runs the scenarios, kills the broker, prints
// "interop: N passed, N failed" and exits non-zero on any failure. Bounded by INTEROP_TIMEOUT
// seconds (default 300). INTEROP_KEEP=1 keeps the work directory (always kept on failure);
// INTEROP_ONLY=a,b runs a subset; FERRYMQ_LOG sets the broker's RUST_LOG.
//
// ali-ons quirks (client-side, same against Apache RocketMQ): it needs an `httpclient` option even
// with `nameSrv` (only used for the Aliyun address server), and its producer does not fall back to
// TBW102 when a topic has no route, so topics are created first with its own createTopic (code 17).

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrymq-nodeinterop-'));
process.env.HOME = WORK; // ali-ons keeps logs / local offsets under $HOME
const { Producer, Consumer, Message } = require('ali-ons');

const TIMEOUT = Number(process.env.INTEROP_TIMEOUT || 300) * 1000;
const T0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - T0) / 1000).toFixed(2).padStart(7)}]`, ...a);
const sleep = ms => new Promise(r => setTimeout(r, ms));
const RID = Math.floor(Math.random() * 0xffffffff).toString(16);

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

class Broker {
  async init() {
    this.nsPort = await freePort(false);
    this.port = await freePort(true);
    this.haPort = await freePort(false);
    this.ns = `127.0.0.1:${this.nsPort}`;
    this.addr = `127.0.0.1:${this.port}`;
    this.conf = path.join(WORK, 'broker.conf');
    fs.writeFileSync(this.conf, `brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\nlistenPort=${this.port}\n` +
      `brokerIP1=127.0.0.1\nstorePathRootDir=${path.join(WORK, 'store')}\nmappedFileSizeCommitLog=67108864\n` +
      `haListenPort=${this.haPort}\n`);
    this.starts = 0;
  }

  async start() {
    this.starts++;
    const logPath = path.join(WORK, `broker-${this.starts}.log`);
    const fd = fs.openSync(logPath, 'w');
    this.proc = spawn(ferrymqBin(), [ 'standalone', '-c', this.conf, '--namesrv-listen', this.ns ],
      { stdio: [ 'ignore', fd, fd ], env: Object.assign({}, process.env, { RUST_LOG: process.env.FERRYMQ_LOG || 'info' }) });
    let exited = null;
    this.proc.once('exit', code => { exited = code; });
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (exited !== null) throw new Error(`ferrymq exited with ${exited}, see ${logPath}`);
      if (fs.readFileSync(logPath, 'utf8').includes('standalone ready') && !await portFree(this.port)) {
        log(`ferrymq up: namesrv ${this.ns} broker ${this.addr} (start #${this.starts})`);
        return;
      }
      await sleep(100);
    }
    throw new Error(`ferrymq not ready in 30 s, see ${logPath}`);
  }

  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    const done = new Promise(r => p.once('exit', r));
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 20000);
    await done;
    clearTimeout(t);
  }
}

const broker = new Broker();
const common = () => ({ nameSrv: broker.ns, accessKeyId: 'ak', accessKeySecret: 'sk', httpclient: {} });
const clients = [];

async function producer(group) {
  const p = new Producer(Object.assign({ producerGroup: group }, common()));
  // errors of consumers in the same process are re-emitted on the producer: filter as below
  p.on('error', e => { if (!/%RETRY%/.test(e.message)) log('producer error:', e.message.split('\n')[0]); });
  await p.ready();
  return p;
}

async function createTopic(p, topic, queues = 4) {
  await p._mqClient.createTopic(broker.addr, 'TBW102', { topicName: topic, readQueueNums: queues, writeQueueNums: queues,
    perm: 6, topicFilterType: 'SINGLE_TAG', topicSysFlag: 0, order: false }, 5000);
  // the broker registers the new topic with the name server at once; wait until routable
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      await p._mqClient.getTopicRouteInfoFromNameServer(topic, 3000);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(200);
    }
  }
}

function normalise(msg) {
  return { topic: msg.topic, body: msg.body.toString('utf8'), tags: msg.tags, keys: msg.keys,
    uprop: msg.properties.uprop, utf: msg.properties.utf, queueId: msg.queueId, queueOffset: Number(msg.queueOffset),
    reconsumeTimes: msg.reconsumeTimes };
}

// handler(msg) -> true (success) / false (retry)
async function consumer(group, topic, expr, handler, extra = {}) {
  const c = new Consumer(Object.assign({ consumerGroup: group }, common(), extra));
  // The retry topic %RETRY%group only gets a route after the first heartbeat; ali-ons asks for
  // it before that and reports TOPIC_NOT_EXIST once (the same happens with Apache RocketMQ).
  c.on('error', e => { if (!/%RETRY%/.test(e.message)) log('consumer error:', e.message.split('\n')[0]); });
  c.subscribe(topic, expr, async msg => {
    if (!handler(normalise(msg))) return Consumer.ACTION_RETRY;
  });
  await c.ready();
  clients.push(c);
  return c;
}

async function waitFor(pred, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pred()) return true;
    await sleep(200);
  }
  return pred();
}

async function consume(group, topic, want, opts = {}) {
  const got = [];
  const c = await consumer(group, topic, opts.expr || '*', m => { got.push(m); return true; });
  await waitFor(() => got.length >= want, opts.ms || 30000);
  await sleep(opts.settle || 2000);
  await c.close();
  return got;
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function expectExactly(got, sent, what) {
  const byBody = new Map();
  for (const g of got) byBody.set(g.body, (byBody.get(g.body) || []).concat([ g ]));
  const sentBodies = new Set(sent.map(s => s.body));
  const missing = sent.filter(s => !byBody.has(s.body)).map(s => s.body.slice(0, 40));
  const dups = [ ...byBody.entries() ].filter(([ , v ]) => v.length > 1).map(([ k ]) => k.slice(0, 40));
  const extra = [ ...byBody.keys() ].filter(b => !sentBodies.has(b)).map(b => b.slice(0, 40));
  check(!missing.length, `${what}: ${missing.length} missing: ${JSON.stringify(missing.slice(0, 10))}`);
  check(!dups.length, `${what}: delivered more than once: ${JSON.stringify(dups.slice(0, 10))}`);
  check(!extra.length, `${what}: unexpected: ${JSON.stringify(extra.slice(0, 10))}`);
  for (const s of sent) {
    const g = byBody.get(s.body)[0];
    for (const k of [ 'topic', 'tags', 'keys', 'uprop', 'utf' ]) {
      if (k in s) check(g[k] === s[k], `${what}: ${s.body.slice(0, 30)} field ${k}: got ${JSON.stringify(g[k])}, sent ${JSON.stringify(s[k])}`);
    }
  }
}

const TOPIC = `NodeInterop_${RID}`;
const GROUP = `CG_NodeInterop_${RID}`;
const SENT = [];

function spec(i, tags, body) {
  return { topic: TOPIC, tags, keys: `K${i} KEY-${i}`, uprop: `v${i}`, utf: 'ü=é;€ x', body: body || `node-${i}-${RID}` };
}

async function sendSpecs(p, specs) {
  for (const s of specs) {
    const m = new Message(s.topic, s.tags, s.body);
    m.keys = s.keys.split(' ');
    m.properties.uprop = s.uprop;
    m.properties.utf = s.utf;
    const r = await p.send(m);
    check(r.sendStatus === 'SEND_OK' && r.msgId, `send result ${JSON.stringify(r)}`);
    SENT.push(s);
  }
}

const scenarios = {
  async produce_consume() {
    const p = await producer(`PG_NodeInterop_${RID}`);
    await createTopic(p, TOPIC);
    const specs = [];
    for (let i = 0; i < 10; i++) specs.push(spec(i, i % 2 ? 'TagB' : 'TagA'));
    specs.push(spec(10, 'TagA', `big-${RID}-` + 'z'.repeat(9000))); // > 4 KiB: compressed by ali-ons
    await sendSpecs(p, specs);
    await p.close();
    expectExactly(await consume(GROUP, TOPIC, SENT.length), SENT, 'first consumption');
  },
  async consumer_restart() {
    const p = await producer(`PG_NodeInterop_${RID}`);
    const fresh = [ 100, 101, 102 ].map(i => spec(i, 'TagA'));
    await sendSpecs(p, fresh);
    await p.close();
    expectExactly(await consume(GROUP, TOPIC, fresh.length, { settle: 3000 }), fresh,
      'consumer restart (must resume at the committed offset)');
  },
  async broker_restart() {
    await broker.stop();
    await broker.start();
    const p = await producer(`PG_NodeInterop_${RID}`);
    const fresh = [ 200, 201, 202 ].map(i => spec(i, 'TagB'));
    await sendSpecs(p, fresh);
    await p.close();
    expectExactly(await consume(GROUP, TOPIC, fresh.length, { settle: 3000 }), fresh,
      'after broker restart (offsets must survive)');
    expectExactly(await consume(`CG_NodeAll_${RID}`, TOPIC, SENT.length, { settle: 3000 }), SENT,
      'whole topic by a new group after broker restart');
  },
  async tag_filter() {
    const want = SENT.filter(s => s.tags === 'TagB');
    expectExactly(await consume(`CG_NodeTagB_${RID}`, TOPIC, want.length, { expr: 'TagB', settle: 3000 }), want, 'tag filter TagB');
  },
  async sql92_filter() {
    const topic = `NodeSql_${RID}`;
    const p = await producer(`PG_NodeSql_${RID}`);
    await createTopic(p, topic);
    for (let i = 0; i < 10; i++) {
      const m = new Message(topic, 'S', `sql-${i}`);
      m.properties.a = String(i);
      m.properties.b = i % 2 ? 'x' : 'y';
      await p.send(m);
    }
    await p.close();
    const got = await consume(`CG_NodeSql_${RID}`, topic, 2,
      { expr: { expressionType: 'SQL92', subString: 'a > 5 AND b = \'x\'' }, settle: 3000 });
    check(JSON.stringify(got.map(g => g.body).sort()) === JSON.stringify([ 'sql-7', 'sql-9' ]),
      `SQL92 a > 5 AND b = 'x': got ${JSON.stringify(got.map(g => g.body))}`);
  },
  async retry() {
    const topic = `NodeRetry_${RID}`;
    const p = await producer(`PG_NodeRetry_${RID}`);
    await createTopic(p, topic);
    const seen = [];
    const c = await consumer(`CG_NodeRetry_${RID}`, topic, '*', m => { seen.push(m); return seen.length > 1; });
    await sleep(3000);
    const m = new Message(topic, 'R', `retry-${RID}`);
    m.keys = [ 'rk' ];
    m.properties.uprop = 'rv';
    await p.send(m);
    await p.close();
    // RECONSUME_LATER -> CONSUMER_SEND_MSG_BACK -> delay level 3 (10 s) -> %RETRY% topic, whose
    // route ali-ons only picks up on its 30 s name-server poll: ~30 s in all
    await waitFor(() => seen.length >= 2, 75000);
    await sleep(1000);
    await c.close();
    check(seen.length === 2, `retry: ${seen.length} deliveries, want 2`);
    check(seen[1].reconsumeTimes === 1, `retry: reconsumeTimes ${seen[1].reconsumeTimes}`);
    for (const k of [ 'body', 'tags', 'keys', 'uprop' ]) check(seen[1][k] === seen[0][k], `retry: field ${k} changed: ${seen[0][k]} -> ${seen[1][k]}`);
    check(seen[1].topic === topic, `retry: redelivered with topic ${seen[1].topic}`);
  },
  async delay() {
    const topic = `NodeDelay_${RID}`;
    const p = await producer(`PG_NodeDelay_${RID}`);
    await createTopic(p, topic);
    const seen = [];
    const c = await consumer(`CG_NodeDelay_${RID}`, topic, '*', m => { seen.push([ Date.now(), m ]); return true; });
    await sleep(3000);
    const m = new Message(topic, 'D', `delayed-${RID}`);
    m.delayTimeLevel = 2; // 5 s
    const t0 = Date.now();
    await p.send(m);
    await p.close();
    await waitFor(() => seen.length >= 1, 30000);
    await c.close();
    check(seen.length === 1, `delay: ${seen.length} deliveries`);
    const dt = (seen[0][0] - t0) / 1000;
    check(dt >= 4, `delay: level 2 (5 s) delivered after ${dt} s`);
  },
  async broadcast() {
    const topic = `NodeBcast_${RID}`;
    const p = await producer(`PG_NodeBcast_${RID}`);
    await createTopic(p, topic);
    const a = [], b = [];
    const ca = await consumer(`CG_NodeBcast_${RID}`, topic, '*', m => { a.push(m.body); return true; }, { isBroadcast: true, instanceName: 'one' });
    const cb = await consumer(`CG_NodeBcast_${RID}`, topic, '*', m => { b.push(m.body); return true; }, { isBroadcast: true, instanceName: 'two' });
    await sleep(4000);
    const sent = [ 0, 1, 2, 3, 4 ].map(i => `bc-${i}-${RID}`);
    for (const body of sent) await p.send(new Message(topic, 'B', body));
    await p.close();
    await waitFor(() => a.length >= 5 && b.length >= 5, 30000);
    await ca.close();
    await cb.close();
    check(JSON.stringify(a.sort()) === JSON.stringify(sent), `broadcast: one got ${JSON.stringify(a)}`);
    check(JSON.stringify(b.sort()) === JSON.stringify(sent), `broadcast: two got ${JSON.stringify(b)}`);
  },
};

async function main() {
  const watchdog = setTimeout(() => {
    console.log(`INTEROP TIMEOUT after ${TIMEOUT / 1000} s; work dir kept: ${WORK}`);
    if (broker.proc) broker.proc.kill('SIGKILL');
    process.exit(3);
  }, TIMEOUT);
  const only = new Set((process.env.INTEROP_ONLY || '').split(',').filter(Boolean));
  let passed = 0;
  const failed = [];
  await broker.init();
  try {
    await broker.start();
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
    }
  } finally {
    for (const c of clients) { try { await c.close(); } catch (e) { /* already closed */ } }
    await broker.stop();
  }
  clearTimeout(watchdog);
  console.log('node interop, client ali-ons');
  console.log(`interop: ${passed} passed, ${failed.length} failed`);
  if (failed.length) console.log(`failed: ${failed.join(', ')}; broker logs kept in ${WORK}`);
  else if (!process.env.INTEROP_KEEP) fs.rmSync(WORK, { recursive: true, force: true });
  process.exit(failed.length ? 1 : 0);
}

main().catch(async e => {
  console.error('interop harness error:', e);
  await broker.stop('SIGKILL');
  console.log(`interop: 0 passed, 1 failed; work dir ${WORK}`);
  process.exit(1);
});
