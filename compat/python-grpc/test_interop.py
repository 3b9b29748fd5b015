#!/usr/bin/env python3
"""Interop test: Apache RocketMQ's official 5.x gRPC Python SDK against a real `ferrymq standalone`.

Run inside a venv made by setup_venv.sh (PyPI `rocketmq-python-client`, grpcio). Starts
`ferrymq standalone` from $FERRYMQ_BIN (or ../../target/{debug,release}/ferrymq) on free loopback
ports (NameServer, broker, gRPC endpoint) with a private store, creates the topics with
`ferrymq admin updateTopic` (gRPC clients never auto-create topics), runs the scenarios below
through the gRPC endpoint only, kills the server and exits non-zero if any scenario failed.
Bounded in time (INTEROP_TIMEOUT seconds, default 110; every wait has its own deadline).

Scenarios: normal sends with tag, keys and properties received intact by a SimpleConsumer and
acked; tag and SQL92 filters; an unacked message redelivered after its invisible time with delivery attempt
2; ChangeInvisibleDuration; PushConsumer (including a FAILURE redelivered with attempt 2); FIFO
(message groups) in order; delay by delivery timestamp; a recalled delay message never
delivered; PullMessage / UpdateOffset / GetOffset / QueryOffset through the SDK's stubs; transactions (commit visible, rollback
not, orphaned half message resolved through the server's check-back on the Telemetry stream).

Environment: FERRYMQ_BIN, FERRYMQ_LOG (server RUST_LOG, default info), INTEROP_KEEP=1 keeps the
work directory with the store (on failure the logs are kept: server log, SDK log under
logs/rocketmq_python/),
INTEROP_ONLY=name,name runs a subset, INTEROP_SDK_DEBUG=1 sets the SDK's log level to DEBUG.
"""
import logging
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
TIMEOUT = float(os.environ.get("INTEROP_TIMEOUT", "150"))
WORK = tempfile.mkdtemp(prefix="ferrymq-pygrpc-")
# The SDK configures its log file (~/logs/rocketmq_python/) at import: keep it in WORK.
os.environ["HOME"] = WORK

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials,  # noqa: E402
                      FilterExpression, Message, MessageListener, Producer,
                      PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)
from rocketmq.grpc_protocol import FilterType  # noqa: E402

if os.environ.get("INTEROP_SDK_DEBUG"):
    logging.getLogger("rocketmq-python-client").setLevel(logging.DEBUG)

T0 = time.time()


def log(*a):
    print("[%7.2f]" % (time.time() - T0), *a, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def sdk_version():
    try:
        from importlib.metadata import version
        return version("rocketmq-python-client")
    except Exception:
        return "?"


# --------------------------------------------------------------------------- server process

def free_port(need_minus_2=False):
    for _ in range(500):
        p = random.randint(12000, 32000)
        ok = True
        for q in ([p, p - 2] if need_minus_2 else [p]):
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


class Server:
    """One `ferrymq standalone` (NameServer + broker + gRPC endpoint) on private ports."""

    def __init__(self):
        self.ns_port = free_port()
        self.port = free_port(need_minus_2=True)  # the broker also binds listenPort - 2
        self.grpc_port = free_port()
        self.ha_port = free_port()
        self.ns = "127.0.0.1:%d" % self.ns_port
        self.grpc = "127.0.0.1:%d" % self.grpc_port
        self.conf = os.path.join(WORK, "broker.conf")
        with open(self.conf, "w") as f:
            # short transaction check-back so the orphaned-transaction scenario takes seconds;
            # a private HA port: the default, listenPort + 1, may belong to another server;
            # 64 MiB commit-log segments: the store pre-allocates (and writes) two of them
            f.write("brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\n"
                    "listenPort=%d\nbrokerIP1=127.0.0.1\nstorePathRootDir=%s\n"
                    "transactionTimeOut=2000\ntransactionCheckInterval=1000\nhaListenPort=%d\n"
                    "mappedFileSizeCommitLog=67108864\n"
                    % (self.port, os.path.join(WORK, "store"), self.ha_port))
        self.proc = None
        self.log_path = os.path.join(WORK, "ferrymq.log")

    def start(self):
        logf = open(self.log_path, "wb")
        env = dict(os.environ, RUST_LOG=os.environ.get("FERRYMQ_LOG", "info"))
        self.proc = subprocess.Popen([ferrymq_bin(), "standalone", "-c", self.conf, "--namesrv-listen", self.ns,
                                      "--grpc-listen", self.grpc], stdout=logf, stderr=logf, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ferrymq exited with %s, see %s" % (self.proc.returncode, self.log_path))
            with open(self.log_path, "rb") as f:
                if b"standalone ready" in f.read() and self._answers(self.port) and self._answers(self.grpc_port):
                    log("ferrymq up: namesrv %s broker 127.0.0.1:%d grpc %s" % (self.ns, self.port, self.grpc))
                    return
            time.sleep(0.1)
        raise RuntimeError("ferrymq did not become ready in 30 s, see %s" % self.log_path)

    @staticmethod
    def _answers(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, kill=False):
        p, self.proc = self.proc, None
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def admin(self, *args):
        out = subprocess.run([ferrymq_bin(), "admin", *args, "-n", self.ns], capture_output=True, timeout=30)
        check(out.returncode == 0, "ferrymq admin %s failed: %s%s" % (" ".join(args), out.stdout.decode(errors="replace"),
                                                                       out.stderr.decode(errors="replace")))
        return out.stdout.decode(errors="replace")

    def create_topic(self, topic, message_type=None):
        args = ["updateTopic", "-c", "DefaultCluster", "-t", topic, "-r", "4", "-w", "4"]
        if message_type:
            args += ["-a", "+message.type=%s" % message_type]
        self.admin(*args)
        # the broker registers the topic with the name server at once; wait until it has a route
        deadline = time.time() + 15
        while True:
            r = subprocess.run([ferrymq_bin(), "admin", "topicRoute", "-t", topic, "-n", self.ns],
                               capture_output=True, timeout=30)
            if r.returncode == 0 and b"broker-a" in r.stdout:
                return
            check(time.time() < deadline, "topic %s has no route 15 s after updateTopic" % topic)
            time.sleep(0.2)


SERVER = None
CLIENTS = []  # started SDK clients, shut down at the end whatever happened


def config():
    return ClientConfiguration(SERVER.grpc, Credentials(), request_timeout=5)


def started(client):
    client.startup()
    CLIENTS.append(client)
    return client


def shutdown(client):
    if client in CLIENTS:
        CLIENTS.remove(client)
    try:
        client.shutdown()
    except Exception as e:  # a failing shutdown must not hide the scenario's result
        log("  (shutdown of %s: %s)" % (client, e))


# --------------------------------------------------------------------------- helpers

RID = "%x" % random.getrandbits(32)
AWAIT = 5  # long polling of SimpleConsumer.receive, seconds (the server's minimum)


def message(topic, body, tag=None, keys=(), props=None, group=None, deliver_at=None):
    m = Message()
    m.topic = topic
    m.body = body
    if tag:
        m.tag = tag
    for k in keys:
        m.keys = k  # the setter adds one key
    for k, v in (props or {}).items():
        m.add_property(k, v)
    if group:
        m.message_group = group
    if deliver_at:
        m.delivery_timestamp = deliver_at
    return m


def simple_consumer(group, topic, expr="*"):
    return started(SimpleConsumer(config(), group, {topic: FilterExpression(expr)}, await_duration=AWAIT))


def receive_until(consumer, pred, timeout, invisible=15, ack=True, batch=16):
    """Receives (acking unless ack=False) until pred(all received so far) or timeout; returns the
    list of (receive time, message)."""
    got = []
    deadline = time.time() + timeout
    while not pred(got):
        check(time.time() < deadline, "timed out after %.0f s with %d message(s) received" % (timeout, len(got)))
        for m in consumer.receive(batch, invisible):
            got.append((time.time(), m))
            if ack:
                consumer.ack(m)
    return got


def view(m):
    return dict(topic=m.topic, body=bytes(m.body), tag=m.tag, keys=set(m.keys), props=dict(m.properties),
                id=m.message_id, attempt=m.delivery_attempt, group=m.message_group)


def expect_exactly(got, sent, what):
    """got: received messages; sent: dicts with body/tag/keys/props/id; one delivery each, intact."""
    by_body = {}
    for m in got:
        by_body.setdefault(bytes(m.body), []).append(view(m))
    want = {s["body"]: s for s in sent}
    missing = [b[:40] for b in want if b not in by_body]
    dups = [b[:40] for b, v in by_body.items() if len(v) > 1]
    extra = [b[:40] for b in by_body if b not in want]
    check(not missing, "%s: %d missing: %r" % (what, len(missing), missing[:5]))
    check(not dups, "%s: delivered more than once: %r" % (what, dups[:5]))
    check(not extra, "%s: unexpected: %r" % (what, extra[:5]))
    for b, s in want.items():
        g = by_body[b][0]
        for k in ("topic", "tag", "keys", "props", "id"):
            if k in s:
                check(g[k] == s[k], "%s: message %r field %s: got %r, sent %r" % (what, b[:30], k, g[k], s[k]))
        check(g["attempt"] == 1, "%s: message %r delivery_attempt %r on first delivery, want 1"
              % (what, b[:30], g["attempt"]))


# --------------------------------------------------------------------------- scenarios

TOPIC = "PyGrpc_" + RID
SENT = []


def s_send_receive():
    SERVER.create_topic(TOPIC, "NORMAL")
    p = started(Producer(config(), (TOPIC,)))
    for i in range(20):
        body = ("py-grpc-%d-%s" % (i, RID)).encode() + (b"z" * 5000 if i == 7 else b"")
        s = dict(topic=TOPIC, body=body, tag="TagA" if i % 2 == 0 else "TagB", keys={"K%d" % i, "KEY-%d" % i},
                 props={"uprop": "v%d" % i, "utf": "ü=é;€ x", "n": str(i)})
        r = p.send(message(TOPIC, body, s["tag"], sorted(s["keys"]), s["props"]))
        check(r.message_id, "send receipt without message id: %s" % r)
        s["id"] = r.message_id
        SENT.append(s)
    shutdown(p)
    c = simple_consumer("CG_PyGrpc_" + RID, TOPIC)
    got = receive_until(c, lambda g: len(g) >= len(SENT), 30)
    shutdown(c)
    expect_exactly([m for _, m in got], SENT, "SimpleConsumer")


def s_tag_filter():
    want = [s for s in SENT if s["tag"] == "TagB"]
    c = simple_consumer("CG_PyGrpcTagB_" + RID, TOPIC, "TagB")
    got = receive_until(c, lambda g: len(g) >= len(want), 30)
    shutdown(c)
    expect_exactly([m for _, m in got], want, "tag filter TagB")


def s_sql_filter():
    # user property n = 0..19 on the messages of send_receive
    want = [s for s in SENT if int(s["props"]["n"]) > 15 and s["tag"] == "TagA"]
    c = started(SimpleConsumer(config(), "CG_PyGrpcSql_" + RID,
                               {TOPIC: FilterExpression("n > 15 AND TAGS = 'TagA'", FilterType.SQL)},
                               await_duration=AWAIT))
    got = receive_until(c, lambda g: len(g) >= len(want), 30)
    shutdown(c)
    expect_exactly([m for _, m in got], want, "SQL92 filter n > 15 AND TAGS = 'TagA'")


def s_redelivery():
    topic = "PyGrpcRedeliver_" + RID
    SERVER.create_topic(topic, "NORMAL")
    p = started(Producer(config(), (topic,)))
    mid = p.send(message(topic, b"redeliver-me", "R", ["rk"], {"p": "1"})).message_id
    shutdown(p)
    c = simple_consumer("CG_PyGrpcRedeliver_" + RID, topic)
    first = receive_until(c, lambda g: len(g) >= 1, 20, invisible=10, ack=False)
    t1, m1 = first[0]
    check(m1.message_id == mid and m1.delivery_attempt == 1,
          "first delivery: id %s attempt %s, want %s attempt 1" % (m1.message_id, m1.delivery_attempt, mid))
    # not acked: must come back once the 10 s invisible time is over, with attempt 2
    again = receive_until(c, lambda g: len(g) >= 1, 30, invisible=10, ack=False)
    t2, m2 = again[0]
    c.ack(m2)
    shutdown(c)
    check(m2.message_id == mid, "redelivered a different message %s (want %s)" % (m2.message_id, mid))
    check(m2.delivery_attempt == 2, "redelivery delivery_attempt %s, want 2" % m2.delivery_attempt)
    check(t2 - t1 >= 9, "redelivered after %.1f s, before the 10 s invisible time" % (t2 - t1))
    check(bytes(m2.body) == b"redeliver-me" and m2.tag == "R" and set(m2.keys) == {"rk"}
          and dict(m2.properties) == {"p": "1"}, "redelivered message changed: %s" % m2)
    log("  redelivered after %.1f s with delivery_attempt 2" % (t2 - t1))


def s_change_invisible():
    topic = "PyGrpcInvisible_" + RID
    SERVER.create_topic(topic, "NORMAL")
    p = started(Producer(config(), (topic,)))
    mid = p.send(message(topic, b"change-invisible", "C")).message_id
    shutdown(p)
    c = simple_consumer("CG_PyGrpcInvisible_" + RID, topic)
    t1, m1 = receive_until(c, lambda g: len(g) >= 1, 20, invisible=60, ack=False)[0]
    old = m1.receipt_handle
    c.change_invisible_duration(m1, 2)  # 60 s -> 2 s from now; the SDK takes the new handle
    check(m1.receipt_handle and m1.receipt_handle != old, "ChangeInvisibleDuration returned no new receipt handle")
    t2, m2 = receive_until(c, lambda g: len(g) >= 1, 20, invisible=60, ack=False)[0]
    check(m2.message_id == mid, "got %s, want %s" % (m2.message_id, mid))
    check(m2.delivery_attempt == 2, "delivery_attempt %s after ChangeInvisibleDuration, want 2" % m2.delivery_attempt)
    check(t2 - t1 < 30, "redelivered after %.1f s: the 60 s invisible time was not shortened" % (t2 - t1))
    # extending works too, and the handle from the change acks the message
    c.change_invisible_duration(m2, 30)
    c.ack(m2)
    shutdown(c)
    log("  shortened to 2 s: redelivered after %.1f s" % (t2 - t1))


class Collect(MessageListener):
    def __init__(self, fail_first_of=None):
        self.got = []
        self.lock = threading.Lock()
        self.fail_first_of = fail_first_of
        self.failed = set()

    def consume(self, m):
        with self.lock:
            self.got.append((time.time(), m))
            b = bytes(m.body)
            if b == self.fail_first_of and b not in self.failed:
                self.failed.add(b)
                return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS

    def count(self):
        with self.lock:
            return len(self.got)


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while not pred():
        check(time.time() < deadline, "timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def s_push_consumer():
    topic = "PyGrpcPush_" + RID
    SERVER.create_topic(topic, "NORMAL")
    listener = Collect(fail_first_of=b"push-3")
    c = started(PushConsumer(config(), "CG_PyGrpcPush_" + RID, listener, {topic: FilterExpression("*")},
                             consumption_thread_count=4))
    p = started(Producer(config(), (topic,)))
    sent = []
    for i in range(10):
        body = ("push-%d" % i).encode()
        sent.append(dict(body=body, tag="P", keys={"pk%d" % i}, props={"i": str(i)},
                         id=p.send(message(topic, body, "P", ["pk%d" % i], {"i": str(i)})).message_id))
    shutdown(p)
    # 10 first deliveries + the FAILURE redelivered (nack = ChangeInvisibleDuration by the SDK)
    wait_for(lambda: listener.count() >= 11, 40, "10 messages + 1 redelivery in the push consumer")
    shutdown(c)
    with listener.lock:
        got = list(listener.got)
    firsts = [m for _, m in got if not (bytes(m.body) == b"push-3" and m.delivery_attempt != 1)]
    expect_exactly(firsts, sent, "PushConsumer")
    retried = [(t, m) for t, m in got if bytes(m.body) == b"push-3"]
    check(len(retried) == 2, "push-3 delivered %d times, want 2 (FAILURE once)" % len(retried))
    check(retried[1][1].delivery_attempt == 2, "push-3 redelivery attempt %s, want 2" % retried[1][1].delivery_attempt)
    log("  FAILURE redelivered after %.1f s" % (retried[1][0] - retried[0][0]))


def s_fifo():
    topic = "PyGrpcFifo_" + RID
    SERVER.create_topic(topic, "FIFO")
    p = started(Producer(config(), (topic,)))
    sent = {}
    for i in range(20):
        g = "group-%d" % (i % 3)
        sent.setdefault(g, []).append(i)
        p.send(message(topic, ("fifo-%d" % i).encode(), "F", props={"seq": str(i)}, group=g))
    shutdown(p)
    c = simple_consumer("CG_PyGrpcFifo_" + RID, topic)
    got = receive_until(c, lambda g: len(g) >= 20, 30)
    shutdown(c)
    order = {}
    for _, m in got:
        check(m.message_group, "FIFO message %r delivered without message_group" % bytes(m.body))
        order.setdefault(m.message_group, []).append(int(m.properties["seq"]))
    check(order == sent, "per-group order: got %r, sent %r" % (order, sent))


def s_fifo_push():
    """PushConsumer of an orderly group: the server's Settings must say fifo and messages of one
    group must reach the listener one after another in send order."""
    topic = "PyGrpcFifoPush_" + RID
    group = "CG_PyGrpcFifoPush_" + RID
    SERVER.create_topic(topic, "FIFO")
    SERVER.admin("updateSubGroup", "-c", "DefaultCluster", "-g", group, "-o", "true")
    seen = []
    lock = threading.Lock()

    class Slow(MessageListener):
        def consume(self, m):
            with lock:
                seen.append(int(m.properties["seq"]))
            time.sleep(0.02 * (10 - int(m.properties["seq"]) % 10))  # earlier ones take longer
            return ConsumeResult.SUCCESS

    c = started(PushConsumer(config(), group, Slow(), {topic: FilterExpression("*")}, consumption_thread_count=8))
    check(c.fifo, "PushConsumer of orderly group %s: the server's Settings answer has subscription.fifo=false "
                  "(Java proxy: fifo = group config consumeMessageOrderly), so the SDK consumes concurrently"
          % group)
    p = started(Producer(config(), (topic,)))
    for i in range(10):
        p.send(message(topic, ("fifo-push-%d" % i).encode(), "F", props={"seq": str(i)}, group="one-group"))
    shutdown(p)
    wait_for(lambda: len(seen) >= 10, 30, "10 FIFO messages in the push consumer")
    shutdown(c)
    check(seen[:10] == list(range(10)), "orderly push consumer saw %r" % seen)


def s_delay():
    topic = "PyGrpcDelay_" + RID
    SERVER.create_topic(topic, "DELAY")
    c = simple_consumer("CG_PyGrpcDelay_" + RID, topic)
    p = started(Producer(config(), (topic,)))
    # Message.delivery_timestamp is documented in milliseconds, but SDK 5.1.x copies it into
    # Timestamp.seconds unchanged (and reads it back from received messages in ms); the
    # server reads such a value as the milliseconds meant. Whole seconds (what the copy into
    # Timestamp.seconds would suggest) work too.
    deliver_at = (int(time.time()) + 4) * 1000
    mid = p.send(message(topic, b"delayed", "D", deliver_at=deliver_at)).message_id
    deliver_s = int(time.time()) + 5
    mid_s = p.send(message(topic, b"delayed-s", "D", deliver_at=deliver_s)).message_id
    # Two days ahead is within timerMaxDelaySec (3 days) and accepted; four days is refused.
    p.send(message(topic, b"in-two-days", "Later", deliver_at=int(time.time() * 1000) + 2 * 86400 * 1000))
    try:
        p.send(message(topic, b"in-four-days", "Later", deliver_at=int(time.time() * 1000) + 4 * 86400 * 1000))
        check(False, "a delivery time four days ahead was accepted")
    except Exception as e:  # the SDK raises its own exception type with the status code
        check("40012" in str(e) or "delivery" in str(e).lower(), "four days ahead refused with %s" % e)
    shutdown(p)
    got = receive_until(c, lambda g: len(g) >= 2, 25)
    shutdown(c)
    by_id = {m.message_id: (t, m) for t, m in got}
    check(set(by_id) == {mid, mid_s}, "got %s, want %s and %s" % (sorted(by_id), mid, mid_s))
    for want_id, want_ms in ((mid, deliver_at), (mid_s, deliver_s * 1000)):
        t, m = by_id[want_id]
        early = want_ms - t * 1000
        # RocketMQ's timer rounds the due time down to timerPrecisionMs (1 s; an exact second
        # moves one step earlier), so delivery up to 1 s early is correct.
        check(early < 1100, "delivered %.0f ms before its delivery timestamp" % early)
        check(-early < 10000, "delivered %.1f s after its delivery timestamp" % (-early / 1000))
        check(m.delivery_timestamp == want_ms and m.message_type == 3,
              "delivered with delivery_timestamp %r and message_type %r, want %r and 3 (DELAY)"
              % (m.delivery_timestamp, m.message_type, want_ms))
        log("  delivered %.2f s after the delivery timestamp" % (-early / 1000))


def s_recall():
    """RecallMessage (proto 2.0.4): a delay message recalled with the handle from its send
    receipt is never delivered; the one next to it is."""
    topic = "PyGrpcRecall_" + RID
    SERVER.create_topic(topic, "DELAY")
    c = simple_consumer("CG_PyGrpcRecall_" + RID, topic)
    p = started(Producer(config(), (topic,)))
    deliver_at = int(time.time() * 1000) + 4000
    kept = p.send(message(topic, b"kept", "R", deliver_at=deliver_at))
    gone = p.send(message(topic, b"recalled", "R", deliver_at=deliver_at))
    check(gone.recall_handle, "a delay message's send receipt has no recall handle")
    try:
        p.recall_message(topic, "not-a-handle")
        check(False, "a malformed recall handle was accepted")
    except AssertionError:
        raise
    except Exception as e:
        log("  malformed handle refused: %s" % str(e)[:100])
    check(p.recall_message(topic, gone.recall_handle) == gone.message_id,
          "recall_message did not answer the recalled message's id")
    shutdown(p)
    got = receive_until(c, lambda g: len(g) >= 1, 20)
    # past the due time of both: the recalled one must not follow
    time.sleep(2)
    got += [(time.time(), m) for m in c.receive(16, 15)]
    shutdown(c)
    bodies = [bytes(m.body) for _, m in got]
    check(bodies == [b"kept"], "received %r, want only b'kept'" % bodies)
    check(got[0][1].message_id == kept.message_id, "the kept message changed id")


def s_pull_offsets():
    """PullMessage, UpdateOffset, GetOffset and QueryOffset (proto 2.0.3, the PullConsumer's
    calls) through the SDK's own generated stubs: the SDK 5.1.2 has no PullConsumer yet."""
    import grpc
    from rocketmq.grpc_protocol import definition_pb2 as d, service_pb2 as sv
    from rocketmq.grpc_protocol import MessagingServiceStub
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp

    topic = "PyGrpcPull_" + RID
    group = "CG_PyGrpcPull_" + RID
    SERVER.create_topic(topic, "NORMAL")
    p = started(Producer(config(), (topic,)))
    sent = {}
    for i in range(12):
        tag = "A" if i % 2 == 0 else "B"
        r = p.send(message(topic, b"pull-%d" % i, tag))
        sent[b"pull-%d" % i] = (tag, r.message_id)
    shutdown(p)
    meta = (("x-mq-client-id", "pyinterop-pull-" + RID), ("x-mq-language", "PYTHON"),
            ("x-mq-protocol", "v2"))
    channel = grpc.insecure_channel(SERVER.grpc)
    stub = MessagingServiceStub(channel)

    def mq(qid):
        return d.MessageQueue(topic=d.Resource(name=topic), id=qid, broker=d.Broker(name="broker-a"))

    def query(qid, policy, ts_ms=None):
        req = sv.QueryOffsetRequest(message_queue=mq(qid), query_offset_policy=policy)
        if ts_ms is not None:
            req.timestamp.CopyFrom(Timestamp(seconds=ts_ms // 1000, nanos=(ts_ms % 1000) * 1000000))
        r = stub.QueryOffset(req, metadata=meta, timeout=5)
        check(r.status.code == d.Code.OK, "QueryOffset %d: %s" % (policy, r.status))
        return r.offset

    def pull(qid, offset, expr="*", poll_ms=0):
        f = d.FilterExpression(type=d.FilterType.TAG, expression=expr)
        req = sv.PullMessageRequest(group=d.Resource(name=group), message_queue=mq(qid), offset=offset,
                                    batch_size=32, filter_expression=f,
                                    long_polling_timeout=Duration(seconds=poll_ms // 1000,
                                                                  nanos=(poll_ms % 1000) * 1000000))
        status, msgs, nxt = None, [], None
        for resp in stub.PullMessage(req, metadata=meta, timeout=10):
            kind = resp.WhichOneof("content")
            if kind == "status":
                status = resp.status
            elif kind == "message":
                msgs.append(resp.message)
            elif kind == "next_offset":
                nxt = resp.next_offset
        check(status is not None, "PullMessage answered no status")
        return status.code, msgs, nxt

    ends = {q: query(q, d.QueryOffsetPolicy.END) for q in range(4)}
    check(sum(ends.values()) == 12, "queue ends %r do not add up to the 12 sent" % ends)
    check(all(query(q, d.QueryOffsetPolicy.BEGINNING) == 0 for q in range(4)), "a queue does not begin at 0")
    future = int(time.time() * 1000) + 3600 * 1000
    check(all(query(q, d.QueryOffsetPolicy.TIMESTAMP, future) == ends[q] for q in range(4)),
          "a timestamp after the last message does not give the queue's end")
    check(all(query(q, d.QueryOffsetPolicy.TIMESTAMP, 0) == 0 for q in range(4)),
          "a timestamp before the first message does not give 0")

    got = {}
    for q in range(4):
        code, msgs, nxt = pull(q, 0)
        check(code == d.Code.OK, "pull of queue %d from 0: %s" % (q, code))
        check(nxt == ends[q], "queue %d next_offset %r, want %d" % (q, nxt, ends[q]))
        for m in msgs:
            got[bytes(m.body)] = (m.system_properties.tag, m.system_properties.message_id)
        # at the end: nothing new, after a short long poll, and the same next offset
        t = time.time()
        code, msgs, nxt = pull(q, ends[q], poll_ms=500)
        check(code == d.Code.MESSAGE_NOT_FOUND and not msgs and nxt == ends[q],
              "pull at the end of queue %d: %s %d msgs next %r" % (q, code, len(msgs), nxt))
        check(time.time() - t < 5, "the long poll of an empty queue took %.1f s" % (time.time() - t))
    check(got == sent, "pulled %r, sent %r" % (sorted(got), sorted(sent)))
    tagged = []
    for q in range(4):
        code, msgs, _ = pull(q, 0, "A")
        tagged += [bytes(m.body) for m in msgs]
    check(sorted(tagged) == sorted(b for b, (t, _) in sent.items() if t == "A"),
          "tag filter A pulled %r" % sorted(tagged))

    def get_offset(qid):
        r = stub.GetOffset(sv.GetOffsetRequest(group=d.Resource(name=group), message_queue=mq(qid)),
                           metadata=meta, timeout=5)
        return r.status.code, r.offset

    code, _ = get_offset(1)
    check(code == d.Code.OFFSET_NOT_FOUND, "GetOffset before any commit: %s, want OFFSET_NOT_FOUND" % code)
    r = stub.UpdateOffset(sv.UpdateOffsetRequest(group=d.Resource(name=group), message_queue=mq(1), offset=2),
                          metadata=meta, timeout=5)
    check(r.status.code == d.Code.OK, "UpdateOffset: %s" % r.status)
    check(get_offset(1) == (d.Code.OK, 2), "GetOffset after UpdateOffset(2): %r" % (get_offset(1),))
    bad = stub.UpdateOffset(sv.UpdateOffsetRequest(group=d.Resource(name=group), message_queue=mq(1), offset=-5),
                            metadata=meta, timeout=5)
    check(bad.status.code == d.Code.ILLEGAL_OFFSET, "UpdateOffset(-5): %s" % bad.status)
    channel.close()
    log("  pulled %d messages from 4 queues, ends %r" % (len(got), ends))


class Checker(TransactionChecker):
    """Commits half messages with property resolve=commit; for the others the state stays
    unknown (raising makes the SDK send no EndTransaction), so the client decides."""

    def __init__(self):
        self.checked = []

    def check(self, m):
        self.checked.append(m)
        if m.properties.get("resolve") == "commit":
            return TransactionResolution.COMMIT
        raise RuntimeError("transaction state unknown: the client will end it itself")


def s_transaction():
    topic = "PyGrpcTx_" + RID
    SERVER.create_topic(topic, "TRANSACTION")
    checker = Checker()
    p = started(Producer(config(), (topic,), checker))
    c = simple_consumer("CG_PyGrpcTx_" + RID, topic)
    tx = p.begin_transaction()
    p.send(message(topic, b"tx-rollback", "T", ["txr"], {"resolve": "no"}), tx)
    tx.rollback()
    tx = p.begin_transaction()
    committed = p.send(message(topic, b"tx-commit", "T", ["txc"], {"resolve": "yes"}), tx)
    check(committed.transaction_id, "no transaction id in the send receipt")
    # neither the open half message nor the rolled-back one may be visible
    early = c.receive(16, 15)
    check(not early, "visible before commit: %r" % [bytes(m.body) for m in early])
    tx.commit()
    got = receive_until(c, lambda g: any(bytes(m.body) == b"tx-commit" for _, m in g), 20)
    shutdown(c)
    shutdown(p)
    bodies = [bytes(m.body) for _, m in got]
    check(bodies == [b"tx-commit"], "after commit got %r, want [b'tx-commit']" % bodies)
    m = got[0][1]
    check(m.message_id == committed.message_id and m.tag == "T" and set(m.keys) == {"txc"},
          "committed message changed: %s" % m)
    asked = [bytes(x.body) for x in checker.checked]
    check(b"tx-rollback" not in asked, "the server asked the checker about a rolled-back transaction: %r" % asked)
    log("  check-backs while the half message was open (answered 'unknown'): %d" % asked.count(b"tx-commit"))


def s_transaction_checkback():
    """An orphaned half message (never committed by the client) is resolved by the server's
    check-back: CHECK_TRANSACTION_STATE relayed as RecoverOrphanedTransactionCommand."""
    topic = "PyGrpcTxCheck_" + RID
    SERVER.create_topic(topic, "TRANSACTION")
    checker = Checker()
    p = started(Producer(config(), (topic,), checker))
    c = simple_consumer("CG_PyGrpcTxCheck_" + RID, topic)
    tx = p.begin_transaction()
    r = p.send(message(topic, b"orphan-commit", "O", props={"resolve": "commit"}), tx)
    got = receive_until(c, lambda g: len(g) >= 1, 40)
    shutdown(c)
    shutdown(p)
    m = got[0][1]
    check(bytes(m.body) == b"orphan-commit" and m.message_id == r.message_id, "got %s" % m)
    check(checker.checked and bytes(checker.checked[0].body) == b"orphan-commit"
          and checker.checked[0].properties.get("resolve") == "commit",
          "checker saw %r" % [str(x) for x in checker.checked])


SCENARIOS = [
    ("send_receive", s_send_receive),
    ("tag_filter", s_tag_filter),
    ("sql_filter", s_sql_filter),
    ("redelivery", s_redelivery),
    ("change_invisible", s_change_invisible),
    ("push_consumer", s_push_consumer),
    ("fifo", s_fifo),
    ("fifo_push", s_fifo_push),
    ("delay", s_delay),
    ("recall", s_recall),
    ("pull_offsets", s_pull_offsets),
    ("transaction", s_transaction),
    ("transaction_checkback", s_transaction_checkback),
]


def main():
    global SERVER
    only = set(filter(None, os.environ.get("INTEROP_ONLY", "").split(",")))
    SERVER = Server()

    def watchdog():
        time.sleep(TIMEOUT)
        print("INTEROP TIMEOUT after %.0f s; logs kept in %s" % (TIMEOUT, WORK), flush=True)
        SERVER.stop(kill=True)
        if not os.environ.get("INTEROP_KEEP"):
            shutil.rmtree(os.path.join(WORK, "store"), ignore_errors=True)
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()

    def on_term(signum, _frame):
        SERVER.stop(kill=True)
        if not os.environ.get("INTEROP_KEEP"):
            shutil.rmtree(os.path.join(WORK, "store"), ignore_errors=True)
        print("interrupted by signal %d; logs kept in %s" % (signum, WORK), flush=True)
        os._exit(2)
    signal.signal(signal.SIGTERM, on_term)
    passed, failed = [], []
    log("rocketmq-python-client %s, work dir %s" % (sdk_version(), WORK))
    try:
        try:
            SERVER.start()
            todo = [s for s in SCENARIOS if not only or s[0] in only]
        except Exception as e:
            log("FAIL start: %s" % e)
            failed.append("start")
            todo = []
        for name, fn in todo:
            t = time.time()
            try:
                fn()
                log("PASS %s (%.1f s)" % (name, time.time() - t))
                passed.append(name)
            except Exception as e:
                log("FAIL %s (%.1f s): %s" % (name, time.time() - t, e))
                traceback.print_exc(file=sys.stdout)
                failed.append(name)
            for client in list(CLIENTS):  # whatever a failed scenario left running
                shutdown(client)
    finally:
        for client in list(CLIENTS):
            shutdown(client)
        SERVER.stop()
    print("python gRPC interop, rocketmq-python-client %s" % sdk_version())
    print("interop: %d passed, %d failed" % (len(passed), len(failed)))
    if os.environ.get("INTEROP_KEEP"):
        print("work dir kept: %s" % WORK)
    elif failed:
        # keep the logs, not the store's pre-allocated commit-log segments
        shutil.rmtree(os.path.join(WORK, "store"), ignore_errors=True)
        print("failed: %s; server log and SDK log (logs/rocketmq_python/) kept in %s" % (", ".join(failed), WORK))
    else:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.stdout.flush()
    # SDK threads (grpc aio loop, schedulers) may still linger: do not wait for them.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
