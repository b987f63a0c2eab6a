#!/usr/bin/python3
"""A PostgreSQL client that commits rows and records every commit it saw
acknowledged, then checks them.

Usage:
  pg_writer.py write HOST STOP_FILE IDS_FILE [FIRST_ID]
  pg_writer.py check HOST IDS_FILE...

write: one connection (autocommit), creating the table colo_commits if
needed; INSERTs rows with ids FIRST_ID (default 1), FIRST_ID + 1, ...
one at a time until STOP_FILE exists. A row counts as acknowledged when
its INSERT's COMMIT came back. A failed statement or a dropped connection
is a client error: the writer reconnects (for up to 60 s) and goes on with
the next id. The acknowledged ids go to IDS_FILE (JSON), and every one is
read back at the end. Prints one line of JSON: commits_acknowledged,
commits_missing, client_errors, service_gap_ms (the longest wait between
two acknowledgements), latency_p50_ms, latency_p99_ms.

check: reads back the ids of one or more IDS_FILEs (a fresh boot of a
survivor's image, say). Prints one line of JSON: commits_acknowledged,
commits_missing. Exit status 1 when any is missing.

Uses psycopg2 (Debian's python3-psycopg2), hence /usr/bin/python3.
"""
import json
import os
import sys
import time

import psycopg2

TABLE = "colo_commits"


def connect(host, deadline):
    while True:
        try:
            connection = psycopg2.connect(host=host, user="postgres", dbname="postgres", connect_timeout=5)
            connection.autocommit = True
            return connection
        except psycopg2.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def missing_ids(host, ids):
    connection = connect(host, time.monotonic() + 60)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TABLE} WHERE id = ANY(%s)", (list(ids),))
        found = {row[0] for row in cursor.fetchall()}
    connection.close()
    return len(set(ids) - found)


def write(host, stop_file, ids_file, first_id):
    connection = connect(host, time.monotonic() + 60)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    acknowledged, latencies = [], []
    errors, gap, next_id = 0, 0.0, first_id
    last = time.monotonic()
    while not os.path.exists(stop_file):
        started = time.monotonic()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (next_id,))
            acknowledged.append(next_id)
            now = time.monotonic()
            latencies.append(now - started)
            gap = max(gap, now - last)
            last = now
        except psycopg2.Error as error:
            errors += 1
            print(f"pg_writer: id {next_id}: {type(error).__name__}: {str(error).strip()}", file=sys.stderr)
            try:
                connection.close()
            except psycopg2.Error:
                pass
            connection = connect(host, time.monotonic() + 60)
        next_id += 1
    connection.close()
    with open(ids_file, "w") as out:
        json.dump(acknowledged, out)
    latencies.sort()

    def percentile(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2) if latencies else 0

    print(json.dumps({
        "commits_acknowledged": len(acknowledged),
        "commits_missing": missing_ids(host, acknowledged) if acknowledged else 0,
        "client_errors": errors,
        "service_gap_ms": round(gap * 1000, 1),
        "latency_p50_ms": percentile(0.5),
        "latency_p99_ms": percentile(0.99),
    }))


def check(host, ids_files):
    ids = []
    for path in ids_files:
        with open(path) as saved:
            ids.extend(json.load(saved))
    missing = missing_ids(host, ids) if ids else 0
    print(json.dumps({"commits_acknowledged": len(ids), "commits_missing": missing}))
    return missing == 0


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 1)
    elif len(sys.argv) >= 4 and sys.argv[1] == "check":
        sys.exit(0 if check(sys.argv[2], sys.argv[3:]) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
