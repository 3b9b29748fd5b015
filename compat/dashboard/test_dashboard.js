// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core
// against a real `ferrymq standalone` process (FERRYMQ_BIN). Checks that the pages load, a
// topic is created from the UI, a message sent by `ferrymq admin sendMessage` is found by
// key with its trace, and that with ACL on the page asks for sign-in, refuses a wrong secret
// and works after a right one. Screenshots of every step go to DASHBOARD_SCREENSHOTS
// (default target/dashboard-screenshots) and are checked to be real, non-blank PNGs.
"use strict";

const { chromium } = require("playwright-core");
const { spawn, execFileSync } = require("child_process");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const BIN = process.env.FERRYMQ_BIN || path.join(__dirname, "../../target/debug/ferrymq");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.DASHBOARD_SCREENSHOTS || path.join(__dirname, "../../target/dashboard-screenshots");

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startStandalone(name, extraConf) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ferrymq-dash-${name}-`));
  const [ns, broker, http, ha] = [await freePort(), await freePort(), await freePort(), await freePort()];
  // The HA port is listenPort + 1 and the fast port listenPort - 2: keep them free too.
  const conf = path.join(dir, "broker.conf");
  dirs.push(dir);
  // Small commit-log segments: the default 1 GiB would be allocated up front.
  fs.writeFileSync(conf, [`storePathRootDir=${dir}/store`, `listenPort=${broker}`, `haListenPort=${ha}`,
    "mappedFileSizeCommitLog=16777216", ...extraConf(dir)].join("\n") + "\n");
  const log = fs.openSync(path.join(dir, "ferrymq.log"), "w");
  const child = spawn(BIN, ["standalone", "-c", conf, "--namesrv-listen", `127.0.0.1:${ns}`, "--no-grpc",
    "--dashboard-listen", `127.0.0.1:${http}`], { stdio: ["ignore", log, log] });
  children.push(child);
  const url = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name}: ferrymq exited: ${fs.readFileSync(path.join(dir, "ferrymq.log"), "utf8")}`);
    try {
      const r = await fetch(url + "/api/session");
      if (r.ok) break;
    } catch (_) { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${name}: dashboard did not come up`);
    await sleep(200);
  }
  // Wait until the broker has registered (the cluster page lists it).
  for (;;) {
    const r = await fetch(url + "/api/overview").catch(() => null);
    const body = r && r.ok ? await r.json() : null;
    if ((body && body.brokers.length > 0) || (r && r.status === 401)) break;
    if (Date.now() > deadline) throw new Error(`${name}: broker never registered`);
    await sleep(200);
  }
  return { child, dir, url, namesrv: `127.0.0.1:${ns}` };
}

function stop(server) {
  if (server && server.child.exitCode === null) server.child.kill("SIGTERM");
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  checkPng(file);
  console.log(`  screenshot ${file}`);
}

// A real screenshot: PNG signature, sane size from IHDR, and not one flat colour (a blank
// page compresses to almost nothing).
function checkPng(file) {
  const b = fs.readFileSync(file);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!b.subarray(0, 8).equals(sig)) throw new Error(`${file}: not a PNG`);
  const w = b.readUInt32BE(16), h = b.readUInt32BE(20);
  if (w < 800 || h < 300) throw new Error(`${file}: ${w}x${h} is too small`);
  if (b.length < 15_000) throw new Error(`${file}: ${b.length} bytes, the page looks blank`);
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("  ok: " + what);
}

async function openPage(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  return { page, errors };
}

async function openCluster(browser, server) {
  console.log("== open dashboard, no ACL");
  const { page, errors } = await openPage(browser);
  await page.goto(server.url + "/");
  await page.waitForSelector("#brokers-table tbody tr");
  const brokerRow = await page.textContent("#brokers-table tbody tr");
  check(brokerRow.includes("broker-a") && brokerRow.includes("DefaultCluster"), "cluster page lists broker-a");
  // Live TPS: a bounded load (200 msg/s for 8 s) must show in the cards and the chart. Its own
  // auto-created 4-queue topic: BenchmarkTest has 1024 queues, each a consume-queue file.
  const bench = spawn(BIN, ["bench", "produce", "-n", server.namesrv, "-t", "DashboardLoad", "-w", "4",
    "--rate", "200", "--duration", "8"], { stdio: "ignore" });
  await page.waitForFunction(() => {
    const card = [...document.querySelectorAll("#totals .card")].find((c) => c.textContent.includes("Put TPS"));
    return card && parseFloat(card.querySelector("b").textContent) > 50;
  }, null, { timeout: 30_000 });
  check(true, "the cluster page shows the live put TPS of a running load");
  await new Promise((r) => bench.on("exit", r));
  await shot(page, "01-cluster");

  console.log("== create a topic from the UI");
  await page.click("#nav-topics");
  await page.waitForSelector("#new-topic-cluster option", { state: "attached" });
  await page.fill("#new-topic-name", "UiCreatedTopic");
  await page.fill("#new-topic-queues", "4");
  await page.click("#create-topic-btn");
  await page.waitForSelector('#topics-table tr[data-topic="UiCreatedTopic"]');
  check((await page.textContent("#notice")).includes("UiCreatedTopic created"), "notice confirms the creation");
  const route = execFileSync(BIN, ["admin", "-n", server.namesrv, "--json", "topicRoute", "-t", "UiCreatedTopic"]).toString();
  check(route.includes('"readQueueNums": 4') || route.includes('"readQueueNums":4'), "the name server routes the new topic with 4 queues");
  await page.click('#topics-table tr[data-topic="UiCreatedTopic"] td');
  await page.waitForSelector("#topic-detail .detail");
  check((await page.$$("#topic-detail tbody tr")).length === 4, "topic detail shows 4 queues");
  await shot(page, "02-topics");

  console.log("== find a message by key, with its trace");
  const sent = execFileSync(BIN, ["admin", "-n", server.namesrv, "--json", "sendMessage", "-t", "UiCreatedTopic",
    "-p", "hello from the browser test", "-k", "ui-key-42", "-c", "TagUi", "-m", "true"]).toString();
  const msgId = JSON.parse(sent).msgId;
  check(/^[0-9A-F]{32}$/.test(msgId), "sendMessage returned a message id");
  await page.click("#nav-messages");
  await page.fill("#msg-topic", "UiCreatedTopic");
  await page.selectOption("#msg-by", "key");
  await page.fill("#msg-key", "ui-key-42");
  // The index and the trace are written asynchronously: search until both are there.
  let found = false;
  for (let i = 0; i < 30 && !found; i++) {
    await page.click("#msg-search-btn");
    await page.waitForTimeout(500);
    const rows = await page.$$("#msg-results tbody tr");
    found = rows.length === 1 && (await rows[0].textContent()).includes(msgId);
  }
  check(found, "search by key finds the message");
  let traced = false;
  for (let i = 0; i < 30 && !traced; i++) {
    await page.click("#msg-results tbody tr button");
    await page.waitForSelector("#msg-detail-box");
    await page.waitForFunction(() => !document.querySelector("#trace-box").textContent.includes("loading"));
    traced = (await page.$("#trace-table")) !== null;
    if (!traced) await page.waitForTimeout(500);
  }
  const detail = await page.textContent("#msg-detail-box");
  check(detail.includes("hello from the browser test"), "message detail shows the body");
  check(traced && (await page.textContent("#trace-table")).includes("Pub"), "message detail shows the Pub trace");
  await shot(page, "03-message-trace");

  console.log("== consumer groups page");
  await page.click("#nav-groups");
  await page.waitForSelector("#groups-table");
  await page.waitForTimeout(500);
  await shot(page, "04-groups");
  check(errors.length === 0, "no script errors: " + JSON.stringify(errors));
  await page.context().close();
}

async function signIn(browser, server) {
  console.log("== ACL on: sign-in");
  const { page, errors } = await openPage(browser);
  await page.goto(server.url + "/");
  await page.waitForSelector("#login:not([hidden])");
  check(await page.isHidden("#app"), "nothing is shown before sign-in");
  await page.fill("#login-ak", "ops");
  await page.fill("#login-sk", "wrong-secret");
  await page.click("#login-btn");
  await page.waitForSelector("#notice.error");
  check((await page.textContent("#notice")).includes("refused"), "a wrong secret is refused");
  await shot(page, "05-login-refused");
  await page.fill("#login-sk", "ops-secret");
  await page.click("#login-btn");
  await page.waitForSelector("#brokers-table tbody tr");
  check((await page.textContent("#who")).includes("ops"), "signed in as ops");
  await page.click("#nav-topics");
  await page.fill("#new-topic-name", "AclUiTopic");
  await page.click("#create-topic-btn");
  await page.waitForSelector('#topics-table tr[data-topic="AclUiTopic"]');
  check(true, "the admin account creates a topic through the dashboard");
  await shot(page, "06-signed-in");
  await page.click("#logout-btn");
  await page.waitForSelector("#login:not([hidden])");
  check(errors.filter((e) => !e.includes("401")).length === 0, "no script errors: " + JSON.stringify(errors));
  await page.context().close();
}

const children = [];
const dirs = [];
// Whatever happens, no server outlives the script, and its stores are removed (the logs are
// kept on failure, printed below).
process.on("exit", (code) => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const d of dirs) {
    if (code !== 0) {
      try { console.error(`--- ${d}/ferrymq.log\n` + fs.readFileSync(path.join(d, "ferrymq.log"), "utf8").slice(-4000)); } catch (_) { /* none */ }
    }
    fs.rmSync(d, { recursive: true, force: true });
  }
});

async function main() {
  let open, acl, browser;
  try {
    open = await startStandalone("open", () => []);
    acl = await startStandalone("acl", (dir) => {
      const file = path.join(dir, "plain_acl.yml");
      fs.writeFileSync(file, "accounts:\n  - accessKey: ops\n    secretKey: ops-secret\n    admin: true\n");
      return ["aclEnable=true", `rocketmq.acl.plain.file=${file}`];
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    await openCluster(browser, open);
    await signIn(browser, acl);
    console.log("dashboard browser test passed");
  } finally {
    if (browser) await browser.close();
    stop(open);
    stop(acl);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
