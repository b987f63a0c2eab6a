#!/usr/bin/env python3
"""Who released the VM's output, and when: the "two copies" check of the
cluster tests (scripts/lib/cluster_lab.sh's client LAN, where only the
VMs' frames cross each host's LAN port).

  lan_output_watch.py watch STOP_FILE OUT PORT...   (in the switch namespace)
      every 2 ms, reads each PORT's rx_packets (frames from that host) and
      appends "SECONDS PORT COUNT" to OUT when it changed, until STOP_FILE
      exists
  lan_output_watch.py check OUT [--from SECONDS]
      prints the order in which the ports released frames, and fails
      (exit 1) when nothing was recorded since SECONDS (the watch did not
      run), or when the releasing port changed more than once: one copy,
      then the other, then the first again means two copies released
      output during the same period. --from: ignore what came before.
      Ports whose counts changed in the same sample cannot be ordered
      (a handover's last frame and the next copy's first often fall
      into one 2 ms sample): the port that was releasing before counts
      first, so only a change seen in different samples is a finding.
"""
import os
import sys
import time


def watch(stop_file, out_path, ports):
    last = {}
    with open(out_path, "a", buffering=1) as out:
        while not os.path.exists(stop_file):
            now = time.time()
            for port in ports:
                try:
                    with open(f"/sys/class/net/{port}/statistics/rx_packets") as f:
                        count = int(f.read())
                except OSError:
                    continue
                if last.get(port) != count:
                    out.write(f"{now:.4f} {port} {count}\n")
                    last[port] = count
            time.sleep(0.002)


def check(out_path, start):
    runs = []  # [port, first_time, last_time, frames]
    previous = {}
    samples = []  # [(stamp text, [(port, count), ...])]: one per watch pass
    with open(out_path) as f:
        for line in f:
            stamp_text, port, count = line.split()
            if samples and samples[-1][0] == stamp_text:
                samples[-1][1].append((port, int(count)))
            else:
                samples.append((stamp_text, [(port, int(count))]))
    for stamp_text, changes in samples:
        current = runs[-1][0] if runs else None
        changes.sort(key=lambda change: change[0] != current)
        for port, count in changes:
            stamp = float(stamp_text)
            before = previous.get(port)
            previous[port] = count
            if before is None or stamp < start:
                continue
            if runs and runs[-1][0] == port:
                runs[-1][2] = stamp
                runs[-1][3] += count - before
            else:
                runs.append([port, stamp, stamp, count - before])
    summary = ", then ".join(f"{port} {frames} frames ({first - start:.3f}..{last - start:.3f} s)"
                             for port, first, last, frames in runs)
    if not runs:
        # Every caller checks a part with client traffic: nothing seen
        # means the watch did not run, not that nobody spoke.
        print("no frames seen: the watch recorded nothing since then")
        return 1
    print(summary)
    owners = [run[0] for run in runs]
    if len(set(owners)) != len(owners):
        print("two copies released output: " + " -> ".join(owners))
        return 1
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        start = float(sys.argv[4]) if len(sys.argv) >= 5 and sys.argv[3] == "--from" else 0.0
        return check(sys.argv[2], start)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
