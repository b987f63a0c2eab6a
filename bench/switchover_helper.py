#!/usr/bin/env python3
"""Helpers for bench/run_switchover.sh. The KV client and the percentile
definition (nearest rank) are guests/linux/guest_client.py's.

usage:
  switchover_helper.py client HOST STOP_FILE OUT_JSON
        one connection, SET+GET pairs without pause until STOP_FILE exists
        (no time limit: it writes through the whole run); every reply
        checked, every acknowledged key read back at the end; OUT_JSON gets
        the pairs, the error, the keys, the lost keys and the reply times
        (wall clock)
  switchover_helper.py wait-copy SOCKET START_FILE LIMIT
        once the VM answers, creates START_FILE.ready and waits for
        START_FILE (the wall-clock time `colo protect` was started); then
        polls the VM's status over its control socket every 10 ms until the
        initial copy is complete (state RUNNING or CHECKPOINTING) or LIMIT
        seconds pass; JSON: copy_s (to the initial copy complete), pass_s (to
        the first poll that saw the disks' planned pass over: bytes_done at
        bytes_planned), state, and the disk_sync object of that moment;
        with SWITCHOVER_TRACE=FILE, each change of the state and the
        disk_sync counters is appended to FILE
  switchover_helper.py windows CLIENT_JSON TIME...
        for each TIME (a switchover's start, wall clock), the longest
        silence between two replies from the last reply before it to 3 s
        after it: JSON list of milliseconds (null where nothing is known)
  switchover_helper.py summary RESULTS.jsonl
        prints the summary lines and a JSON summary
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests", "linux"))
from guest_client import count_wrong_keys, median, set_get_pairs  # noqa: E402


def client_main(args):
    host, stop_file, out = args
    times = []
    pairs, acknowledged, error = set_get_pairs(
        host, lambda: not os.path.exists(stop_file), "t", 2000, on_reply=lambda: times.append(time.time()))
    lost = None
    try:
        lost = count_wrong_keys(host, acknowledged)
    except OSError as problem:
        error = error or f"cannot read the keys back: {problem}"
    with open(out, "w") as result:
        json.dump({"pairs": pairs, "error": error, "keys": len(acknowledged), "lost_keys": lost, "times": times},
                  result)


def status(path):
    with socket.socket(socket.AF_UNIX) as control:
        control.settimeout(5)
        control.connect(path)
        control.sendall(b'{"command":"status"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = control.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def wait_copy_main(args):
    path, start_file, limit = args[0], args[1], float(args[2])
    # Python starts slowly on a loaded host: the script waits for READY
    # before it writes the start time and runs `colo protect`.
    while True:
        try:
            status(path)
            break
        except (OSError, ValueError):
            time.sleep(0.01)
    open(start_file + ".ready", "w").close()
    while not os.path.exists(start_file) or not open(start_file).read().strip():
        time.sleep(0.002)
    started = float(open(start_file).read())
    trace = open(os.environ["SWITCHOVER_TRACE"], "a") if os.environ.get("SWITCHOVER_TRACE") else None
    last_sample = None
    protecting = False  # started before `colo protect`: the VM may not be a primary yet
    result = {"copy_s": None, "pass_s": None, "state": None, "disk_sync": None}
    while time.time() - started < limit:
        asked = time.time()
        try:
            replication = status(path).get("replication") or {}
        except (OSError, ValueError) as problem:
            if trace:
                print(f"{asked - started:7.3f} s: status failed after {time.time() - asked:.3f} s: {problem!r}",
                      file=trace, flush=True)
            time.sleep(0.01)
            continue
        now = time.time()
        if trace and now - asked > 0.1:
            print(f"{asked - started:7.3f} s: status took {now - asked:.3f} s", file=trace, flush=True)
        state = result["state"] = replication.get("state")
        sync = replication.get("disk_sync")
        if trace:
            sample = (state, replication.get("initial_copy_started"),
                      sync and (sync.get("bytes_done"), sync.get("bytes_planned"), sync.get("dirty_rounds"),
                                sync.get("done")))
            if sample != last_sample:
                print(f"{now - started:7.3f} s: state {sample[0]}, copy started {sample[1]}, disk sync "
                      f"(bytes done, planned, dirty rounds, done) {sample[2]}", file=trace, flush=True)
                last_sample = sample
        protecting = protecting or state in ("connecting", "MIGRATING") or replication.get("initial_copy_started")
        if protecting and sync:
            result["disk_sync"] = sync
            # The planned pass (tracked blocks, or the compare) is over
            # before the dirty rounds and the RAM's pre-copy; `done` comes
            # with the stop-and-copy.
            passed = (sync.get("done") or sync.get("dirty_rounds", 0) > 0 or
                      0 < sync.get("bytes_planned", 0) <= sync.get("bytes_done", 0))
            if passed and result["pass_s"] is None:
                result["pass_s"] = round(now - started, 3)
        if state in ("RUNNING", "CHECKPOINTING"):
            result["disk_sync"] = sync
            result["copy_s"] = round(now - started, 3)
            break
        if protecting and state in ("unprotected", "stood down"):
            result["ended"] = replication.get("ended")
            break
        time.sleep(0.01)
    print(json.dumps(result))


def windows_main(args):
    data = json.load(open(args[0]))
    times = data["times"]
    gaps = []
    for moment in map(float, args[1:]):
        before = [t for t in times if t <= moment]
        window = [t for t in times if before and before[-1] <= t <= moment + 3]
        gaps.append(round(max(b - a for a, b in zip(window, window[1:])) * 1000, 1) if len(window) >= 2 else None)
    print(json.dumps(gaps))


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def summary_main(args):
    rows = [json.loads(line) for line in open(args[0]) if line.strip()]
    switchovers = [r for r in rows if r["kind"] == "switchover"]
    reprotects = [r for r in rows if r["kind"] == "reprotect"]

    def stats(values):
        values = [v for v in values if v is not None]
        return (median(values), max(values), len(values)) if values else (None, None, 0)

    out = {}
    gap = stats([r.get("gap_ms") for r in switchovers])
    client = stats([r.get("client_gap_ms") for r in switchovers])
    keys_bad = sum(1 for r in switchovers if not r.get("keys_ok"))
    print(f"summary: switchover gap (PVM paused to the answer) p50 {fmt(gap[0])} ms, max {fmt(gap[1])} ms "
          f"over {gap[2]} switchovers")
    print(f"summary: client's longest gap around a switchover p50 {fmt(client[0])} ms, max {fmt(client[1])} ms; "
          f"switchovers with a client error or a key lost: {keys_bad}")
    out.update(switchovers=gap[2], gap_p50_ms=gap[0], gap_max_ms=gap[1], client_gap_p50_ms=client[0],
               client_gap_max_ms=client[1], client_problems=keys_bad)
    for mode in ("incremental", "hashes"):
        chosen = [r for r in reprotects if r.get("modes") == mode]
        copy = stats([r.get("copy_s") for r in chosen])
        disk_pass = stats([r.get("pass_s") for r in chosen])
        sent = stats([r.get("bytes_sent") for r in chosen])
        compared = stats([r.get("bytes_compared") for r in chosen])
        print(f"summary: reprotect by {mode}: protect to initial copy complete p50 {fmt(copy[0], '.2f')} s "
              f"(max {fmt(copy[1], '.2f')} s; disks' pass over p50 {fmt(disk_pass[0], '.2f')} s), bytes compared p50 "
              f"{fmt(compared[0], '.0f')}, bytes sent p50 {fmt(sent[0], '.0f')}, over {copy[2]} reprotects")
        out[mode] = {"reprotects": copy[2], "copy_p50_s": copy[0], "copy_max_s": copy[1], "disk_pass_p50_s": disk_pass[0],
                     "bytes_compared_p50": compared[0], "bytes_sent_p50": sent[0]}
    incremental = [r for r in reprotects if r.get("modes") == "incremental"]
    hashes = [r for r in reprotects if r.get("what") == "history removed"]
    if incremental and hashes:
        last, removed = incremental[-1], hashes[-1]
        print(f"summary: incremental vs hash compare, the same {fmt((removed.get('bytes_total') or 0) / 2**20, '.0f')} MiB "
              f"image: initial copy complete {fmt(median([r['copy_s'] for r in incremental if r.get('copy_s')]), '.2f')} s "
              f"(p50) vs {fmt(removed.get('copy_s'), '.2f')} s; bytes compared {fmt(last.get('bytes_compared'), '.0f')} vs "
              f"{fmt(removed.get('bytes_compared'), '.0f')}; bytes sent p50 "
              f"{fmt(median([r['bytes_sent'] for r in incremental if r.get('bytes_sent') is not None]), '.0f')} vs "
              f"{fmt(removed.get('bytes_sent'), '.0f')}")
    print(json.dumps(out))


def main():
    handlers = {"client": client_main, "wait-copy": wait_copy_main, "windows": windows_main,
                "summary": summary_main}
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) < 3 or sys.argv[1] not in handlers:
        sys.exit(__doc__)
    handlers[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
