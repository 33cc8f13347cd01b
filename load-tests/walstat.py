#!/usr/bin/env python3
"""Which b-trees a running node's commits write: WAL frames per commit, by table and index.

The SQLite writer's commits write whole pages into the WAL (and the checkpointer writes them
again into the database), so the pages a commit dirties are most of the store's cost per
message. This samples the WAL of a node under load a few times, keeps the frames of complete
commits that belong to the WAL's current generation (its salts), and names each frame's page
by the b-tree that owns it (SQLite's dbstat table, on a copy of the database).

    load-tests/walstat.py DATA_DIR [--metrics URL] [--samples 5] [--every 1.0] [--json OUT]

With --metrics (the node's /metrics) it reads acks and commits over the sampling window and
also reports frames per acknowledged message.

Run it beside a scenario, e.g. while `parley-load ... direct --pairs 50 --duration 20` runs
against a node serving DATA_DIR.
"""
import argparse
import collections
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import time
import urllib.request


def frames_of(wal: bytes):
    """(page number, is_commit) of each frame of complete commits in the current generation."""
    if len(wal) < 32:
        return []
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    out, pending, at = [], [], 32
    while at + 24 + page_size <= len(wal):
        pgno, commit = struct.unpack(">II", wal[at : at + 8])
        if wal[at + 8 : at + 16] != salts:
            break  # a frame of an earlier generation: the live log ends here
        pending.append(pgno)
        if commit:
            out.append(pending)
            pending = []
        at += 24 + page_size
    return out


def counters(url):
    """(acks, commits) so far, from the node's Prometheus text."""
    got = {}
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        for key in ("parley_acks_total", "parley_store_commit_seconds_count"):
            if line.startswith(key + " "):
                got[key] = float(line.split()[1])
    return got.get("parley_acks_total", 0.0), got.get("parley_store_commit_seconds_count", 0.0)


def owners(db_copy: str):
    c = sqlite3.connect(db_copy)
    try:
        return {p: (n, t) for n, p, t in c.execute("SELECT name, pageno, pagetype FROM dbstat")}
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--json")
    ap.add_argument("--metrics")
    a = ap.parse_args()
    db = os.path.join(a.data_dir, "parley.db")
    commits = []
    before = counters(a.metrics) if a.metrics else None
    for i in range(a.samples):
        if i:
            time.sleep(a.every)
        with open(db + "-wal", "rb") as f:
            commits.extend(frames_of(f.read()))
    after = counters(a.metrics) if a.metrics else None
    if not commits:
        raise SystemExit("no complete commit in the WAL samples (is the node under load?)")
    tmp = tempfile.mkdtemp()
    try:
        # The copy is read without its WAL: pages allocated since the last checkpoint show as '?'.
        shutil.copy(db, os.path.join(tmp, "copy.db"))
        names = owners(os.path.join(tmp, "copy.db"))
    finally:
        shutil.rmtree(tmp)
    by = collections.Counter()
    for c in commits:
        for p in c:
            by["%s (%s)" % names.get(p, ("?", "new page"))] += 1
    n = len(commits)
    total = sum(len(c) for c in commits)
    report = {
        "commits": n,
        "frames_per_commit": round(total / n, 1),
        "frames_per_commit_by_btree": {k: round(v / n, 1) for k, v in by.most_common()},
    }
    print(f"{n} commits, {total / n:.1f} frames (pages) per commit")
    if before and after and after[0] > before[0]:
        per_commit = (after[0] - before[0]) / max(after[1] - before[1], 1)
        report["acks_per_commit"] = round(per_commit, 1)
        report["frames_per_ack"] = round(total / n / per_commit, 2)
        print(f"{per_commit:.1f} acks per commit, {total / n / per_commit:.2f} frames per ack")
    for k, v in by.most_common(12):
        print(f"  {v / n:7.1f}  {k}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
