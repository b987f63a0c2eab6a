#!/usr/bin/env python3
"""Helpers for bench/run_replication.sh. Every socket operation has a
timeout. The KV client, the measurements and the percentile definition
(nearest rank) are guests/linux/guest_client.py's.

usage:
  replication_helper.py churn HOST N              CHURN N over the KV port; exit 0 on OK
  replication_helper.py latency HOST N            N sequential SETs, then N GETs, on one
                                                  connection (kv_latency, as linux_client.py):
                                                  JSON with p50/p99 of each
  replication_helper.py stream HOST MIB           MIB through the guest's stream service each
                                                  way: JSON with MB/s out and in
  replication_helper.py collect EVENTS SKIP N SECS
                                                  waits (at most SECS) until N checkpoint
                                                  events follow the first SKIP lines of
                                                  EVENTS (`colo events --json` output);
                                                  JSON: downtime p50/p99/max, dirty pages,
                                                  the phases' medians, checkpoints per second
  replication_helper.py client HOST STOP_FILE     one connection, SET+GET pairs without
                                                  pause until STOP_FILE exists; every reply
                                                  checked, every acknowledged key read back
                                                  at the end; JSON with the reply times
  replication_helper.py gap CLIENT_JSON KILL_TIME the service gap around a kill (wall clock)
  replication_helper.py report RESULTS.jsonl      prints the tables
  replication_helper.py threads LABEL=PID...      a snapshot of the processes' threads: the CPU
                                                  time each used and the time it was runnable
                                                  but waiting for a CPU (/proc's schedstat); JSON
  replication_helper.py thread_load BEFORE AFTER  two snapshots: JSON {"LABEL/THREAD": [CPU %,
                                                  waited %]} of the time between them, threads
                                                  of one name summed, the busiest first
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests", "linux"))
from guest_client import (count_wrong_keys, kv_latency, kv_request, median, percentile,  # noqa: E402
                          set_get_pairs, stream_throughput)


def churn_main(args):
    host, rate = args[0], int(args[1])
    try:
        reply = kv_request(host, f"CHURN {rate}")
    except OSError as error:
        sys.exit(f"CHURN {rate}: {type(error).__name__}: {error}")
    sys.exit(0 if reply == "OK" else 1)


def latency_main(args):
    # The same measurement as bench/run_linux.sh's (linux_client.py).
    host, requests = args[0], int(args[1])
    measured = kv_latency(host, requests)
    result = {"requests": requests}
    for kind in ("SET", "GET"):
        result[kind.lower() + "_p50_ms"] = round(measured[kind]["p50_ms"], 3)
        result[kind.lower() + "_p99_ms"] = round(measured[kind]["p99_ms"], 3)
    print(json.dumps(result))


def stream_main(args):
    # 8 MiB each way through the guest's stream service (linux_client.py).
    host, megabytes = args[0], int(args[1])
    result = stream_throughput(host, megabytes << 20)
    print(json.dumps({key: round(value, 1) for key, value in result.items()}))


def checkpoint_events(path, skip):
    events = []
    with open(path) as lines:
        for number, line in enumerate(lines):
            if number < skip:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("what") == "checkpoint" and "checkpoint" in event:
                events.append(event["checkpoint"])
    return events


def collect_main(args):
    path, skip, wanted, limit = args[0], int(args[1]), int(args[2]), float(args[3])
    started = time.monotonic()
    first_seen = None
    events = []
    while time.monotonic() - started < limit:
        events = checkpoint_events(path, skip)
        if events and first_seen is None:
            first_seen = (time.monotonic(), len(events))
        if len(events) >= wanted + 1:
            break
        time.sleep(0.02)
    ended = time.monotonic()
    # The rate over the checkpoints seen after the first one arrived: the
    # first's start is not known here.
    rate = None
    if first_seen and len(events) > first_seen[1] and ended > first_seen[0]:
        rate = (len(events) - first_seen[1]) / (ended - first_seen[0])
    events = events[1:wanted + 1]   # the first may have begun before this level's churn
    if not events:
        print(json.dumps({"checkpoints": 0}))
        return
    downtimes = [e["downtime_ms"] for e in events]
    pages = [e["dirty_pages"] for e in events]
    summary = {
        "checkpoints": len(events),
        "downtime_p50_ms": median(downtimes), "downtime_p99_ms": percentile(downtimes, 0.99),
        "downtime_max_ms": max(downtimes),
        "pages_p50": median(pages), "pages_min": min(pages), "pages_max": max(pages),
        "kib_p50": round(median([e["bytes"] for e in events]) / 1024, 1),
        "rate_per_s": round(rate, 1) if rate else None,
    }
    for phase in ("pause", "send", "apply", "resume", "suspend"):
        summary[phase + "_p50_ms"] = median([e[phase + "_ms"] for e in events])
    # Before the pause, the PVM running: the secondary confirming a large
    # pre-copy (0 where the pre-copy was too small to be confirmed).
    summary["confirm_p50_ms"] = median([e.get("confirm_ms", 0) for e in events])
    # From the pause until this checkpoint's output was released (the
    # PVM may have run again before: resumed_before_ready).
    summary["output_p50_ms"] = median([e.get("output_ms", 0) for e in events])
    print(json.dumps(summary))


def client_main(args):
    host, stop_file = args[0], args[1]
    times = []
    started = time.monotonic()
    pairs, acknowledged, error = set_get_pairs(
        host, lambda: not os.path.exists(stop_file) and time.monotonic() - started < 600,
        "g", 2000, on_reply=lambda: times.append(time.time()))
    lost = None
    try:
        lost = count_wrong_keys(host, acknowledged)
    except OSError as problem:
        error = error or f"cannot read the keys back: {problem}"
    print(json.dumps({"pairs": pairs, "error": error, "keys": len(acknowledged), "lost_keys": lost,
                      "times": times}))


def gap_main(args):
    """The service gap around a kill: the longest silence between two replies
    from the last reply before the kill to 3 s after it (replies already on
    their way when the primary died can end the first silence early)."""
    data = json.load(open(args[0]))
    kill = float(args[1])
    times = data["times"]
    before = [t for t in times if t <= kill]
    gaps_before = [b - a for a, b in zip(before, before[1:])]
    result = {"pairs": data["pairs"], "error": data["error"], "lost_keys": data["lost_keys"],
              "keys": data["keys"],
              "normal_max_gap_ms": round(max(gaps_before) * 1000, 1) if gaps_before else None,
              "normal_p50_gap_ms": round(median(gaps_before) * 1000, 1) if gaps_before else None}
    window = [t for t in times if (not before or t >= before[-1]) and t <= kill + 3]
    if before and len(window) >= 2:
        gaps = [(b - a, b) for a, b in zip(window, window[1:])]
        longest, ended = max(gaps)
        result["gap_ms"] = round(longest * 1000, 1)
        result["gap_end_after_kill_ms"] = round((ended - kill) * 1000, 1)
    print(json.dumps(result))


def fmt(value, spec="", missing="-"):
    return missing if value is None else format(value, spec)


def report_main(args):
    rows = [json.loads(line) for line in open(args[0]) if line.strip()]
    levels = [r for r in rows if r["kind"] == "level"]
    latency = [r for r in rows if r["kind"] == "latency"]
    kills = [r for r in rows if r["kind"] == "kill"]
    maxrate = [r for r in rows if r["kind"] == "max_rate"]
    print()
    print("Checkpoint downtime (PVM paused, from its pause to its resume) against the pages the PVM")
    print("dirtied per checkpoint (the churner's rate x the interval, plus the guest's own writes):")
    print()
    print(f"{'target pages':>12} | {'interval':>8} | {'ckpts':>5} | {'pages p50 (min-max)':>21} | {'KiB p50':>8} | "
          f"{'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | {'ckpt/s':>6} | phases p50 ms: pause send apply resume (suspend; confirm; output)")
    for r in levels:
        print(f"{r['level']:>12} | {r['interval_ms']:>6}ms | {fmt(r.get('checkpoints')):>5} | "
              f"{fmt(r.get('pages_p50')):>7} ({fmt(r.get('pages_min'))}-{fmt(r.get('pages_max'))})".ljust(46) + " | "
              f"{fmt(r.get('kib_p50'), '8.1f'):>8} | {fmt(r.get('downtime_p50_ms'), '7.2f'):>7} | "
              f"{fmt(r.get('downtime_p99_ms'), '7.2f'):>7} | {fmt(r.get('downtime_max_ms'), '7.2f'):>7} | "
              f"{fmt(r.get('rate_per_s'), '6.1f'):>6} | {fmt(r.get('pause_p50_ms'), '.2f')} "
              f"{fmt(r.get('send_p50_ms'), '.2f')} {fmt(r.get('apply_p50_ms'), '.2f')} {fmt(r.get('resume_p50_ms'), '.2f')} "
              f"({fmt(r.get('suspend_p50_ms'), '.2f')}; {fmt(r.get('confirm_p50_ms'), '.2f')}; "
              f"{fmt(r.get('output_p50_ms'), '.2f')})")
    if maxrate:
        print()
        print("Highest checkpoint rate (interval 1 ms):")
        for r in maxrate:
            print(f"  churn {r['churn']} pages/s: {fmt(r.get('rate_per_s'), '.1f')} checkpoints/s, "
                  f"downtime p50 {fmt(r.get('downtime_p50_ms'), '.2f')} ms, pages p50 {fmt(r.get('pages_p50'))}")
    if latency:
        print()
        print("KV request latency, sequential requests on one connection (ms):")
        print()
        print(f"{'VM':<52} | {'SET p50':>8} | {'SET p99':>8} | {'GET p50':>8} | {'GET p99':>8} | "
              f"{'checkpoints':>11} | stream out / in MB/s")
        for r in latency:
            print(f"{r['what']:<52} | {fmt(r.get('set_p50_ms'), '8.2f'):>8} | {fmt(r.get('set_p99_ms'), '8.2f'):>8} | "
                  f"{fmt(r.get('get_p50_ms'), '8.2f'):>8} | {fmt(r.get('get_p99_ms'), '8.2f'):>8} | "
                  f"{fmt(r.get('checkpoints')):>11} | {fmt(r.get('guest_to_client_MBps'))} / "
                  f"{fmt(r.get('client_to_guest_MBps'))}")
    if kills:
        print()
        print("kill -9 (kill*) or SIGSTOP (stop*) of the primary, a client doing SET+GET pairs on one")
        print("connection (wall clock; 'failover' is when the script saw it in the secondary's log):")
        print()
        print(f"{'trial':>6} | {'gap ms':>7} | {'gap ends after kill ms':>22} | {'normal gap p50/max ms':>21} | "
              f"{'failover after kill ms':>22} | client")
        for r in kills:
            client = "ok" if not r.get("error") and r.get("lost_keys") == 0 else \
                f"{r.get('error') or ''} lost {r.get('lost_keys')}"
            print(f"{r['trial']:>6} | {fmt(r.get('gap_ms'), '7.1f'):>7} | {fmt(r.get('gap_end_after_kill_ms'), '22.1f'):>22} | "
                  f"{fmt(r.get('normal_p50_gap_ms'), '.1f'):>9} / {fmt(r.get('normal_max_gap_ms'), '.1f'):<9} | "
                  f"{fmt(r.get('failover_ms'), '22.0f'):>22} | {client} ({r.get('keys')} keys)")
        for kind, name in (("kill", "kill -9"), ("stop", "SIGSTOP")):
            gaps = sorted(r["gap_ms"] for r in kills if r.get("gap_ms") is not None and r["trial"].startswith(kind))
            if gaps:
                print(f"service gap after {name}: median {median(gaps):.1f} ms, max {gaps[-1]:.1f} ms over {len(gaps)} trials")


def threads_main(args):
    # schedstat: nanoseconds on a CPU, nanoseconds runnable but waiting
    # for one, time slices. A thread that ended meanwhile is left out.
    snapshot = {"at": time.monotonic(), "threads": []}
    for arg in args:
        label, _, pid = arg.partition("=")
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as comm, open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                    name = comm.read().strip()
                    ran, waited = (int(x) for x in stat.read().split()[:2])
            except (OSError, ValueError):
                continue
            snapshot["threads"].append([label, tid, name, ran, waited])
    print(json.dumps(snapshot))


def thread_load_main(args):
    before, after = json.loads(args[0]), json.loads(args[1])
    seconds = after["at"] - before["at"]
    start = {(label, tid): (ran, waited) for label, tid, _, ran, waited in before["threads"]}
    load = {}
    for label, tid, name, ran, waited in after["threads"] if seconds > 0 else []:
        if (label, tid) not in start:
            continue
        ran0, waited0 = start[(label, tid)]
        key = f"{label}/{name}"
        cpu, wait = load.get(key, (0.0, 0.0))
        load[key] = (cpu + (ran - ran0) / 1e9 / seconds * 100, wait + (waited - waited0) / 1e9 / seconds * 100)
    busiest = sorted(load.items(), key=lambda item: -item[1][0])
    print(json.dumps({key: [round(cpu, 1), round(wait, 1)] for key, (cpu, wait) in busiest if cpu >= 0.5}))


def main():
    handlers = {"churn": churn_main, "latency": latency_main, "stream": stream_main, "collect": collect_main, "client": client_main,
                "gap": gap_main, "report": report_main, "threads": threads_main, "thread_load": thread_load_main}
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) < 3 or sys.argv[1] not in handlers:
        sys.exit(__doc__)
    handlers[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
