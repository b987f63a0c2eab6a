#!/usr/bin/env python3
"""Helpers for bench/run_migration.sh: the guest's KV service, a small QMP
client for QEMU, an ICMP pinger that measures the longest gap in the VM's
answers, and the final report. Every socket operation has a timeout.

usage:
  migration_helper.py kv HOST churn N              CHURN N; exit 0 on OK
  migration_helper.py kv HOST set KEY VALUE        SET KEY VALUE; exit 0 on OK
  migration_helper.py kv HOST wait KEY VALUE SECS  until GET KEY answers VALUE on
                                                   a new connection; prints the
                                                   seconds it took (exit 1: never)
  migration_helper.py qmp SOCKET wait SECS         until the monitor accepts QMP
  migration_helper.py qmp SOCKET run CMD [JSON]    one command; prints its return
  migration_helper.py qmp SOCKET migrate URI [--downtime-ms MS] [--max-bandwidth B]
                      [--timeout SECS] [--stop-first]
                                                   sets the parameters, migrates,
                                                   polls query-migrate; prints
                                                   one JSON object
  migration_helper.py ping HOST STOP_FILE [INTERVAL_MS] [MAX_SECS]
                                                   ICMP echo every INTERVAL_MS
                                                   until STOP_FILE exists; prints
                                                   JSON: replies, lost, max gap
  migration_helper.py report RESULTS.jsonl         prints the tables
"""
import json
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests", "linux"))
from guest_client import kv_request  # noqa: E402

# A request of the KV checks waits at most this long for its reply.
KV_TIMEOUT_SECONDS = 10


# ---- the guest's KV service ----

def kv_main(args):
    host, what = args[0], args[1]
    if what == "churn":
        reply = kv_request(host, f"CHURN {int(args[2])}", timeout=KV_TIMEOUT_SECONDS)
        if reply != "OK":
            sys.exit(f"CHURN {args[2]}: {reply}")
    elif what == "set":
        reply = kv_request(host, f"SET {args[2]} {args[3]}", timeout=KV_TIMEOUT_SECONDS)
        if reply != "OK":
            sys.exit(f"SET: {reply}")
    elif what == "wait":
        key, value, limit = args[2], args[3], float(args[4])
        started = time.monotonic()
        last_error = "no attempt"
        while time.monotonic() - started < limit:
            try:
                reply = kv_request(host, f"GET {key}", timeout=min(1.0, max(0.05, limit - (time.monotonic() - started))))
                if reply == f"VALUE {value}":
                    print(f"{time.monotonic() - started:.3f}")
                    return
                last_error = f"GET {key} answered {reply!r}"
                break          # an answer, but the wrong one: waiting will not help
            except OSError as error:
                last_error = str(error)
                time.sleep(0.01)
        sys.exit(f"the KV service did not answer GET {key} -> {value} within {limit} s: {last_error}")
    else:
        sys.exit(f"kv: unknown operation {what}")


# ---- QMP ----

class Qmp:
    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise ConnectionError(f"not a QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    def _read(self):
        line = self.reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    def command(self, name, **arguments):
        request = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall((json.dumps(request) + "\n").encode())
        while True:
            message = self._read()
            if "event" in message:
                continue
            if "error" in message:
                raise RuntimeError(f"{name}: {message['error'].get('desc', message['error'])}")
            return message.get("return")

    def close(self):
        self.sock.close()


def qmp_migrate(path, uri, downtime_ms, max_bandwidth, timeout, stop_first):
    qmp = Qmp(path)
    qmp.command("migrate-set-parameters", **{"downtime-limit": downtime_ms, "max-bandwidth": max_bandwidth})
    parameters = qmp.command("query-migrate-parameters")
    result = {"downtime_limit_ms": parameters.get("downtime-limit"),
              "max_bandwidth": parameters.get("max-bandwidth")}
    started = time.monotonic()
    if stop_first:
        qmp.command("stop")
    qmp.command("migrate", uri=uri)
    info = {}
    while True:
        info = qmp.command("query-migrate")
        status = info.get("status")
        if status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() - started > timeout:
            qmp.command("migrate_cancel")
            cancel_started = time.monotonic()
            while time.monotonic() - cancel_started < 10:
                after = qmp.command("query-migrate")
                if after.get("status") in ("cancelled", "failed", "completed"):
                    break
                time.sleep(0.05)
            result["cancelled_after_s"] = round(time.monotonic() - started, 2)
            result["status_before_cancel"] = info.get("status")
            # the statistics from before the cancel, the status after it
            info = dict(info, status=after.get("status"))
            break
        time.sleep(0.02)
    result["wall_s"] = round(time.monotonic() - started, 3)
    result["status"] = info.get("status")
    for key in ("total-time", "downtime", "setup-time", "expected-downtime", "error-desc"):
        if key in info:
            result[key] = info[key]
    ram = info.get("ram", {})
    for key in ("transferred", "normal", "duplicate", "dirty-sync-count", "mbps", "dirty-pages-rate",
                "remaining", "precopy-bytes", "downtime-bytes"):
        if key in ram:
            result["ram_" + key.replace("-", "_")] = ram[key]
    qmp.close()
    return result


def qmp_main(args):
    path, what = args[0], args[1]
    if what == "wait":
        limit = float(args[2])
        started = time.monotonic()
        while True:
            try:
                Qmp(path, timeout=2).close()
                return
            except (OSError, ConnectionError, ValueError) as error:
                if time.monotonic() - started > limit:
                    sys.exit(f"no QMP monitor on {path} within {limit} s: {error}")
                time.sleep(0.05)
    elif what == "run":
        qmp = Qmp(path)
        arguments = json.loads(args[3]) if len(args) > 3 else {}
        print(json.dumps(qmp.command(args[2], **arguments)))
        qmp.close()
    elif what == "migrate":
        uri = args[2]
        options = {"--downtime-ms": 5, "--max-bandwidth": 10 << 30, "--timeout": 60.0}
        stop_first = False
        i = 3
        while i < len(args):
            if args[i] == "--stop-first":
                stop_first = True
                i += 1
            elif args[i] in options:
                options[args[i]] = type(options[args[i]])(args[i + 1])
                i += 2
            else:
                sys.exit(f"qmp migrate: unknown option {args[i]}")
        print(json.dumps(qmp_migrate(path, uri, options["--downtime-ms"], options["--max-bandwidth"],
                                     options["--timeout"], stop_first)))
    else:
        sys.exit(f"qmp: unknown operation {what}")


# ---- ICMP echo: the longest gap in the VM's answers ----

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping_main(args):
    host, stop_file = args[0], args[1]
    interval = (float(args[2]) if len(args) > 2 else 2.0) / 1000
    max_seconds = float(args[3]) if len(args) > 3 else 300
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    identifier = os.getpid() & 0xFFFF
    sent = {}
    reply_times = []
    sequence = 0
    started = time.monotonic()
    next_send = started
    while not os.path.exists(stop_file) and time.monotonic() - started < max_seconds:
        now = time.monotonic()
        if now >= next_send:
            sequence = (sequence + 1) & 0xFFFF
            header = struct.pack("!BBHHH", 8, 0, 0, identifier, sequence)
            payload = struct.pack("!d", now)
            packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), identifier, sequence) + payload
            try:
                sock.sendto(packet, (host, 0))
                sent[sequence] = now
            except OSError:
                pass
            next_send += interval
            if next_send < now:
                next_send = now + interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                header_length = (data[0] & 0x0F) * 4
                kind, _, _, reply_id, reply_sequence = struct.unpack("!BBHHH", data[header_length:header_length + 8])
                if kind == 0 and reply_id == identifier and reply_sequence in sent:
                    del sent[reply_sequence]
                    reply_times.append(time.monotonic())
    stopped = time.monotonic()
    # replies still in flight after the stop
    wait_until = time.monotonic() + 0.2
    while time.monotonic() < wait_until:
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                continue
            header_length = (data[0] & 0x0F) * 4
            kind, _, _, reply_id, reply_sequence = struct.unpack("!BBHHH", data[header_length:header_length + 8])
            if kind == 0 and reply_id == identifier and reply_sequence in sent:
                del sent[reply_sequence]
                reply_times.append(time.monotonic())
    # The silence after the last reply counts too: a VM that stops answering
    # for good has one long gap at the end, not none.
    points = [t for t in reply_times if t <= stopped] + [stopped]
    if len(points) == 1:
        points.insert(0, started)
    gaps = sorted((b - a for a, b in zip(points, points[1:])), reverse=True)
    print(json.dumps({"interval_ms": interval * 1000, "sent": sequence, "replies": len(reply_times),
                      "lost": len(sent),
                      "max_gap_ms": round(gaps[0] * 1000, 1) if gaps else None,
                      "next_gaps_ms": [round(g * 1000, 1) for g in gaps[1:4]],
                      "seconds": round(time.monotonic() - started, 2)}))


# ---- the report ----

def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def report_main(args):
    rows = [json.loads(line) for line in open(args[0]) if line.strip()]
    migrations = [r for r in rows if r["kind"] == "migration"]
    saves = [r for r in rows if r["kind"] == "save"]

    print()
    print("Live migration, 256 MiB guest, downtime limit 5 ms (QEMU: max-bandwidth set to 10 GiB/s,")
    print("not its 32 MiB/s default, so that neither side is throttled)")
    print()
    print(f"{'dirty rate':>10} | {'machine':<5} | {'result':<28} | {'total s':>7} | {'downtime ms':>11} | "
          f"{'rounds':>6} | {'pages sent':>10} | {'MiB sent':>8} | {'ping gap ms (none)':>18} | {'KV after':>8} | load")
    for r in migrations:
        print(f"{r['rate']:>10} | {r['machine']:<5} | {r['result'][:28]:<28} | {fmt(r.get('total_s'), '7.2f'):>7} | "
              f"{fmt(r.get('downtime_ms'), '11.2f'):>11} | {fmt(r.get('rounds'), '6d'):>6} | "
              f"{fmt(r.get('pages'), '10d'):>10} | {fmt(r.get('mib_sent'), '8.1f'):>8} | "
              f"{fmt(r.get('ping_gap_ms'), '8.1f'):>8} ({fmt(r.get('base_gap_ms'), '6.1f'):>6})   | {fmt(r.get('kv_after_s'), '7.2f') + 's' if r.get('kv_after_s') is not None else '-':>8} | "
              f"{r.get('load', '')}")

    print()
    print("Side by side. colo's downtime: from its pause to the destination's acknowledgement of the loaded")
    print("state; 'sent': from its pause to the last byte handed to the socket. QEMU's downtime: from its")
    print("stop to the end of the stream, measured by the source, whole ms (the same measure as colo's 'sent').")
    print()
    print(f"{'dirty rate':>10} | {'run':>3} | {'colo total s':>12} {'downtime ms':>11} {'sent ms':>7} {'rounds':>6} | "
          f"{'QEMU total s':>12} {'downtime ms':>11} {'rounds':>6} | target (colo <= 5 ms idle, < QEMU)")
    rates = []
    for r in migrations:
        if r["rate"] not in rates:
            rates.append(r["rate"])

    def cell(r):
        width = 45 if r["machine"] == "colo" else 37
        if not r.get("result", "").startswith("migrated") or r.get("downtime_ms") is None:
            return f"{r.get('result', '?')[:width - 1]:>{width - 5}}"
        mark = "" if r["result"] == "migrated" else "*"
        sent = f" {fmt(r.get('sent_ms'), '7.2f'):>7}" if r["machine"] == "colo" else ""
        return f"{r['total_s']:>12.2f} {r['downtime_ms']:>10.2f}{mark:1}{sent} {r['rounds']:>6}"

    def verdict(rate, colo, qemu):
        """(text, below QEMU with colo's whole downtime, below QEMU on the same measure), None when not comparable"""
        parts = []
        whole = same = None
        if colo.get("result") != "migrated":
            return "NO (colo did not migrate)", False, False
        if rate == 0:
            parts.append("<= 5 ms: " + ("yes" if colo["downtime_ms"] <= 5 else "NO"))
        if qemu.get("result") == "migrated":
            whole = colo["downtime_ms"] < qemu["downtime_ms"]
            same = colo.get("sent_ms") is not None and colo["sent_ms"] < qemu["downtime_ms"]
            parts.append("below QEMU: " + ("yes" if whole else "NO") + ", same measure: " + ("yes" if same else "NO"))
        elif qemu.get("result", "").startswith("no convergence"):
            whole = same = True
            parts.append("below QEMU: yes (QEMU did not converge)")
        else:
            parts.append(f"below QEMU: n/a (QEMU: {qemu.get('result', '?')})")
        if rate != 0 and colo["downtime_ms"] > 5:
            parts.append("over colo's 5 ms limit")
        return "; ".join(parts), whole, same

    met, met_same = {}, {}
    for rate in rates:
        for colo, qemu in zip([r for r in migrations if r["rate"] == rate and r["machine"] == "colo"],
                              [r for r in migrations if r["rate"] == rate and r["machine"] == "qemu"]):
            text, whole, same = verdict(rate, colo, qemu)
            if whole is not None:   # runs where QEMU's migration is something to compare with
                met.setdefault(rate, []).append(whole)
                met_same.setdefault(rate, []).append(same)
            print(f"{rate:>10} | {colo.get('run', ''):>3} | {cell(colo)} | {cell(qemu)} | {text}")
    if any(r.get("result", "").startswith("migrated,") for r in migrations):
        print("(* the source reported a completed migration, but the VM at the destination was broken:")
        print("   see the result column above; not counted as a migration)")

    runs = max((r.get("run", 1) for r in migrations), default=1)
    if runs > 1:
        def summary(rows, key, spec):
            values = sorted(r[key] for r in rows if r.get("result") == "migrated" and r.get(key) is not None)
            if not values:
                return "-"
            median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
            if spec == "d":
                return f"{median:g} ({values[0]}-{values[-1]})"
            return f"{median:{spec}} ({values[0]:{spec}}-{values[-1]:{spec}})"
        print()
        print(f"Summary over {runs} runs: median (min-max) of the completed migrations")
        print()
        print(f"{'dirty rate':>10} | {'machine':<7} | {'done':>4} | {'total s':>18} | {'downtime ms':>20} | "
              f"{'sent ms':>20} | {'MiB sent':>18} | {'rounds':>12} | {'ping gap ms':>20} | colo below QEMU (whole; same measure)")
        for rate in rates:
            for machine in ("colo", "qemu"):
                rows = [r for r in migrations if r["rate"] == rate and r["machine"] == machine]
                done = sum(r.get("result") == "migrated" for r in rows)
                target = ""
                if machine == "colo":
                    target = (f"{sum(met.get(rate, []))} of {len(met.get(rate, []))}; "
                              f"{sum(met_same.get(rate, []))} of {len(met_same.get(rate, []))} comparable runs")
                sent = summary(rows, "sent_ms", ".2f") if machine == "colo" else "(= downtime)"
                print(f"{rate:>10} | {machine:<7} | {done:>2}/{len(rows)} | {summary(rows, 'total_s', '.2f'):>18} | "
                      f"{summary(rows, 'downtime_ms', '.2f'):>20} | {sent:>20} | {summary(rows, 'mib_sent', '.1f'):>18} | "
                      f"{summary(rows, 'rounds', 'd'):>12} | {summary(rows, 'ping_gap_ms', '.1f'):>20} | {target}")

    if saves:
        print()
        print("Save and restore (idle guest, 256 MiB):")
        print()
        print(f"{'machine':<7} | {'save s':>7} | {'file MiB':>8} | {'restore: start to KV answer s':>29} | load")
        for r in saves:
            print(f"{r['machine']:<7} | {fmt(r.get('save_s'), '7.2f'):>7} | {fmt(r.get('file_mib'), '8.1f'):>8} | "
                  f"{fmt(r.get('restore_s'), '29.2f'):>29} | {r.get('load', '')}"
                  + (f" | {r['note']}" if r.get("note") else ""))
        if len(saves) > 2:
            print()
            for machine in ("colo", "qemu"):
                rows = [r for r in saves if r["machine"] == machine and r.get("restore_s") is not None]
                for key in ("save_s", "restore_s"):
                    values = sorted(r[key] for r in rows)
                    if values:
                        median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
                        print(f"{machine} {key}: median {median:.2f} ({values[0]:.2f}-{values[-1]:.2f}) over {len(values)} runs")


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    handlers = {"kv": kv_main, "qmp": qmp_main, "ping": ping_main, "report": report_main}
    if sys.argv[1] not in handlers:
        sys.exit(__doc__)
    handlers[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
