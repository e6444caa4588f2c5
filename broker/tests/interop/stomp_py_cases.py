#!/usr/bin/python3
"""Interop cases: Debian's stomp.py 8.0.0 (python3-stomp) against a STOMP broker.

Run with Debian's interpreter, which is the one that sees the python3-stomp package:

    /usr/bin/python3 stomp_py_cases.py --host 127.0.0.1 --port 61613 \
        --login alice --passcode secret --case queue_competing
    /usr/bin/python3 stomp_py_cases.py --list

Exit status: 0 = case passed, 1 = case failed, 2 = usage error, 3 = case timed out.
Every wait is bounded; a watchdog ends the process after --timeout seconds whatever happens.
Destination names carry a random run id, so cases never see each other's messages even
when several runs share one broker.

The authz_denied case expects a broker configured so that this login may write and read
/queue/app.> but not /queue/forbidden.> (see broker/tests/interop_python.rs).
"""

import argparse
import itertools
import os
import signal
import sys
import threading
import time
import traceback
import uuid

try:
    import stomp
    import stomp.protocol
except ImportError:
    sys.stderr.write(
        "stomp_py_cases.py: cannot import stomp (python3-stomp). Run scripts/install-test-deps "
        "and use /usr/bin/python3 (not a pyenv/venv python).\n"
    )
    sys.exit(2)

WAIT = 15.0  # seconds to wait for something that must happen
QUIET = 1.0  # seconds to watch for something that must NOT happen
RUN = uuid.uuid4().hex[:10]

CONNECTION_CLASSES = {
    "1.0": stomp.Connection10,
    "1.1": stomp.Connection11,
    "1.2": stomp.Connection12,
}
PROTOCOL_CLASSES = {
    "1.0": stomp.protocol.Protocol10,
    "1.1": stomp.protocol.Protocol11,
    "1.2": stomp.protocol.Protocol12,
}


class CaseFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CaseFailure(message)


def log(message):
    print("[py %8.3f] %s" % (time.monotonic() - START, message), flush=True)


START = time.monotonic()
_ids = itertools.count(1)


def next_id(prefix):
    return "%s-%d" % (prefix, next(_ids))


def queue(name):
    return "/queue/interop.%s.%s" % (RUN, name)


def topic(name):
    return "/topic/interop.%s.%s" % (RUN, name)


def bodies(frames):
    return [f.body for f in frames]


# --------------------------------------------------------------------------- connections


class Collector(stomp.ConnectionListener):
    """Records everything one connection receives; waits are bounded."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.cond = threading.Condition()
        self.connected = None
        self.messages = []
        self.errors = []
        self.receipts = []
        self.disconnected = False
        self.problems = []

    # listener callbacks (receiver thread)
    def on_connected(self, frame):
        with self.cond:
            self.connected = frame
            self.cond.notify_all()

    def on_message(self, frame):
        with self.cond:
            self.messages.append(frame)
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.append(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_disconnected(self):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def check_raw_message(self, raw):
        """Checks on the MESSAGE bytes as they came off the wire (stomp.py keeps only the
        first of repeated headers, so duplicates are only visible here)."""
        raw = raw.lstrip(b"\r\n")
        end = raw.find(b"\n\n")
        sep = 2
        crlf = raw.find(b"\r\n\r\n")
        if crlf != -1 and (end == -1 or crlf < end):
            end, sep = crlf, 4
        if end == -1:
            self.problems.append("%s: MESSAGE without a blank line after the headers" % self.name)
            return
        lines = raw[:end].decode("utf-8", "replace").replace("\r\n", "\n").split("\n")[1:]
        body = raw[end + sep:]
        keys = [line.split(":", 1)[0] for line in lines]
        values = {}
        for line in lines:
            key, _, value = line.partition(":")
            values.setdefault(key, value)
        dups = sorted({k for k in keys if keys.count(k) > 1})
        if dups:
            self.problems.append("%s: MESSAGE repeats header(s) %s: %r" % (self.name, dups, lines))
        if keys.count("content-length") != 1:
            self.problems.append(
                "%s: MESSAGE has %d content-length headers (want exactly 1): %r"
                % (self.name, keys.count("content-length"), lines)
            )
        elif values["content-length"].strip() != str(len(body)):
            self.problems.append(
                "%s: MESSAGE content-length %s but body has %d bytes"
                % (self.name, values["content-length"], len(body))
            )
        required = ["destination", "message-id"]
        if self.version != "1.0":
            required.append("subscription")
        for key in required:
            if key not in values:
                self.problems.append("%s: MESSAGE lacks %s: %r" % (self.name, key, lines))

    # waiting (main thread)
    def wait_for(self, what, predicate, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CaseFailure(
                        "%s: timed out after %.0fs waiting for %s; got messages %r, errors %r"
                        % (self.name, timeout, what, bodies(self.messages)[:20],
                           [(e.headers, e.body) for e in self.errors])
                    )
                self.cond.wait(remaining)

    def wait_messages(self, count, timeout=WAIT):
        self.wait_for("%d message(s)" % count, lambda: len(self.messages) >= count, timeout)
        with self.cond:
            return list(self.messages)

    def wait_receipt(self, receipt_id, timeout=WAIT):
        self.wait_for("RECEIPT %s" % receipt_id, lambda: receipt_id in self.receipts, timeout)

    def wait_error(self, timeout=WAIT):
        self.wait_for("an ERROR frame", lambda: bool(self.errors), timeout)
        with self.cond:
            return self.errors[0]

    def quiet(self, what, seconds=QUIET):
        """Asserts that no further MESSAGE arrives within `seconds`."""
        with self.cond:
            before = len(self.messages)
        time.sleep(seconds)
        with self.cond:
            extra = self.messages[before:]
        check(not extra, "%s: expected no %s, but got %r" % (self.name, what, bodies(extra)))

    def snapshot(self):
        with self.cond:
            return list(self.messages)


class Client:
    """One stomp.py connection plus its collector and protocol-version helpers."""

    def __init__(self, args, name, version="1.2", login=None, passcode=None, binary=False):
        self.name = name
        self.version = version
        self.col = Collector(name, version)
        kwargs = dict(host_and_ports=[(args.host, args.port)], reconnect_attempts_max=1,
                      auto_decode=not binary)
        if version != "1.0":
            kwargs["vhost"] = "localhost"
        self.conn = CONNECTION_CLASSES[version](**kwargs)
        self.conn.set_listener("collector", self.col)
        transport = self.conn.transport
        original = transport.process_frame

        def checked(frame, raw):
            if frame.cmd == "MESSAGE":
                self.col.check_raw_message(raw)
            original(frame, raw)

        transport.process_frame = checked
        self.login = args.login if login is None else login
        self.passcode = args.passcode if passcode is None else passcode
        CLIENTS.append(self)

    def connect(self, expect_ok=True):
        self.conn.connect(self.login, self.passcode, wait=False)
        col = self.col
        col.wait_for("CONNECTED", lambda: col.connected is not None or col.errors or col.disconnected)
        if expect_ok:
            check(col.connected is not None,
                  "%s: CONNECT as %r failed: errors %r, disconnected %s"
                  % (self.name, self.login, [(e.headers, e.body) for e in col.errors], col.disconnected))
            version = col.connected.headers.get("version", "1.0")
            check(version == self.version,
                  "%s: asked for STOMP %s, broker answered version %r" % (self.name, self.version, version))
        return self

    def send(self, destination, body, receipt=True, **headers):
        rid = next_id("send") if receipt else None
        if rid:
            headers["receipt"] = rid
        self.conn.send(destination, body, headers=headers)
        if rid:
            self.col.wait_receipt(rid)

    def subscribe(self, destination, ack="auto", sub_id=None, receipt=True, **headers):
        # STOMP 1.0 subscriptions go without an id, as MCollective sends them.
        if self.version != "1.0":
            sub_id = sub_id or next_id("sub")
        rid = next_id("subscribe") if receipt else None
        if rid:
            headers["receipt"] = rid
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers=headers)
        if rid:
            self.col.wait_receipt(rid)
        return sub_id

    def ack(self, frame, transaction=None, receipt=True):
        rid = next_id("ack") if receipt else None
        if self.version == "1.2":
            self.conn.ack(frame.headers["ack"], transaction=transaction, receipt=rid)
        elif self.version == "1.1":
            self.conn.ack(frame.headers["message-id"], frame.headers["subscription"],
                          transaction=transaction, receipt=rid)
        else:
            self.conn.ack(frame.headers["message-id"], transaction=transaction, receipt=rid)
        if rid:
            self.col.wait_receipt(rid)

    def nack(self, frame, receipt=True, **headers):
        rid = next_id("nack") if receipt else None
        if self.version == "1.2":
            self.conn.nack(frame.headers["ack"], receipt=rid, **headers)
        elif self.version == "1.1":
            self.conn.nack(frame.headers["message-id"], frame.headers["subscription"], receipt=rid,
                           **headers)
        else:
            raise CaseFailure("NACK needs STOMP 1.1+")
        if rid:
            self.col.wait_receipt(rid)

    def frame_with_receipt(self, method, *args, **headers):
        """BEGIN/COMMIT/ABORT with a receipt, waiting for it."""
        rid = next_id(method)
        getattr(self.conn, method)(*args, headers={"receipt": rid}, **headers)
        self.col.wait_receipt(rid)

    def disconnect(self, graceful=True):
        """graceful: DISCONNECT with a receipt, then wait for the socket to close.
        Otherwise drop the TCP connection without a DISCONNECT frame (a crashed client)."""
        if graceful:
            rid = next_id("disconnect")
            PROTOCOL_CLASSES[self.version].disconnect(self.conn, receipt=rid)
            self.col.wait_receipt(rid)
            self.col.wait_for("socket close after DISCONNECT", lambda: self.col.disconnected)
        else:
            self.conn.transport.disconnect_socket()

    def close_quietly(self):
        try:
            if not self.col.disconnected:
                self.conn.transport.disconnect_socket()
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


CLIENTS = []

# --------------------------------------------------------------------------- cases

CASES = {}


def case(func):
    CASES[func.__name__] = func
    return func


@case
def queue_competing(args):
    """2 consumers on one queue share 10 messages: none lost, none duplicated, both get some."""
    q = queue("competing")
    consumers = [Client(args, "consumer%d" % i).connect() for i in (1, 2)]
    for c in consumers:
        c.subscribe(q)
    producer = Client(args, "producer").connect()
    for i in range(10):
        producer.send(q, "m%d" % i, receipt=(i == 9))
    deadline = time.monotonic() + WAIT
    while sum(len(c.col.snapshot()) for c in consumers) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(QUIET)  # let any duplicate show up
    got = [bodies(c.col.snapshot()) for c in consumers]
    everything = got[0] + got[1]
    check(sorted(everything) == sorted("m%d" % i for i in range(10)),
          "want m0..m9 exactly once across both consumers, got %r" % got)
    check(all(got), "both competing consumers should get messages, got %r" % got)
    for c in consumers:
        for f in c.col.snapshot():
            check(f.headers.get("destination") == q,
                  "MESSAGE destination %r, want %r" % (f.headers.get("destination"), q))
    log("split %d/%d" % (len(got[0]), len(got[1])))


@case
def queue_buffered(args):
    """Messages sent before any consumer exists are kept and delivered in order."""
    q = queue("buffered")
    producer = Client(args, "producer").connect()
    for i in range(5):
        producer.send(q, "b%d" % i)
    producer.disconnect()
    consumer = Client(args, "consumer", version="1.1").connect()
    consumer.subscribe(q)
    got = bodies(consumer.col.wait_messages(5))
    check(got == ["b%d" % i for i in range(5)], "want b0..b4 in order, got %r" % got)
    consumer.col.quiet("further messages")


@case
def topic_fanout(args):
    """Every topic subscriber gets every message; nothing is kept without subscribers."""
    t = topic("fanout")
    producer = Client(args, "producer").connect()
    producer.send(t, "before-any-subscriber")
    subs = [Client(args, "subscriber%d" % i, version=v).connect() for i, v in ((1, "1.0"), (2, "1.2"))]
    for s in subs:
        s.subscribe(t)
    for i in range(5):
        producer.send(t, "t%d" % i)
    for s in subs:
        got = bodies(s.col.wait_messages(5))
        check(got == ["t%d" % i for i in range(5)],
              "%s: want t0..t4 (and not the message sent before it subscribed), got %r" % (s.name, got))
        s.col.quiet("further messages")


@case
def wildcard_star(args):
    """'*' matches exactly one name segment."""
    base = "interop.%s.star" % RUN
    sub = Client(args, "subscriber").connect()
    sub.subscribe("/topic/%s.*" % base)
    producer = Client(args, "producer").connect()
    for suffix in ("a", "a.b", "b"):
        producer.send("/topic/%s.%s" % (base, suffix), suffix)
    producer.send("/topic/interop.%s.other.a" % RUN, "other")
    got = sub.col.wait_messages(2)
    sub.col.quiet("messages for a.b or other")
    # Sorted: the contract orders messages per destination, and these are two destinations.
    check(sorted(bodies(got)) == ["a", "b"], "'%s.*' should match a and b only, got %r" % (base, bodies(got)))
    for f in got:
        check(f.headers.get("destination") == "/topic/%s.%s" % (base, f.body),
              "MESSAGE destination should be the concrete destination, got %r for %r"
              % (f.headers.get("destination"), f.body))


@case
def wildcard_gt(args):
    """'>' matches one or more trailing segments, on topics and on queues."""
    base = "interop.%s.gt" % RUN
    sub = Client(args, "subscriber").connect()
    sub.subscribe("/topic/%s.>" % base)
    qsub = Client(args, "queue-subscriber").connect()
    qsub.subscribe("/queue/%s.>" % base)
    producer = Client(args, "producer").connect()
    for suffix in ("a", "a.b", "a.b.c"):
        producer.send("/topic/%s.%s" % (base, suffix), suffix)
    producer.send("/topic/interop.%s.other.a" % RUN, "other")
    producer.send("/queue/%s.x.y" % base, "queued")
    got = sub.col.wait_messages(3)
    sub.col.quiet("a message for another prefix")
    check(sorted(bodies(got)) == ["a", "a.b", "a.b.c"],
          "'%s.>' should match a, a.b, a.b.c; got %r" % (base, bodies(got)))
    for f in got:
        check(f.headers.get("destination") == "/topic/%s.%s" % (base, f.body),
              "MESSAGE destination should be the concrete destination, got %r for %r"
              % (f.headers.get("destination"), f.body))
    qgot = qsub.col.wait_messages(1)
    check(bodies(qgot) == ["queued"], "queue wildcard subscriber got %r" % bodies(qgot))
    check(qgot[0].headers.get("destination") == "/queue/%s.x.y" % base,
          "destination %r" % qgot[0].headers.get("destination"))


@case
def selector_equality(args):
    """String equality selectors, on a topic and on a queue (the MCollective mc_identity pattern)."""
    t = topic("colors")
    red = Client(args, "red").connect()
    red.subscribe(t, selector="color = 'red'")
    anyc = Client(args, "all").connect()
    anyc.subscribe(t)
    producer = Client(args, "producer").connect()
    for i, color in enumerate(["red", "blue", "red", "green"]):
        producer.send(t, "%s-%d" % (color, i), color=color)
    producer.send(t, "uncoloured")
    check(bodies(anyc.col.wait_messages(5)) == ["red-0", "blue-1", "red-2", "green-3", "uncoloured"],
          "unfiltered subscriber got %r" % bodies(anyc.col.snapshot()))
    got = red.col.wait_messages(2)
    red.col.quiet("non-red messages")
    check(bodies(got) == ["red-0", "red-2"], "selector color = 'red' got %r" % bodies(got))

    # Directed queue messages: the one for node2 sits at the head of the queue while only node1
    # has a consumer; node1's message must still get through, and node2 gets its own later.
    q = queue("nodes")
    node1 = Client(args, "node1", version="1.0").connect()
    node1.subscribe(q, selector="mc_identity = 'node1'")
    producer.send(q, "for-node2", mc_identity="node2")
    producer.send(q, "for-node1", mc_identity="node1")
    got = node1.col.wait_messages(1)
    node1.col.quiet("node2's message at node1")
    check(bodies(got) == ["for-node1"], "node1 got %r" % bodies(got))
    check(got[0].headers.get("mc_identity") == "node1", "mc_identity header %r" % got[0].headers)
    node2 = Client(args, "node2", version="1.0").connect()
    node2.subscribe(q, selector="mc_identity = 'node2'")
    got = node2.col.wait_messages(1)
    check(bodies(got) == ["for-node2"], "node2 got %r" % bodies(got))


@case
def selector_numeric(args):
    """`n > 5` compares numerically although STOMP header values are strings."""
    t = topic("numbers")
    sub = Client(args, "subscriber").connect()
    sub.subscribe(t, selector="n > 5")
    producer = Client(args, "producer").connect()
    for n in ("3", "7", "10", "5", "42", "-1"):
        producer.send(t, "n=%s" % n, n=n)
    producer.send(t, "no-n")
    got = sub.col.wait_messages(3)
    sub.col.quiet("messages with n <= 5 or without n")
    check(bodies(got) == ["n=7", "n=10", "n=42"],
          "selector n > 5 should pick 7, 10, 42 (10 > 5 numerically, not as text); got %r" % bodies(got))


def _redelivery_check(args, q, want, consumer_version="1.2"):
    """A fresh consumer drains `q`; it must get exactly `want`, each with redelivered:true."""
    consumer = Client(args, "second-consumer", version=consumer_version).connect()
    consumer.subscribe(q)
    got = consumer.col.wait_messages(len(want))
    consumer.col.quiet("more messages")
    check(bodies(got) == want, "after disconnect the queue should redeliver %r, got %r" % (want, bodies(got)))
    for f in got:
        check(f.headers.get("redelivered") == "true",
              "redelivered message %r lacks redelivered:true; headers %r" % (f.body, f.headers))


@case
def ack_auto(args):
    """ack:auto messages count as consumed on delivery: nothing comes back after a disconnect."""
    q = queue("ack-auto")
    producer = Client(args, "producer").connect()
    first = Client(args, "first-consumer", version="1.0").connect()
    first.subscribe(q, ack="auto")
    for i in range(3):
        producer.send(q, "a%d" % i)
    check(bodies(first.col.wait_messages(3)) == ["a0", "a1", "a2"], "got %r" % bodies(first.col.snapshot()))
    first.disconnect()
    second = Client(args, "second-consumer").connect()
    second.subscribe(q)
    producer.send(q, "marker")
    got = second.col.wait_messages(1)
    second.col.quiet("redelivered auto-acked messages")
    check(bodies(got) == ["marker"], "auto-acked messages came back: %r" % bodies(got))
    check(got[0].headers.get("redelivered", "false") != "true", "marker flagged redelivered: %r" % got[0].headers)


@case
def ack_client(args):
    """ack:client is cumulative: ACK of the 2nd message acks the 1st too; the rest is redelivered."""
    q = queue("ack-client")
    producer = Client(args, "producer").connect()
    for i in range(4):
        producer.send(q, "c%d" % i)
    first = Client(args, "first-consumer", version="1.1").connect()
    first.subscribe(q, ack="client")
    got = first.col.wait_messages(4)
    check(bodies(got) == ["c0", "c1", "c2", "c3"], "got %r" % bodies(got))
    first.ack(got[1])
    first.disconnect(graceful=False)
    _redelivery_check(args, q, ["c2", "c3"])


@case
def ack_client_individual(args):
    """ack:client-individual acks one message only; unacked ones are redelivered after disconnect."""
    q = queue("ack-individual")
    producer = Client(args, "producer").connect()
    for i in range(4):
        producer.send(q, "i%d" % i)
    first = Client(args, "first-consumer", version="1.2").connect()
    first.subscribe(q, ack="client-individual")
    got = first.col.wait_messages(4)
    check(bodies(got) == ["i0", "i1", "i2", "i3"], "got %r" % bodies(got))
    for f in got:
        check("ack" in f.headers, "STOMP 1.2 MESSAGE for a client-individual subscription lacks ack: %r" % f.headers)
    first.ack(got[1])
    first.ack(got[3])
    first.disconnect()
    _redelivery_check(args, q, ["i0", "i2"])


@case
def nack_requeue(args):
    """NACK puts the message back; it is redelivered with redelivered:true."""
    q = queue("nack")
    producer = Client(args, "producer").connect()
    producer.send(q, "nack-me")
    consumer = Client(args, "consumer", version="1.2").connect()
    consumer.subscribe(q, ack="client-individual")
    first = consumer.col.wait_messages(1)[0]
    check(first.body == "nack-me", "got %r" % first.body)
    consumer.nack(first)
    got = consumer.col.wait_messages(2)
    again = got[1]
    check(again.body == "nack-me", "after NACK want the same message again, got %r" % bodies(got))
    check(again.headers.get("redelivered") == "true", "redelivery lacks redelivered:true: %r" % again.headers)
    consumer.ack(again)
    consumer.disconnect()
    # Acked now: a new consumer sees only a fresh marker.
    _check_queue_holds_only_marker(args, q, producer)


def _check_queue_holds_only_marker(args, q, producer):
    check_consumer = Client(args, "checker").connect()
    check_consumer.subscribe(q)
    producer.send(q, "marker")
    got = check_consumer.col.wait_messages(1)
    check_consumer.col.quiet("leftover messages")
    check(bodies(got) == ["marker"], "queue should hold nothing but the marker, got %r" % bodies(got))


@case
def nack_dlq(args):
    """NACK with requeue:false sends the message to /queue/ActiveMQ.DLQ instead of back to the queue."""
    _nack_dlq(args, "nack-dlq", "1.1", "false")


@case
def nack_dlq_python_false(args):
    """NACK with Python's False (stomp.py writes the header as requeue:False) dead-letters too."""
    _nack_dlq(args, "nack-dlq-py", "1.2", False)


def _nack_dlq(args, name, version, requeue):
    q = queue(name)
    producer = Client(args, "producer").connect()
    # persistent:true because ActiveMQ (the reference broker) dead-letters persistent messages only.
    # Each case tags its message with its own queue name: the DLQ is shared by the broker.
    producer.send(q, "poison", interop_run=RUN, interop_queue=name, persistent="true")
    consumer = Client(args, "consumer", version=version).connect()
    consumer.subscribe(q, ack="client-individual")
    first = consumer.col.wait_messages(1)[0]
    consumer.nack(first, requeue=requeue)
    consumer.col.quiet("a redelivery after NACK requeue:false")
    dlq = Client(args, "dlq-reader").connect()
    # The DLQ is shared by everything on the broker: only look at this run's message.
    dlq.subscribe("/queue/ActiveMQ.DLQ", selector="interop_run = '%s' AND interop_queue = '%s'" % (RUN, name))
    got = dlq.col.wait_messages(1)
    check(bodies(got) == ["poison"], "DLQ got %r" % bodies(got))
    consumer.disconnect()
    _check_queue_holds_only_marker(args, q, producer)


@case
def tx_commit(args):
    """SENDs inside a transaction are delivered only at COMMIT, all of them, in order."""
    q = queue("tx-commit")
    consumer = Client(args, "consumer").connect()
    consumer.subscribe(q)
    producer = Client(args, "producer").connect()
    tx = next_id("tx")
    producer.frame_with_receipt("begin", tx)
    for i in range(3):
        producer.send(q, "tx%d" % i, transaction=tx)
    consumer.col.quiet("messages before COMMIT")
    producer.frame_with_receipt("commit", tx)
    got = consumer.col.wait_messages(3)
    check(bodies(got) == ["tx0", "tx1", "tx2"], "after COMMIT got %r" % bodies(got))
    consumer.col.quiet("duplicates")


@case
def tx_abort(args):
    """SENDs inside an aborted transaction are never delivered."""
    q = queue("tx-abort")
    consumer = Client(args, "consumer").connect()
    consumer.subscribe(q)
    producer = Client(args, "producer").connect()
    tx = next_id("tx")
    producer.frame_with_receipt("begin", tx)
    for i in range(3):
        producer.send(q, "aborted%d" % i, transaction=tx)
    producer.frame_with_receipt("abort", tx)
    producer.send(q, "after-abort")
    got = consumer.col.wait_messages(1)
    consumer.col.quiet("aborted messages")
    check(bodies(got) == ["after-abort"], "aborted SENDs were delivered: %r" % bodies(got))


@case
def tx_ack(args):
    """An ACK inside a committed transaction counts; one inside an aborted transaction does not."""
    q = queue("tx-ack")
    producer = Client(args, "producer").connect()
    producer.send(q, "k0")
    producer.send(q, "k1")
    consumer = Client(args, "consumer", version="1.2").connect()
    consumer.subscribe(q, ack="client-individual")
    got = consumer.col.wait_messages(2)
    check(bodies(got) == ["k0", "k1"], "got %r" % bodies(got))
    t1, t2 = next_id("tx"), next_id("tx")
    consumer.frame_with_receipt("begin", t1)
    consumer.ack(got[0], transaction=t1)
    consumer.frame_with_receipt("commit", t1)
    consumer.frame_with_receipt("begin", t2)
    consumer.ack(got[1], transaction=t2)
    consumer.frame_with_receipt("abort", t2)
    consumer.disconnect()
    _redelivery_check(args, q, ["k1"])


@case
def receipts(args):
    """Every frame with a receipt header gets a RECEIPT with the same receipt-id."""
    q = queue("receipts")
    c = Client(args, "client", version="1.2").connect()
    ids = []

    def expect(rid):
        ids.append(rid)
        c.col.wait_receipt(rid)

    c.conn.subscribe(q, id="s1", ack="client-individual", headers={"receipt": "r-subscribe"})
    expect("r-subscribe")
    c.conn.send(q, "hello", headers={"receipt": "r-send"})
    expect("r-send")
    msg = c.col.wait_messages(1)[0]
    c.conn.begin("t1", headers={"receipt": "r-begin"})
    expect("r-begin")
    c.conn.send(q, "in-tx", headers={"receipt": "r-send-tx", "transaction": "t1"})
    expect("r-send-tx")
    c.conn.ack(msg.headers["ack"], transaction="t1", receipt="r-ack")
    expect("r-ack")
    c.conn.commit("t1", headers={"receipt": "r-commit"})
    expect("r-commit")
    c.conn.begin("t2", headers={"receipt": "r-begin2"})
    expect("r-begin2")
    c.conn.abort("t2", headers={"receipt": "r-abort"})
    expect("r-abort")
    c.conn.unsubscribe("s1", headers={"receipt": "r-unsubscribe"})
    expect("r-unsubscribe")
    # A receipt id with characters that need escaping in STOMP 1.1+ headers.
    c.conn.send(q, "odd", headers={"receipt": "r:odd\\id"})
    expect("r:odd\\id")
    PROTOCOL_CLASSES["1.2"].disconnect(c.conn, receipt="r-disconnect")
    expect("r-disconnect")
    c.col.wait_for("socket close after DISCONNECT", lambda: c.col.disconnected)
    check(sorted(c.col.receipts) == sorted(ids),
          "want exactly one RECEIPT per request %r, got %r" % (ids, c.col.receipts))


BINARY = bytes(range(256)) * 4 + b"\x00\x00tail\x00"


@case
def binary_body(args):
    """A body with all 256 byte values and NULs round-trips byte-exact (content-length framing)."""
    q = queue("binary")
    t = topic("binary")
    consumer = Client(args, "consumer", binary=True, version="1.0").connect()
    consumer.subscribe(q)
    consumer.subscribe(t)
    producer = Client(args, "producer", version="1.2").connect()
    producer.send(q, BINARY, **{"content-type": "application/octet-stream"})
    producer.send(t, BINARY[::-1])
    producer.send(q, b"\x00")
    got = consumer.col.wait_messages(3)
    by_dest = {}
    for f in got:
        by_dest.setdefault(f.headers.get("destination"), []).append(f.body)
    check(by_dest.get(q, [None])[0] == BINARY,
          "queue body differs: sent %d bytes, got %r" % (len(BINARY), [len(b) for b in by_dest.get(q, [])]))
    check(by_dest.get(t) == [BINARY[::-1]], "topic body differs: got lengths %r" % [len(b) for b in by_dest.get(t, [])])
    check(by_dest.get(q, [None, None])[1:] == [b"\x00"], "a lone NUL body did not round-trip: %r" % by_dest.get(q))


@case
def custom_headers(args):
    """Custom SEND headers reach the consumer unchanged, next to destination/message-id/subscription."""
    q = queue("headers")
    consumer = Client(args, "consumer", version="1.2").connect()
    sub_id = consumer.subscribe(q, sub_id="my-sub")
    producer = Client(args, "producer", version="1.1").connect()
    custom = {
        "x-trace-id": "abc-123",
        "mc_sender": "interop-py",
        "mc_identity": "node-07",
        "reply-to": "/queue/interop.%s.replies" % RUN,
        "x-with-colon": "a:b:c",
        "x-with-spaces": "  padded value ",
        "x-unicode": "h\u00e9llo \u2603",
        "x-backslash": "c:\\dir\\file",
        "x-empty-ish": "-",
    }
    producer.send(q, "with headers", **{"content-type": "text/x-interop"}, **custom)
    msg = consumer.col.wait_messages(1)[0]
    for key, value in custom.items():
        check(msg.headers.get(key) == value,
              "header %s: sent %r, got %r (all headers %r)" % (key, value, msg.headers.get(key), msg.headers))
    check(msg.headers.get("content-type", "").startswith("text/x-interop"),
          "content-type %r" % msg.headers.get("content-type"))
    check(msg.headers.get("destination") == q, "destination %r" % msg.headers.get("destination"))
    check(msg.headers.get("subscription") == sub_id, "subscription %r, want %r" % (msg.headers.get("subscription"), sub_id))
    check(msg.headers.get("message-id"), "no message-id")
    check(msg.body == "with headers", "body %r" % msg.body)


@case
def priority(args):
    """Queued messages are delivered highest priority first (FIFO within a priority)."""
    q = queue("priority")
    producer = Client(args, "producer").connect()
    for body, prio in (("p1", 1), ("p9a", 9), ("p4", 4), ("p0", 0), ("p9b", 9), ("p7", 7)):
        producer.send(q, body, priority=str(prio))
    consumer = Client(args, "consumer").connect()
    consumer.subscribe(q)
    got = consumer.col.wait_messages(6)
    check(bodies(got) == ["p9a", "p9b", "p7", "p4", "p1", "p0"], "priority order wrong: %r" % bodies(got))
    check(got[0].headers.get("priority") == "9", "priority header %r" % got[0].headers.get("priority"))


@case
def expires(args):
    """A message whose absolute `expires` (epoch ms) has passed is never delivered."""
    q = queue("expires")
    producer = Client(args, "producer").connect()
    now = int(time.time() * 1000)
    producer.send(q, "already-expired", expires=str(now - 60000))
    producer.send(q, "expires-soon", expires=str(now + 1500))
    producer.send(q, "long-lived", expires=str(now + 600000))
    producer.send(q, "no-expiry")
    time.sleep(3.0)
    consumer = Client(args, "consumer").connect()
    consumer.subscribe(q)
    got = consumer.col.wait_messages(2)
    consumer.col.quiet("expired messages")
    check(bodies(got) == ["long-lived", "no-expiry"], "want only unexpired messages, got %r" % bodies(got))
    check(got[0].headers.get("expires") == str(now + 600000), "expires header %r" % got[0].headers.get("expires"))
    # A live topic subscriber must not get an already-expired message either.
    t = topic("expires")
    consumer.subscribe(t)
    producer.send(t, "expired-on-topic", expires=str(int(time.time() * 1000) - 60000))
    producer.send(t, "live-on-topic")
    got = consumer.col.wait_messages(3)[2:]
    consumer.col.quiet("expired topic message")
    check(bodies(got) == ["live-on-topic"], "topic delivered %r" % bodies(got))


@case
def auth_failure(args):
    """Wrong passcode: an ERROR frame with a message header, then the broker closes the socket."""
    bad = Client(args, "bad-login", version="1.2", passcode=args.passcode + "-wrong")
    bad.connect(expect_ok=False)
    if bad.col.connected is not None:
        raise CaseFailure("CONNECT with a wrong passcode was accepted: %r" % bad.col.connected.headers)
    err = bad.col.wait_error()
    check(err.headers.get("message"), "ERROR frame without a message header: %r" % err.headers)
    bad.col.wait_for("the broker to close the socket", lambda: bad.col.disconnected)
    log("ERROR message: %r" % err.headers.get("message"))
    # Same for STOMP 1.0 and an unknown user.
    stranger = Client(args, "unknown-user", version="1.0", login="nobody-%s" % RUN, passcode="x")
    stranger.connect(expect_ok=False)
    check(stranger.col.connected is None, "unknown user was accepted")
    check(stranger.col.wait_error().headers.get("message"), "ERROR without message")
    stranger.col.wait_for("the broker to close the socket", lambda: stranger.col.disconnected)
    # The right passcode still works.
    Client(args, "good-login").connect()


@case
def authz_denied(args):
    """A denied SEND/SUBSCRIBE gets an ERROR naming destination and operation; the connection stays usable."""
    forbidden = "/queue/forbidden.%s" % RUN
    allowed = "/queue/app.interop.%s" % RUN
    c = Client(args, "client", version="1.2").connect()
    c.conn.send(forbidden, "nope", headers={"receipt": "r-denied-send"})
    err = c.col.wait_error()
    text = "%s %s" % (err.headers.get("message", ""), err.body)
    check(("forbidden.%s" % RUN) in text, "ERROR should name the destination: %r / %r" % (err.headers, err.body))
    check("write" in text.lower(), "ERROR should name the operation 'write': %r / %r" % (err.headers, err.body))
    check(err.headers.get("receipt-id") == "r-denied-send",
          "ERROR should carry receipt-id r-denied-send: %r" % err.headers)
    c.conn.subscribe(forbidden, id="denied-sub", headers={"receipt": "r-denied-sub"})
    c.col.wait_for("a second ERROR", lambda: len(c.col.errors) >= 2)
    err = c.col.errors[1]
    text = "%s %s" % (err.headers.get("message", ""), err.body)
    check(("forbidden.%s" % RUN) in text and "read" in text.lower(),
          "SUBSCRIBE denial should name destination and 'read': %r / %r" % (err.headers, err.body))
    check(err.headers.get("receipt-id") == "r-denied-sub", "receipt-id %r" % err.headers)
    # The connection is still open and works for allowed destinations.
    check(not c.col.disconnected, "broker closed the connection after a denial")
    c.subscribe(allowed)
    c.send(allowed, "allowed")
    got = c.col.wait_messages(1)
    check(bodies(got) == ["allowed"], "allowed queue delivered %r" % bodies(got))
    check(not c.col.receipts.count("r-denied-send"), "a denied SEND must not also get a RECEIPT")


# --------------------------------------------------------------------------- runner


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--login", default="")
    parser.add_argument("--passcode", default="")
    parser.add_argument("--case")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--timeout", type=float, default=90.0, help="watchdog for the whole case (s)")
    args = parser.parse_args()
    if args.list:
        for name, func in CASES.items():
            print("%-22s %s" % (name, (func.__doc__ or "").strip().split("\n")[0]))
        return 0
    if not args.case or args.port is None:
        parser.error("--port and --case are required (or --list)")
    func = CASES.get(args.case)
    if func is None:
        parser.error("unknown case %r; known: %s" % (args.case, ", ".join(CASES)))

    def watchdog(_signum, _frame):
        print("FAIL %s: timed out after %.0fs (watchdog)" % (args.case, args.timeout), flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    log("case %s against %s:%d as %r (run id %s)" % (args.case, args.host, args.port, args.login, RUN))
    status = 0
    try:
        func(args)
        problems = [p for c in CLIENTS for p in c.col.problems]
        check(not problems, "MESSAGE frame problems:\n  " + "\n  ".join(problems))
        print("PASS %s" % args.case, flush=True)
    except CaseFailure as exc:
        print("FAIL %s: %s" % (args.case, exc), flush=True)
        status = 1
    except Exception:  # noqa: BLE001 - report any client exception as a failure
        print("FAIL %s: unexpected exception\n%s" % (args.case, traceback.format_exc()), flush=True)
        status = 1
    for c in CLIENTS:
        c.close_quietly()
    sys.stdout.flush()
    os._exit(status)  # stomp.py threads must not keep the process alive


if __name__ == "__main__":
    sys.exit(main())
