#!/usr/bin/env python3
"""Load generator of bench/watch-run: idle GET /sync/watch streams while devices push bundles.

    watch_client.py --port P --tokens FILE --watchers N --devices D --seconds S [--baseline S0]
                    --watch-pid PID

Phases, each printed as one "key value" line per figure on standard output:
  1. baseline: D device processes push one-row bundles (create, chunk, commit) for S0 seconds
     with no stream open: bundles/s.
  2. N streams are opened (HTTP/1.0, one socket each, held by one process with selectors): the
     watch process's VmRSS before and after gives its memory per stream. One stream per device
     user (D of them) measures latency; the other N - D belong to users nobody writes (idle).
  3. the devices push again for S seconds with the streams open: bundles/s, and for every
     commit the time from the commit's answer (and from sending it) to the event of that
     bundle_seq on the stream of that user: p50, p99, max.
Timestamps are CLOCK_MONOTONIC (time.monotonic), common to all processes of the machine.
TOKENS: one "user token" line per user; the first D users are the devices'.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import os
import selectors
import socket
import sys
import time
import uuid


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(conn, method, path, token, source, body=None):
    headers = {"Authorization": "Bearer " + token, "Oversync-Source-ID": source}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def device(port, user, token, seconds, start_at, out, phase):
    try:
        device_run(port, user, token, seconds, start_at, out, phase)
    except Exception as e:  # reported, not left for the parent to wait on
        out.put(("error", f"device {user}: {e!r}"))


def device_run(port, user, token, seconds, start_at, out, phase):
    """Pushes one-row bundles until the time is up; sends (user, seq, t_sent, t_answered)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    source = f"bench-dev-{user}-{phase}"   # a fresh source per phase: its bundle ids start at 1
    status, data = request(conn, "POST", "/sync/connect", token, source, {"has_local_pending_rows": False})
    if status != 200:
        out.put(("error", f"connect {status} {data[:200]!r}"))
        return
    while time.monotonic() < start_at:
        time.sleep(0.01)
    end = start_at + seconds
    n = 0
    sbid = 0
    results = []
    while time.monotonic() < end:
        sbid += 1
        status, data = request(conn, "POST", "/sync/push-sessions", token, source,
                               {"source_bundle_id": sbid, "planned_row_count": 1})
        if status != 200:
            out.put(("error", f"push create {status} {data[:200]!r}"))
            return
        push_id = json.loads(data)["push_id"]
        rid = str(uuid.uuid4())
        status, data = request(conn, "POST", f"/sync/push-sessions/{push_id}/chunks", token, source,
                               {"start_row_ordinal": 0, "rows": [{"schema": "business", "table": "users",
                                "key": {"id": rid}, "op": "INSERT", "base_row_version": 0,
                                "payload": {"id": rid, "name": "bench", "email": rid + "@example.com"}}]})
        if status != 200:
            out.put(("error", f"push chunk {status} {data[:200]!r}"))
            return
        t_sent = time.monotonic()
        status, data = request(conn, "POST", f"/sync/push-sessions/{push_id}/commit", token, source)
        t_answered = time.monotonic()
        if status != 200:
            out.put(("error", f"push commit {status} {data[:200]!r}"))
            return
        results.append((user, json.loads(data)["bundle_seq"], t_sent, t_answered))
        n += 1
    out.put(("done", results))


def run_devices(port, devices, seconds, phase):
    out = mp.Queue()
    start_at = time.monotonic() + 2.0
    procs = [mp.Process(target=device, args=(port, u, t, seconds, start_at, out, phase)) for u, t in devices]
    for p in procs:
        p.start()
    commits = []
    for _ in procs:
        kind, value = out.get()
        if kind == "error":
            sys.exit("bench/watch_client: " + value)
        commits.extend(value)
    for p in procs:
        p.join()
    return commits, seconds


def watcher(port, users, ready, stop, out):
    """Holds one stream per (user, token); records (user, bundle_seq, time) of every event."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for user, token in users:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall((f"GET /sync/watch HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                   f"Oversync-Source-ID: bench-watch-{user}\r\n\r\n").encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, user)
        bufs[s] = [b"", False]
    opened = 0
    events = []
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            now = time.monotonic()
            if not chunk:
                sel.unregister(s)
                s.close()
                out.put(("error", f"stream of {key.data} ended"))
                continue
            b = bufs[s]
            b[0] += chunk
            if not b[1]:
                i = b[0].find(b"\r\n\r\n")
                if i < 0:
                    continue
                head = b[0][:i].decode()
                if " 200 " not in head.split("\r\n")[0]:
                    out.put(("error", "stream refused: " + head.split("\r\n")[0]))
                b[0] = b[0][i + 4:]
                b[1] = True
                opened += 1
                if opened == len(users):
                    ready.set()
            while b"\n\n" in b[0]:
                frame, b[0] = b[0].split(b"\n\n", 1)
                if frame.startswith(b"event: bundle\ndata: "):
                    seq = json.loads(frame[len(b"event: bundle\ndata: "):])["bundle_seq"]
                    events.append((key.data, seq, now))
    out.put(("events", events))
    for key in list(sel.get_map().values()):
        key.fileobj.close()


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--baseline", type=float, default=30)
    ap.add_argument("--watch-pid", type=int, required=True)
    ap.add_argument("--web-pid", type=int, default=0)
    a = ap.parse_args()
    users = [line.split() for line in open(a.tokens) if line.strip()]
    if len(users) < a.watchers or len(users) < a.devices:
        sys.exit("bench/watch_client: not enough users in " + a.tokens)
    devices = users[:a.devices]

    commits, secs = run_devices(a.port, devices, a.baseline, "a")
    print(f"baseline_bundles {len(commits)}")
    print(f"baseline_bundles_per_s {len(commits) / secs:.1f}")

    # every device user gets one stream (latency), the rest are idle users' streams
    watched = devices + users[a.devices:a.watchers]
    rss0 = rss_kib(a.watch_pid)
    web0 = rss_kib(a.web_pid) if a.web_pid else 0
    ready, stop, out = mp.Event(), mp.Event(), mp.Queue()
    w = mp.Process(target=watcher, args=(a.port, watched, ready, stop, out))
    t0 = time.monotonic()
    w.start()
    if not ready.wait(120):
        stop.set()
        sys.exit("bench/watch_client: the streams did not all open")
    print(f"streams_opened {len(watched)} in_s {time.monotonic() - t0:.2f}")
    time.sleep(1.0)
    rss1 = rss_kib(a.watch_pid)
    print(f"watch_rss_kib_before {rss0}")
    print(f"watch_rss_kib_with_streams {rss1}")
    print(f"watch_rss_bytes_per_stream {(rss1 - rss0) * 1024 / len(watched):.0f}")
    if a.web_pid:
        web1 = rss_kib(a.web_pid)
        print(f"web_server_rss_kib_before {web0} with_streams {web1} bytes_per_stream {(web1 - web0) * 1024 / len(watched):.0f}")

    commits, secs = run_devices(a.port, devices, a.seconds, "b")
    time.sleep(1.0)
    rss2 = rss_kib(a.watch_pid)
    stop.set()
    kind, events = out.get()
    while kind == "error":
        sys.exit("bench/watch_client: " + events)
    w.join()
    print(f"watched_bundles {len(commits)}")
    print(f"watched_bundles_per_s {len(commits) / secs:.1f}")
    print(f"watch_rss_kib_after_load {rss2}")
    first = {}
    for user, seq, t in events:
        first.setdefault((user, seq), t)
    from_answer, from_sent, missing = [], [], 0
    for user, seq, t_sent, t_answered in commits:
        t = first.get((user, seq))
        if t is None:
            missing += 1   # coalesced into a newer event (a hint, not a log)
            continue
        from_answer.append((t - t_answered) * 1000)
        from_sent.append((t - t_sent) * 1000)
    print(f"events {len(events)} commits_without_own_event {missing}")
    for name, v in (("latency_from_commit_answer_ms", from_answer), ("latency_from_commit_sent_ms", from_sent)):
        print(f"{name} p50 {pct(v, 50):.2f} p99 {pct(v, 99):.2f} max {max(v) if v else float('nan'):.2f}")


if __name__ == "__main__":
    main()
