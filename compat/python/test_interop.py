#!/usr/bin/env python3
"""Interop test: RocketMQ C++-based Python clients from PyPI against a real `ferrymq standalone`.

Run inside a venv made by setup_venv.sh (flavour cpp2 or cpp1, detected from the installed
package). Starts `ferrymq standalone` from $FERRYMQ_BIN (or ../../target/{debug,release}/ferrymq)
on free loopback ports with a private store, runs the scenarios below, kills the broker and exits
non-zero if any scenario failed. Bounded in time (INTEROP_TIMEOUT seconds, default 420).

Scenarios: sync/async/oneway/batch/orderly sends with tags, keys and user properties; push
consumer (concurrently) gets everything intact; consumer restart resumes from the committed offset;
broker restart keeps messages and committed offsets; tag filter; pull consumer; orderly push
consumer keeps per-key order; RECONSUME_LATER is redelivered from the retry topic; delay level;
transactions (commit, rollback, check-back); broadcasting; message trace records.

Environment: FERRYMQ_BIN, FERRYMQ_LOG (broker RUST_LOG, default info), INTEROP_KEEP=1 keeps the
work directory (always kept on failure), INTEROP_ONLY=name,name runs a subset.
"""
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = float(os.environ.get("INTEROP_TIMEOUT", "420"))
WORK = tempfile.mkdtemp(prefix="ferrymq-pyinterop-")
# The C++ client writes logs and local (broadcast) offsets under $HOME: keep them in WORK.
os.environ["HOME"] = WORK
os.makedirs(os.path.join(WORK, "clog"), exist_ok=True)
CLOG = os.path.join(WORK, "clog").encode()

import rocketmq.client as rc  # noqa: E402  (after HOME is set: the library reads it)
from rocketmq.ffi import dll  # noqa: E402

FLAVOUR = "cpp2" if hasattr(rc, "ReceivedMessage") else "cpp1"
C = ctypes
dll.GetLatestErrorMessage.restype = C.c_char_p
dll.GetMessageProperty.restype = C.c_char_p
for _name, _args in (("SetProducerLogPath", [C.c_void_p, C.c_char_p]),
                     ("SetPushConsumerLogPath", [C.c_void_p, C.c_char_p]),
                     ("SetPullConsumerLogPath", [C.c_void_p, C.c_char_p]),
                     ("SetPushConsumerInstanceName", [C.c_void_p, C.c_char_p]),
                     ("SetPushConsumerMessageTrace", [C.c_void_p, C.c_int]),
                     ("SetProducerMessageTrace", [C.c_void_p, C.c_int])):
    if hasattr(dll, _name):
        getattr(dll, _name).argtypes = _args
HAS_TRACE = hasattr(dll, "SetPushConsumerMessageTrace")
TRACE_OPEN = 0  # CTraceModel { OPEN, CLOSE }


def log(*a):
    print("[%7.2f]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


# --------------------------------------------------------------------------- broker process

def free_port(lo=12000, hi=32000, need_minus_2=False):
    for _ in range(500):
        p = random.randint(lo, hi)
        ports = [p, p - 2] if need_minus_2 else [p]
        ok = True
        for q in ports:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no free port")


def ferrymq_bin():
    env = os.environ.get("FERRYMQ_BIN")
    if env:
        return env
    cands = [os.path.join(HERE, "..", "..", "target", p, "ferrymq") for p in ("debug", "release")]
    if os.environ.get("CARGO_TARGET_DIR"):
        cands += [os.path.join(os.environ["CARGO_TARGET_DIR"], p, "ferrymq") for p in ("debug", "release")]
    cands = [c for c in cands if os.path.isfile(c)]
    if not cands:
        raise SystemExit("ferrymq binary not found: set FERRYMQ_BIN")
    return max(cands, key=os.path.getmtime)


class Broker:
    def __init__(self):
        self.ns_port = free_port()
        self.port = free_port(need_minus_2=True)
        self.ha_port = free_port()
        self.ns = "127.0.0.1:%d" % self.ns_port
        self.store = os.path.join(WORK, "store")
        self.conf = os.path.join(WORK, "broker.conf")
        with open(self.conf, "w") as f:
            f.write("brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\n"
                    "listenPort=%d\nbrokerIP1=127.0.0.1\nstorePathRootDir=%s\n"
                    "transactionTimeOut=2000\ntransactionCheckInterval=1000\n"
                    "mappedFileSizeCommitLog=67108864\nhaListenPort=%d\n"
                    % (self.port, self.store, self.ha_port))
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        logf = open(os.path.join(WORK, "broker-%d.log" % self.starts), "wb")
        env = dict(os.environ, RUST_LOG=os.environ.get("FERRYMQ_LOG", "info"))
        self.proc = subprocess.Popen([ferrymq_bin(), "standalone", "-c", self.conf,
                                      "--namesrv-listen", self.ns], stdout=logf, stderr=logf, env=env)
        deadline = time.time() + 30
        path = logf.name
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ferrymq exited with %s, see %s" % (self.proc.returncode, path))
            with open(path, "rb") as f:
                if b"standalone ready" in f.read() and self._answers():
                    log("ferrymq up: namesrv %s broker 127.0.0.1:%d (start #%d)" % (self.ns, self.port, self.starts))
                    return
            time.sleep(0.1)
        raise RuntimeError("ferrymq did not become ready in 30 s, see %s" % path)

    def _answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------- client adapter

def msg_dict(m):
    """Normalise a received message (either binding's wrapper) to a dict."""
    def prop(name):
        v = dll.GetMessageProperty(m._handle, name.encode())
        return v.decode("utf-8") if v else None
    return dict(topic=_s(m.topic), body=bytes(m.body), tags=_s(m.tags), keys=_s(m.keys),
                uprop=prop("uprop"), utf=prop("utf"), queue_id=m.queue_id, queue_offset=m.queue_offset,
                reconsume_times=m.reconsume_times, msg_id=_s(m.id), retry_topic=prop("RETRY_TOPIC"))


def _s(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


class CSendResult(C.Structure):
    _fields_ = [("sendStatus", C.c_int), ("msgId", C.c_char * 256), ("offset", C.c_longlong)]


class CMQException(C.Structure):
    _fields_ = [("error", C.c_int), ("line", C.c_int), ("file", C.c_char * 512),
                ("msg", C.c_char * 512), ("type", C.c_char * 512)]


class CMessageQueue(C.Structure):
    _fields_ = [("topic", C.c_char * 512), ("brokerName", C.c_char * 256), ("queueId", C.c_int)]


class CPullResult(C.Structure):
    _fields_ = [("pullStatus", C.c_int), ("nextBeginOffset", C.c_longlong), ("minOffset", C.c_longlong),
                ("maxOffset", C.c_longlong), ("msgFoundList", C.POINTER(C.c_void_p)), ("size", C.c_int),
                ("pData", C.c_void_p)]


# C API (same in both cores). Declared here so both bindings are driven identically.
SEND_OK_CB = C.CFUNCTYPE(None, CSendResult)       # CSendSuccessCallback(CSendResult) - by value
SEND_EXC_CB = C.CFUNCTYPE(None, CMQException)
dll.SendMessageAsync.argtypes = [C.c_void_p, C.c_void_p, SEND_OK_CB, SEND_EXC_CB]
dll.SendMessageAsync.restype = C.c_int
dll.CreateBatchMessage.restype = C.c_void_p
dll.AddMessage.argtypes = [C.c_void_p, C.c_void_p]
dll.SendBatchMessage.argtypes = [C.c_void_p, C.c_void_p, C.POINTER(CSendResult)]
dll.SendBatchMessage.restype = C.c_int
dll.DestroyBatchMessage.argtypes = [C.c_void_p]
dll.CreatePullConsumer.argtypes = [C.c_char_p]
dll.CreatePullConsumer.restype = C.c_void_p
for _n in ("StartPullConsumer", "ShutdownPullConsumer", "DestroyPullConsumer"):
    getattr(dll, _n).argtypes = [C.c_void_p]
    getattr(dll, _n).restype = C.c_int
dll.SetPullConsumerNameServerAddress.argtypes = [C.c_void_p, C.c_char_p]
dll.FetchSubscriptionMessageQueues.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(C.POINTER(CMessageQueue)),
                                               C.POINTER(C.c_int)]
dll.FetchSubscriptionMessageQueues.restype = C.c_int
dll.ReleaseSubscriptionMessageQueue.argtypes = [C.POINTER(CMessageQueue)]
dll.Pull.argtypes = [C.c_void_p, C.POINTER(CMessageQueue), C.c_char_p, C.c_longlong, C.c_int]
dll.Pull.restype = CPullResult
dll.ReleasePullResult.argtypes = [CPullResult]
MSG_CB = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_void_p)
dll.RegisterMessageCallback.argtypes = [C.c_void_p, MSG_CB]
dll.RegisterMessageCallbackOrderly.argtypes = [C.c_void_p, MSG_CB]
dll.Subscribe.argtypes = [C.c_void_p, C.c_char_p, C.c_char_p]
RecvMessage = getattr(rc, "ReceivedMessage", None) or getattr(rc, "RecvMessage")


class Client:
    def __init__(self, ns):
        self.ns = ns
        self._keep = []  # ctypes callbacks must outlive the C side's use of them

    def message(self, topic, i=None, tags=None, keys=None, body=None, props=None):
        m = rc.Message(topic)
        if tags:
            m.set_tags(tags)
        if keys:
            m.set_keys(keys)
        for k, v in (props or {}).items():
            m.set_property(k, v)
        m.set_body(body)
        return m

    def producer(self, group, trace=False, orderly=False):
        if FLAVOUR == "cpp2":
            p = rc.Producer(group, orderly=orderly)
            p.set_name_server_address(self.ns)
        else:
            p = rc.Producer(group)
            p.set_namesrv_addr(self.ns)
        dll.SetProducerLogPath(p._handle, CLOG)
        if trace:
            dll.SetProducerMessageTrace(p._handle, TRACE_OPEN)
        p.start()
        return p

    def send_async(self, p, m, timeout=15):
        ev, out = threading.Event(), {}

        def ok(r):
            out["ok"] = (r.sendStatus, r.msgId.decode(), r.offset)
            ev.set()

        def exc(e):
            out["err"] = (e.error, e.msg.decode(errors="replace"))
            ev.set()
        cbs = (SEND_OK_CB(ok), SEND_EXC_CB(exc))
        self._keep.append(cbs)
        code = dll.SendMessageAsync(p._handle, m._handle, cbs[0], cbs[1])
        if code != 0:
            raise AssertionError("SendMessageAsync returned %d: %s" % (code, dll.GetLatestErrorMessage()))
        if not ev.wait(timeout):
            raise AssertionError("async send: no callback in %ss" % timeout)
        if "err" in out:
            raise AssertionError("async send failed: %r" % (out["err"],))
        return out["ok"]

    def send_batch(self, p, msgs):
        b = dll.CreateBatchMessage()
        for m in msgs:
            assert dll.AddMessage(b, m._handle) == 0
        r = CSendResult()
        code = dll.SendBatchMessage(p._handle, b, C.byref(r))
        dll.DestroyBatchMessage(b)
        if code != 0:
            raise AssertionError("SendBatchMessage returned %d: %s" % (code, dll.GetLatestErrorMessage()))
        return r.sendStatus

    def send_orderly(self, p, m, key):
        if FLAVOUR == "cpp2":
            return p.send_orderly_with_sharding_key(m, key)
        return p.send_orderly(m, sum(key.encode()))

    def push_consumer(self, group, topic, handler, expr="*", orderly=False, broadcast=False, instance=None):
        """handler(dict) -> True (CONSUME_SUCCESS) or False (RECONSUME_LATER)."""
        model = rc.MessageModel.BROADCASTING if broadcast else rc.MessageModel.CLUSTERING
        c = rc.PushConsumer(group, orderly=orderly, message_model=model)
        if FLAVOUR == "cpp2":
            c.set_name_server_address(self.ns)
        else:
            c.set_namesrv_addr(self.ns)
        dll.SetPushConsumerLogPath(c._handle, CLOG)
        if instance:
            dll.SetPushConsumerInstanceName(c._handle, instance.encode())
        if HAS_TRACE:
            # Client bug workaround: C++ core 2.1.0 dereferences its (absent) trace producer in
            # DefaultMQPushConsumerImpl::shutdown() when trace is off -> SIGSEGV on shutdown
            # (apache/rocketmq-client-cpp#286, fixed in 2.2.0). With trace on the producer exists.
            dll.SetPushConsumerMessageTrace(c._handle, TRACE_OPEN)

        def on_message(_consumer, cmsg):
            try:
                return 0 if handler(msg_dict(RecvMessage(cmsg))) else 1
            except Exception:  # a crash in a test handler must not kill the C thread
                traceback.print_exc()
                return 1
        cb = MSG_CB(on_message)
        self._keep.append(cb)
        assert dll.Subscribe(c._handle, topic.encode(), expr.encode()) == 0
        reg = dll.RegisterMessageCallbackOrderly if orderly else dll.RegisterMessageCallback
        assert reg(c._handle, cb) == 0
        c.start()
        return c

    def pull_all(self, group, topic, expr="*"):
        c = dll.CreatePullConsumer(group.encode())
        dll.SetPullConsumerNameServerAddress(c, self.ns.encode())
        dll.SetPullConsumerLogPath(c, CLOG)
        assert dll.StartPullConsumer(c) == 0, dll.GetLatestErrorMessage()
        mqs, n = C.POINTER(CMessageQueue)(), C.c_int()
        code = dll.FetchSubscriptionMessageQueues(c, topic.encode(), C.byref(mqs), C.byref(n))
        if code != 0:
            raise AssertionError("FetchSubscriptionMessageQueues %d: %s" % (code, dll.GetLatestErrorMessage()))
        out = []
        try:
            for i in range(n.value):
                mq, off = mqs[i], 0
                for _ in range(1000):
                    r = dll.Pull(c, C.byref(mq), expr.encode(), off, 32)
                    st = r.pullStatus
                    if st == 0:  # FOUND
                        out += [msg_dict(RecvMessage(r.msgFoundList[j])) for j in range(r.size)]
                    nxt = r.nextBeginOffset
                    dll.ReleasePullResult(r)
                    if st in (1, 2):  # NO_NEW_MSG, NO_MATCHED_MSG
                        break
                    if st != 0:
                        raise AssertionError("pull status %d on queue %d at %d" % (st, mq.queueId, off))
                    off = nxt
        finally:
            dll.ReleaseSubscriptionMessageQueue(mqs)
            dll.ShutdownPullConsumer(c)
            dll.DestroyPullConsumer(c)
        return out


# --------------------------------------------------------------------------- helpers

class Collector:
    def __init__(self, fail_first=0):
        self.items, self.lock, self.fail_first, self.calls = [], threading.Lock(), fail_first, 0

    def __call__(self, m):
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                self.items.append(dict(m, failed=True))
                return False
            self.items.append(m)
            return True

    def ok(self):
        with self.lock:
            return [m for m in self.items if not m.get("failed")]


def wait_for(pred, secs, step=0.2):
    deadline = time.time() + secs
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def consume(client, group, topic, want, secs=30, settle=1.5, **kw):
    col = Collector()
    c = client.push_consumer(group, topic, col, **kw)
    wait_for(lambda: len(col.ok()) >= want, secs)
    time.sleep(settle)  # anything extra (duplicates) would show up now
    c.shutdown()
    return col.ok()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_exactly(got, sent, what):
    """got/sent: lists of dicts; compares by body, and every field that was sent."""
    by_body = {}
    for g in got:
        by_body.setdefault(g["body"], []).append(g)
    missing = [s["body"][:40] for s in sent if s["body"] not in by_body]
    dups = [b[:40] for b, gs in by_body.items() if len(gs) > 1]
    extra = [b[:40] for b in by_body if b not in {s["body"] for s in sent}]
    check(not missing, "%s: %d missing: %r" % (what, len(missing), missing[:10]))
    check(not dups, "%s: delivered more than once: %r" % (what, dups[:10]))
    check(not extra, "%s: unexpected messages: %r" % (what, extra[:10]))
    for s in sent:
        g = by_body[s["body"]][0]
        for k in ("topic", "tags", "keys", "uprop", "utf"):
            if k in s:
                check(g[k] == s[k], "%s: message %r field %s: got %r, sent %r" % (what, s["body"][:30], k, g[k], s[k]))


# --------------------------------------------------------------------------- scenarios

def run_id():
    return "%x" % random.getrandbits(32)


RID = run_id()
TOPIC = "PyInterop_" + RID
GROUP = "CG_PyInterop_" + RID
SENT = []  # every message sent to TOPIC, as dicts


def spec(i, tags, body=None):
    return dict(topic=TOPIC, tags=tags, keys="K%d KEY-%d" % (i, i), uprop="v%d" % i, utf="ü=é;€ x",
                body=body if body is not None else ("msg-%d-%s" % (i, RID)).encode())


def send_specs(client, p, specs, how):
    ms = [client.message(TOPIC, tags=s["tags"], keys=s["keys"], body=s["body"],
                         props={"uprop": s["uprop"], "utf": s["utf"]}) for s in specs]
    if how == "batch":
        check(client.send_batch(p, ms) == 0, "batch send status not OK")
    else:
        for m in ms:
            if how == "sync":
                r = p.send_sync(m)
                check(int(r.status) == 0 and r.msg_id, "sync send result %r" % (r,))
            elif how == "async":
                st, mid, _ = client.send_async(p, m)
                check(st == 0 and mid, "async send result %r" % ((st, mid),))
            elif how == "oneway":
                p.send_oneway(m)
    SENT.extend(specs)


def s_produce_consume(client, broker):
    p = client.producer("PG_PyInterop_" + RID)
    send_specs(client, p, [spec(i, "TagA" if i % 2 == 0 else "TagB") for i in range(0, 8)], "sync")
    # > 4 KiB: the C++ client compresses it (sysFlag COMPRESSED) and must get it back intact
    send_specs(client, p, [spec(8, "TagA", body=("big-%s-" % RID).encode() + b"z" * 9000)], "sync")
    send_specs(client, p, [spec(i, "TagB") for i in range(9, 11)], "async")
    send_specs(client, p, [spec(i, "TagA") for i in range(11, 13)], "oneway")
    send_specs(client, p, [spec(i, "TagC") for i in range(13, 16)], "batch")
    p.shutdown()
    got = consume(client, GROUP, TOPIC, len(SENT))
    expect_exactly(got, SENT, "first consumption")


def s_consumer_restart(client, broker):
    p = client.producer("PG_PyInterop_" + RID)
    new = [spec(i, "TagA") for i in range(100, 104)]
    send_specs(client, p, new, "sync")
    p.shutdown()
    got = consume(client, GROUP, TOPIC, len(new), settle=3)
    expect_exactly(got, new, "consumer restart (must resume at the committed offset)")


def s_broker_restart(client, broker):
    broker.stop()
    broker.start()
    p = client.producer("PG_PyInterop_" + RID)
    new = [spec(i, "TagB") for i in range(200, 203)]
    # right after a restart the client may still hold a dead connection: retry a few times
    deadline = time.time() + 30
    while True:
        try:
            send_specs(client, p, new, "sync")
            break
        except Exception as e:
            if time.time() > deadline:
                raise
            log("  send after broker restart failed (%s), retrying" % e)
            time.sleep(1)
    p.shutdown()
    got = consume(client, GROUP, TOPIC, len(new), settle=3)
    expect_exactly(got, new, "after broker restart (offsets must survive a restart)")
    # and nothing was lost from the log
    everything = client.pull_all("PL_PyInterop_" + RID, TOPIC)
    expect_exactly(everything, SENT, "pull of the whole topic after broker restart")


def s_tag_filter(client, broker):
    got = consume(client, "CG_TagA_" + RID, TOPIC, sum(1 for s in SENT if s["tags"] == "TagA"),
                  expr="TagA", settle=3)
    expect_exactly(got, [s for s in SENT if s["tags"] == "TagA"], "tag filter TagA")
    got = consume(client, "CG_TagBC_" + RID, TOPIC, sum(1 for s in SENT if s["tags"] in ("TagB", "TagC")),
                  expr="TagB || TagC", settle=3)
    expect_exactly(got, [s for s in SENT if s["tags"] in ("TagB", "TagC")], "tag filter TagB || TagC")


def s_pull_filter(client, broker):
    got = client.pull_all("PL_TagC_" + RID, TOPIC, expr="TagC")
    expect_exactly(got, [s for s in SENT if s["tags"] == "TagC"], "pull consumer with tag TagC")


def s_orderly(client, broker):
    topic = "PyOrder_" + RID
    p = client.producer("PG_PyOrder_" + RID, orderly=True)
    keys = ["alpha", "beta", "gamma", "delta"]
    n = 40
    for i in range(n):
        k = keys[i % len(keys)]
        m = client.message(topic, tags="O", keys="o%d" % i, body=("%s:%d" % (k, i)).encode())
        client.send_orderly(p, m, k)
    p.shutdown()
    col = Collector()
    c = client.push_consumer("CG_PyOrder_" + RID, topic, col, orderly=True)
    wait_for(lambda: len(col.ok()) >= n, 40)
    time.sleep(1)
    c.shutdown()
    got = col.ok()
    check(len(got) == n, "orderly: got %d of %d" % (len(got), n))
    per = {}
    for g in got:
        k, i = g["body"].decode().split(":")
        per.setdefault(k, []).append((g["queue_id"], int(i)))
    for k, seq in per.items():
        check(len({q for q, _ in seq}) == 1, "orderly: key %s spread over queues %r" % (k, seq))
        nums = [i for _, i in seq]
        check(nums == sorted(nums), "orderly: key %s consumed out of order: %r" % (k, nums))


def s_retry(client, broker):
    topic = "PyRetry_" + RID
    p = client.producer("PG_PyRetry_" + RID)
    s = dict(topic=topic, tags="R", keys="rk", uprop="rv", utf="ü", body=b"retry-me-" + RID.encode())
    p.send_sync(client.message(topic, tags="R", keys="rk", body=s["body"], props={"uprop": "rv", "utf": "ü"}))
    p.shutdown()
    col = Collector(fail_first=1)
    c = client.push_consumer("CG_PyRetry_" + RID, topic, col)
    # first delivery, RECONSUME_LATER -> CONSUMER_SEND_MSG_BACK -> delay level 3 (10 s) -> %RETRY%
    wait_for(lambda: len(col.ok()) >= 1, 45)
    time.sleep(1)
    c.shutdown()
    items = col.items
    check(len(items) >= 2, "retry: expected a redelivery, got %d deliveries" % len(items))
    first, again = items[0], col.ok()[0]
    check(first["reconsume_times"] == 0, "retry: first delivery reconsume_times %r" % first["reconsume_times"])
    check(again["reconsume_times"] == 1, "retry: redelivery reconsume_times %r" % again["reconsume_times"])
    for k in ("body", "tags", "keys", "uprop", "utf", "topic"):
        check(again[k] == s[k], "retry: redelivered field %s: got %r want %r" % (k, again[k], s[k]))


def s_delay(client, broker):
    topic = "PyDelay_" + RID
    p = client.producer("PG_PyDelay_" + RID)
    p.send_sync(client.message(topic, body=b"pre"))  # creates the topic, so the consumer has a route
    col = Collector()
    c = client.push_consumer("CG_PyDelay_" + RID, topic, col)
    check(wait_for(lambda: col.ok(), 30), "delay: consumer never started")
    m = client.message(topic, body=b"delayed-" + RID.encode())
    m.set_delay_time_level(2)  # 5 s
    t0 = time.time()
    p.send_sync(m)
    p.shutdown()
    ok = wait_for(lambda: any(x["body"].startswith(b"delayed-") for x in col.ok()), 30, 0.05)
    dt = time.time() - t0
    c.shutdown()
    check(ok, "delay: delayed message not delivered within 30 s")
    check(dt >= 4.0, "delay: level 2 (5 s) delivered after only %.2f s" % dt)


def s_transaction(client, broker):
    topic = "PyTx_" + RID
    checked = []

    def checker(msg):
        checked.append(bytes(msg.body))
        return rc.TransactionStatus.COMMIT
    p = rc.TransactionMQProducer("PG_PyTx_" + RID, checker)
    p.set_name_server_address(client.ns)
    dll.SetProducerLogPath(p._handle, CLOG)
    p.start()
    outcomes = {b"tx-commit": rc.TransactionStatus.COMMIT, b"tx-rollback": rc.TransactionStatus.ROLLBACK,
                b"tx-unknown": rc.TransactionStatus.UNKNOWN}
    for body, st in outcomes.items():
        m = client.message(topic, tags="X", keys=body.decode(), body=body + b"-" + RID.encode())
        r = p.send_message_in_transaction(m, lambda _m, _a, st=st: st)
        check(int(r.status) == 0, "transaction half send %r" % (r,))
    col = Collector()
    c = client.push_consumer("CG_PyTx_" + RID, topic, col)
    wait_for(lambda: len(col.ok()) >= 2, 40)
    time.sleep(3)
    c.shutdown()
    p.shutdown()
    bodies = sorted(x["body"].split(b"-" + RID.encode())[0] for x in col.ok())
    check(bodies == [b"tx-commit", b"tx-unknown"], "transaction: consumed %r, want commit + checked unknown" % bodies)
    check(any(b.startswith(b"tx-unknown") for b in checked), "transaction: no check-back for the UNKNOWN one (%r)" % checked)


def s_broadcast(client, broker):
    topic = "PyBcast_" + RID
    p = client.producer("PG_PyBcast_" + RID)
    p.send_sync(client.message(topic, body=b"pre"))  # topic exists before consumers start
    a, b = Collector(), Collector()
    ca = client.push_consumer("CG_PyBcast_" + RID, topic, a, broadcast=True, instance="one")
    cb = client.push_consumer("CG_PyBcast_" + RID, topic, b, broadcast=True, instance="two")
    time.sleep(5)  # broadcasting consumers start at the end of the queues
    sent = [("bc-%d-%s" % (i, RID)).encode() for i in range(5)]
    for body in sent:
        p.send_sync(client.message(topic, body=body))
    p.shutdown()
    wait_for(lambda: len([x for x in a.ok() if x["body"] in sent]) >= 5 and
             len([x for x in b.ok() if x["body"] in sent]) >= 5, 30)
    ca.shutdown()
    cb.shutdown()
    for name, col in (("one", a), ("two", b)):
        got = sorted(x["body"] for x in col.ok() if x["body"] in sent)
        check(got == sorted(sent), "broadcast: instance %s got %r" % (name, got))


def s_trace(client, broker):
    topic = "PyTrace_" + RID
    p = client.producer("PG_PyTrace_" + RID, trace=True)
    p.send_sync(client.message(topic, keys="tk-" + RID, body=b"traced-" + RID.encode()))
    got = consume(client, "CG_PyTrace_" + RID, topic, 1, settle=3)
    p.shutdown()
    check([g["body"] for g in got] == [b"traced-" + RID.encode()], "trace: consumed %r" % [g["body"] for g in got])
    # The C++ producer names the trace topic after the MSG_REGION of the send response (the
    # broker's regionId, "DefaultRegion" like Java's); the consumer uses its own default region.
    want = [b"Pub\x01", b"SubBefore\x01", b"SubAfter\x01"]
    text = b""
    deadline = time.time() + 20
    while time.time() < deadline and not all(w in text and ("tk-" + RID).encode() in text for w in want):
        time.sleep(1)
        text = b""
        for t in ("rmq_sys_TRACE_DATA_DefaultRegion", "rmq_sys_TRACE_DATA_DEFAULT_REGION"):
            try:
                text += b"\n".join(r["body"] for r in client.pull_all("PL_PyTrace_" + RID, t) if RID.encode() in r["body"])
            except AssertionError:
                pass  # topic not (yet) there
    for w in want:
        check(w in text, "trace: no %r record for the traced message in the trace topics" % w)


SCENARIOS = [
    ("produce_consume", s_produce_consume, None),
    ("consumer_restart", s_consumer_restart, None),
    ("broker_restart", s_broker_restart, None),
    ("tag_filter", s_tag_filter, None),
    ("pull_filter", s_pull_filter, None),
    ("orderly", s_orderly, None),
    ("retry", s_retry, None),
    ("delay", s_delay, None),
    ("transaction", s_transaction, "cpp1 binding has no transaction producer" if FLAVOUR == "cpp1" else None),
    ("broadcast", s_broadcast, None),
    ("trace", s_trace, "cpp1 core has no message trace" if not HAS_TRACE else None),
]


def main():
    only = set(filter(None, os.environ.get("INTEROP_ONLY", "").split(",")))
    broker = Broker()

    def watchdog():
        time.sleep(TIMEOUT)
        print("INTEROP TIMEOUT after %.0f s; work dir kept: %s" % (TIMEOUT, WORK), flush=True)
        broker.stop(kill=True)
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()
    passed, failed, skipped = [], [], []
    log("flavour %s (%s), work dir %s" % (FLAVOUR, rc.__file__, WORK))
    try:
        try:
            broker.start()
        except Exception as e:
            log("FAIL start: %s" % e)
            failed.append("start")
            SCENARIOS[:] = []
        client = Client(broker.ns)
        for name, fn, skip in SCENARIOS:
            if only and name not in only:
                continue
            if skip:
                log("SKIP %s: %s" % (name, skip))
                skipped.append(name)
                continue
            t = time.time()
            try:
                fn(client, broker)
                log("PASS %s (%.1f s)" % (name, time.time() - t))
                passed.append(name)
            except Exception as e:
                log("FAIL %s (%.1f s): %s" % (name, time.time() - t, e))
                traceback.print_exc()
                failed.append(name)
    finally:
        broker.stop()
    print("python interop, flavour %s" % FLAVOUR)
    print("interop: %d passed, %d failed, %d skipped" % (len(passed), len(failed), len(skipped)))
    if failed:
        print("failed: %s; broker logs and C++ client logs kept in %s" % (", ".join(failed), WORK))
    elif not os.environ.get("INTEROP_KEEP"):
        shutil.rmtree(WORK, ignore_errors=True)
    sys.stdout.flush()
    # Skip interpreter teardown: the C++ library's static destructors can crash after main.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
