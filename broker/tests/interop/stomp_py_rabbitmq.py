#!/usr/bin/python3
"""Debian's stomp.py 8.0.0 against a broker with RabbitMQ's STOMP conventions in a vhost.

    /usr/bin/python3 stomp_py_rabbitmq.py --port PORT --vhost /mcollective \
        [--other-vhost /other] [--login guest --passcode guest]

The vhost must hold the topic exchange `mcollective_broadcast` and the direct exchange
`mcollective_directed` (MCollective's layout). With --other-vhost, a vhost with the same
exchanges, isolation is checked too; with --unknown-vhost-refused, a CONNECT naming a vhost
that does not exist must get an ERROR. The same script runs against real RabbitMQ
(`scripts/peers/peer start rabbitmq`, then `--port 62615 --vhost /`), which is how its
expectations were checked.

Exit status: 0 = passed, 1 = failed, 3 = timed out.
"""

import argparse
import os
import signal
import sys
import threading
import time
import uuid

import stomp

WAIT = 15.0
QUIET = 1.0
RUN = uuid.uuid4().hex[:8]


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []
        self.errors = []
        self.receipts = []

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

    def wait(self, what, pred):
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("timed out waiting for %s (messages %r, errors %r)" % (
                        what, [m.body for m in self.messages], [e.headers for e in self.errors]))
                self.cond.wait(left)

    def take(self, n):
        self.wait("%d messages" % n, lambda: len(self.messages) >= n)
        with self.cond:
            got, self.messages = self.messages[:n], self.messages[n:]
        return got

    def quiet(self, what):
        time.sleep(QUIET)
        with self.cond:
            check(not self.messages, "unexpected %s: %r" % (what, [m.body for m in self.messages]))


_rid = [0]


def connect(args, vhost):
    conn = stomp.Connection11([(args.host, args.port)], vhost=vhost, heartbeats=(0, 0))
    col = Collector()
    conn.set_listener("c", col)
    conn.connect(args.login, args.passcode, wait=True)
    return conn, col


def sync(conn, col):
    """A receipt: every frame written before it has been handled."""
    _rid[0] += 1
    rid = "r-%d" % _rid[0]
    conn.send_frame("SEND", {"destination": "/exchange/mcollective_directed/%s.sync" % RUN,
                             "receipt": rid})
    col.wait("receipt " + rid, lambda: rid in col.receipts)


def case_exchanges(args):
    """Topic exchange bindings with `*` and `#`, direct exact keys, MESSAGE destinations."""
    node, ncol = connect(args, args.vhost)
    b = "/exchange/mcollective_broadcast"
    node.subscribe("%s/%s.rpcutil" % (b, RUN), id="exact")
    node.subscribe("%s/%s.*.c" % (b, RUN), id="star")
    node.subscribe("/exchange/mcollective_directed/%s.node1.example.com" % RUN, id="direct")
    other, ocol = connect(args, args.vhost)
    other.subscribe("%s/%s.#" % (b, RUN), id="hash")
    sync(node, ncol)
    sync(other, ocol)
    client, ccol = connect(args, args.vhost)
    client.send("%s/%s.rpcutil" % (b, RUN), "bcast", headers={"mc_sender": "admin"})
    got = ncol.take(1)[0]
    check(got.body == "bcast", "got %r" % got.body)
    check(got.headers.get("destination") == "%s/%s.rpcutil" % (b, RUN), "destination %r" % got.headers)
    check(got.headers.get("subscription") == "exact", "subscription %r" % got.headers)
    check(got.headers.get("mc_sender") == "admin", "custom header lost: %r" % got.headers)
    check(ocol.take(1)[0].body == "bcast", "`#` missed the broadcast")
    client.send("%s/%s.b.c" % (b, RUN), "star")
    got = ncol.take(1)[0]
    check(got.headers.get("subscription") == "star", "%r" % got.headers)
    check(got.headers.get("destination") == "%s/%s.b.c" % (b, RUN), "%r" % got.headers)
    check(ocol.take(1)[0].body == "star", "`#` missed a.b.c")
    client.send("%s/%s.b.b.c" % (b, RUN), "two-words")
    check(ocol.take(1)[0].body == "two-words", "`#` missed two words")
    ncol.quiet("delivery of a two-word key to `*`")
    client.send("/exchange/mcollective_directed/%s.node2.example.com" % RUN, "not-node1")
    client.send("/exchange/mcollective_directed/%s.node1.example.com" % RUN, "node1")
    got = ncol.take(1)[0]
    check(got.body == "node1" and got.headers.get("subscription") == "direct", "%r" % got.headers)
    ncol.quiet("direct message for another key")
    for c in (node, other, client):
        c.disconnect()


def case_subscription_queue(args):
    """An exchange subscription consumes a queue of its own: prefetch-count holds messages
    back, NACK redelivers, ACK lets the next one through."""
    b = "/exchange/mcollective_broadcast/%s.queued" % RUN
    node, ncol = connect(args, args.vhost)
    node.subscribe(b, id="q", ack="client-individual", headers={"prefetch-count": "1"})
    sync(node, ncol)
    client, ccol = connect(args, args.vhost)
    for body in ("m1", "m2"):
        client.send(b, body)
    first = ncol.take(1)[0]
    check(first.body == "m1", "got %r" % first.body)
    ncol.quiet("a second message past prefetch-count 1")
    node.nack(first.headers["message-id"], "q")
    again = ncol.take(1)[0]
    check(again.body == "m1", "NACK redelivered %r" % again.body)
    check(again.headers.get("redelivered") == "true", "not marked redelivered: %r" % again.headers)
    node.ack(again.headers["message-id"], "q")
    nxt = ncol.take(1)[0]
    check(nxt.body == "m2", "after the ACK got %r" % nxt.body)
    node.ack(nxt.headers["message-id"], "q")
    for c in (node, client):
        c.disconnect()


def case_durable_subscription(args):
    """durable:true with auto-delete:false keeps messages while the subscriber is away;
    UNSUBSCRIBE with durable:true deletes the subscription."""
    t = "/topic/%s.durable.#" % RUN
    headers = {"durable": "true", "auto-delete": "false"}
    sid = "%s-d" % RUN
    a, acol = connect(args, args.vhost)
    a.subscribe(t, id=sid, headers=headers)
    sync(a, acol)
    a.disconnect()
    client, ccol = connect(args, args.vhost)
    client.send("/topic/%s.durable.x" % RUN, "while-away")
    sync(client, ccol)
    b, bcol = connect(args, args.vhost)
    b.subscribe(t, id=sid, headers=headers)
    got = bcol.take(1)[0]
    check(got.body == "while-away", "got %r" % got.body)
    b.unsubscribe(sid, headers={"durable": "true", "auto-delete": "false"})
    sync(b, bcol)
    client.send("/topic/%s.durable.x" % RUN, "after-delete")
    sync(client, ccol)
    b.subscribe(t, id=sid, headers=headers)
    bcol.quiet("a message for a deleted durable subscription")
    b.unsubscribe(sid, headers={"durable": "true", "auto-delete": "false"})
    for c in (b, client):
        c.disconnect()


def case_temp_queue_reply(args):
    """reply-to:/temp-queue/x subscribes the sender; the receiver answers /reply-queue/…"""
    server, scol = connect(args, args.vhost)
    server.subscribe("/exchange/mcollective_broadcast/%s.discovery" % RUN, id="req")
    sync(server, scol)
    client, ccol = connect(args, args.vhost)
    reply_to = "/temp-queue/mcollective_reply_discovery"
    for n in range(2):
        client.send("/exchange/mcollective_broadcast/%s.discovery" % RUN, "ping-%d" % n,
                    headers={"reply-to": reply_to, "expiration": "70000"})
        req = scol.take(1)[0]
        rt = req.headers.get("reply-to", "")
        check(rt.startswith("/reply-queue/"), "reply-to not rewritten: %r" % rt)
        server.send(rt, "pong-%d" % n)
        rep = ccol.take(1)[0]
        check(rep.body == "pong-%d" % n, "got %r" % rep.body)
        check(rep.headers.get("subscription") == reply_to, "subscription %r" % rep.headers)
        # RabbitMQ shows a reply as a queue of the default exchange.
        check(rep.headers.get("destination", "").startswith("/queue/"), "destination %r" % rep.headers)
    server.disconnect()
    client.disconnect()


def case_queues(args):
    """/queue/ declares a shared queue that buffers; /amq/queue/ then consumes it."""
    q = "interop.%s.work" % RUN
    producer, pcol = connect(args, args.vhost)
    producer.send("/queue/" + q, "w1")
    sync(producer, pcol)
    consumer, ccol = connect(args, args.vhost)
    consumer.subscribe("/amq/queue/" + q, id="w")
    check(ccol.take(1)[0].body == "w1", "queued message lost")
    producer.disconnect()
    consumer.disconnect()


def case_isolation(args):
    """The same exchange and key in another vhost are other destinations."""
    if not args.other_vhost:
        return
    here, hcol = connect(args, args.vhost)
    here.subscribe("/exchange/mcollective_broadcast/%s.iso" % RUN, id="iso")
    sync(here, hcol)
    there, tcol = connect(args, args.other_vhost)
    there.send("/exchange/mcollective_broadcast/%s.iso" % RUN, "elsewhere")
    sync(there, tcol)
    hcol.quiet("a message from another vhost")
    same, scol = connect(args, args.vhost)
    same.send("/exchange/mcollective_broadcast/%s.iso" % RUN, "here")
    check(hcol.take(1)[0].body == "here", "own vhost's message lost")
    for c in (here, there, same):
        c.disconnect()


def case_unknown_vhost(args):
    if not args.unknown_vhost_refused:
        return
    conn = stomp.Connection11([(args.host, args.port)], vhost="/no-such-vhost-" + RUN)
    col = Collector()
    conn.set_listener("c", col)
    try:
        conn.connect(args.login, args.passcode, wait=True)
    except Exception:  # stomp.py raises when the connection closes before CONNECTED.
        pass
    col.wait("an ERROR for an unknown vhost", lambda: col.errors)
    check(col.errors[0].headers.get("message"), "ERROR without message: %r" % col.errors[0].headers)


CASES = [case_exchanges, case_subscription_queue, case_durable_subscription, case_temp_queue_reply, case_queues, case_isolation, case_unknown_vhost]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--vhost", required=True)
    p.add_argument("--other-vhost")
    p.add_argument("--unknown-vhost-refused", action="store_true")
    p.add_argument("--login", default="guest")
    p.add_argument("--passcode", default="guest")
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args()

    def watchdog(*_):
        sys.stderr.write("stomp_py_rabbitmq.py: timed out\n")
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(int(args.timeout))
    for case in CASES:
        print("case %s" % case.__name__, flush=True)
        try:
            case(args)
        except Failure as e:
            print("FAILED %s: %s" % (case.__name__, e), flush=True)
            os._exit(1)
    print("all passed", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
