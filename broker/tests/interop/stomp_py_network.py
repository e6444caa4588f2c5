#!/usr/bin/python3
"""Network of brokers with Debian's stomp.py 8.0.0: clients on two brokers, A and B,
linked by A's network connectors (MCollective's layout: a conduit topics connector and a
non-conduit queues connector, both duplex), exchange queue and topic messages both ways,
including a selector consumer on the far side.

    /usr/bin/python3 stomp_py_network.py --port-a PORT --port-b PORT [--host 127.0.0.1]

Exit status: 0 = passed, 1 = failed, 2 = usage error, 3 = timed out (watchdog).
Reuses the clients and helpers of stomp_py_cases.py (same directory).
"""

import argparse
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stomp_py_cases as base  # noqa: E402
from stomp_py_cases import CaseFailure, Client, bodies, check, log, queue, topic  # noqa: E402


def on(args, port):
    return argparse.Namespace(host=args.host, port=port, login="", passcode="")


def until_demand(producer, subscriber, dest):
    """Topics keep nothing without demand: probe until the far subscriber hears one, so
    that the bridge's demand subscription is known to be in place."""
    deadline = time.monotonic() + base.WAIT
    while time.monotonic() < deadline:
        producer.send(dest, "probe")
        time.sleep(0.1)
        if any(f.body == "probe" for f in subscriber.col.snapshot()):
            return
    raise CaseFailure("no demand for %s reached the other broker" % dest)


def real(frames):
    return [f for f in frames if f.body != "probe"]


def run(args):
    a, b = on(args, args.port_a), on(args, args.port_b)

    # Topic from A to a subscriber on B.
    news = topic("news")
    sub_b = Client(b, "subscriber-on-b").connect()
    sub_b.subscribe(news)
    producer_a = Client(a, "producer-on-a").connect()
    until_demand(producer_a, sub_b, news)
    for i in range(5):
        producer_a.send(news, "t%d" % i)
    sub_b.col.wait_for("t0..t4", lambda: len(real(sub_b.col.snapshot())) >= 5)
    got = real(sub_b.col.snapshot())
    check(bodies(got) == ["t%d" % i for i in range(5)], "topic across the bridge: %r" % bodies(got))
    for f in got:
        check(f.headers.get("stampede-broker-path") == "A",
              "broker path on B should be A, got %r" % f.headers.get("stampede-broker-path"))

    # Queue: messages sent on A before any consumer exists anywhere wait on A, and go to
    # B once a consumer subscribes there (store and forward).
    work = queue("work")
    for i in range(3):
        producer_a.send(work, "w%d" % i)
    worker_b = Client(b, "worker-on-b", version="1.1").connect()
    worker_b.subscribe(work, ack="client-individual")
    got = worker_b.col.wait_messages(3)
    check(bodies(got) == ["w0", "w1", "w2"], "queue across the bridge: %r" % bodies(got))
    for f in got:
        worker_b.ack(f)
    worker_b.col.quiet("further work")

    # A selector consumer on the far side gets exactly its messages (non-conduit queues).
    nodes = queue("nodes")
    node_b = Client(b, "node2-on-b").connect()
    node_b.subscribe(nodes, selector="mc_identity = 'node2'")
    other_b = Client(b, "node3-on-b").connect()
    other_b.subscribe(nodes, selector="mc_identity = 'node3'")
    for ident, body in (("node2", "for-2a"), ("node3", "for-3"), ("node1", "for-nobody"),
                        ("node2", "for-2b")):
        producer_a.send(nodes, body, mc_identity=ident)
    got = node_b.col.wait_messages(2)
    check(bodies(got) == ["for-2a", "for-2b"], "node2 got %r" % bodies(got))
    got = other_b.col.wait_messages(1)
    check(bodies(got) == ["for-3"], "node3 got %r" % bodies(got))
    node_b.col.quiet("other nodes' messages")
    other_b.col.quiet("other nodes' messages")

    # Duplex: the other way over the same connectors, a queue and a topic consumer on A.
    reply = queue("reply")
    client_a = Client(a, "client-on-a", version="1.0").connect()
    client_a.subscribe(reply)
    for i in range(3):
        node_b.send(reply, "r%d" % i)
    got = client_a.col.wait_messages(3)
    check(bodies(got) == ["r0", "r1", "r2"], "replies on A: %r" % bodies(got))
    check(got[0].headers.get("stampede-broker-path") == "B",
          "broker path on A should be B, got %r" % got[0].headers.get("stampede-broker-path"))
    events = topic("events")
    sub_a = Client(a, "subscriber-on-a").connect()
    sub_a.subscribe(events)
    until_demand(node_b, sub_a, events)
    node_b.send(events, "from-b")
    sub_a.col.wait_for("from-b", lambda: real(sub_a.col.snapshot()))
    check(bodies(real(sub_a.col.snapshot())) == ["from-b"], "topic from B: %r"
          % bodies(real(sub_a.col.snapshot())))
    # Nothing comes back to where it started.
    sub_b.col.quiet("messages sent on B returning to B")
    log("all exchanges across the bridge passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-a", type=int, required=True)
    parser.add_argument("--port-b", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=90.0, help="watchdog (s)")
    args = parser.parse_args()

    def watchdog(_signum, _frame):
        print("FAIL network: timed out after %.0fs (watchdog)" % args.timeout, flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    status = 0
    try:
        run(args)
        problems = [p for c in base.CLIENTS for p in c.col.problems]
        check(not problems, "MESSAGE frame problems:\n  " + "\n  ".join(problems))
        print("PASS network", flush=True)
    except CaseFailure as exc:
        print("FAIL network: %s" % exc, flush=True)
        status = 1
    except Exception:  # noqa: BLE001 - report any client exception as a failure
        print("FAIL network: unexpected exception\n%s" % traceback.format_exc(), flush=True)
        status = 1
    for c in base.CLIENTS:
        c.close_quietly()
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
