#!/usr/bin/env python3
"""A slotreg provider and consumer with redis-py, as any Redis client would.

It registers two instances of a service on one dedicated connection (a
publisher lives as long as the connection that registered it), subscribes
to the service on another, and prints every push it gets: first the state
at subscribe time, then the second instance going away when it is
unregistered, then the first when its connection closes.

    python3 examples/python/registry_demo.py --port 9600 --service demo-svc

Needs redis-py (Debian: apt-get install python3-redis; or pip install redis).
"""
import argparse
import json
import sys
import time

import redis


def publishers(push):
    """The (registerId, data) pairs of a SUBSCRIBE message, sorted."""
    d = json.loads(push["data"])
    return d["version"], sorted((p["registerId"], p["data"]) for p in d["publishers"])


def next_push(ps, deadline):
    """The next pub/sub message, or exit when none comes by deadline."""
    while time.monotonic() < deadline:
        m = ps.get_message(timeout=0.5)
        if m and m["type"] == "message":
            return m
    sys.exit("no push before the deadline")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9600)
    ap.add_argument("--password", default=None, help="the session's --requirepass, if any")
    ap.add_argument("--service", default="demo-svc")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each push")
    a = ap.parse_args()

    # The provider: one dedicated connection (a pooled one could be closed
    # by the pool, and its publishers with it).
    provider = redis.Redis(host=a.host, port=a.port, password=a.password, single_connection_client=True)
    for rid, addr in (("i1", "10.0.0.1:8080"), ("i2", "10.0.0.2:8080")):
        version = provider.execute_command("REGISTER", a.service, rid, addr)
        print(f"registered {rid} {addr} at version {version}", flush=True)

    # The consumer: the standard pub/sub API; the first message is the
    # state when it subscribed.
    consumer = redis.Redis(host=a.host, port=a.port, password=a.password, decode_responses=True)
    ps = consumer.pubsub()
    ps.subscribe(a.service)
    deadline = lambda: time.monotonic() + a.timeout

    version, pubs = publishers(next_push(ps, deadline()))
    print(f"push {version} {pubs}", flush=True)

    provider.execute_command("UNREGISTER", a.service, "i2")
    version, pubs = publishers(next_push(ps, deadline()))
    print(f"push {version} {pubs}", flush=True)

    # Its connection goes, and i1 with it (close() alone may hand the
    # connection back to a pool without closing it).
    provider.connection.disconnect()
    provider.close()
    version, pubs = publishers(next_push(ps, deadline()))
    print(f"push {version} {pubs}", flush=True)

    print("lookup", consumer.execute_command("LOOKUP", a.service), flush=True)
    ps.close()
    consumer.close()


if __name__ == "__main__":
    main()
