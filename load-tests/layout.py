#!/usr/bin/env python3
"""What the messages table's layout costs the reads: schema version 9 (clustered by
conversation) against the current one, with the store's own statements.

    python3 load-tests/layout.py [--conversations 50] [--messages 2000]

Builds each schema from schema/sqlite/*.sql in a temporary file, appends the messages of all
conversations interleaved (50 per commit, as group commit does), then times a page of 100
messages (sync, history) and the unread count (the conversation list, the push badge).
"""
import argparse
import glob
import os
import random
import sqlite3
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
INSERT = ("INSERT INTO messages (conversation_id, seq, message_id, sender_id, sender_device_id,"
          " client_id, ts, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
PAGE = ("SELECT * FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq < ?3"
        " ORDER BY seq ASC LIMIT 100")
UNREAD = ("SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND seq > ?2"
          " AND sender_id != ?3 AND deleted = 0"
          " AND seq NOT IN (SELECT seq FROM hidden WHERE user_id = ?3 AND conversation_id = ?1)")


def build(path, upto, conversations, messages):
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode = WAL")
    for f in sorted(glob.glob(os.path.join(HERE, "..", "schema", "sqlite", "*.sql"))):
        if upto is None or int(os.path.basename(f)[:3]) <= upto:
            c.executescript(open(f).read())
    rng = random.Random(1)
    convs = [uuid.uuid4().hex for _ in range(conversations)]
    seqs = dict.fromkeys(convs, 0)
    for b in range(conversations * messages // 50):
        rows = []
        for _ in range(50):
            k = rng.choice(convs)
            seqs[k] += 1
            rows.append((k, seqs[k], uuid.uuid4().hex, "u-" + k, "d-" + k, str(uuid.uuid4()), b, "x" * 64))
        c.executemany(INSERT, rows)
        c.commit()
    c.close()
    return convs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=50)
    ap.add_argument("--messages", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, upto in (("version 9", 9), ("current", None)):
            path = os.path.join(tmp, label + ".db")
            convs = build(path, upto, a.conversations, a.messages)
            c = sqlite3.connect(path)
            # As the store's reader threads read (storage/sqlite/readers.rs).
            c.executescript("PRAGMA cache_size = -2048; PRAGMA mmap_size = 268435456;")
            t = time.perf_counter()
            for k in convs * 4:
                c.execute(PAGE, (k, a.messages // 4, 1 << 62)).fetchall()
            page = (time.perf_counter() - t) / (len(convs) * 4)
            t = time.perf_counter()
            for k in convs:
                c.execute(UNREAD, (k, 0, "someone")).fetchone()
            unread = (time.perf_counter() - t) / len(convs)
            c.close()
            print(f"{label:9}  page of 100: {page * 1e3:.3f} ms  unread count of "
                  f"{a.messages}: {unread * 1e3:.2f} ms  file {os.path.getsize(path) // 1024} KiB")


if __name__ == "__main__":
    main()
