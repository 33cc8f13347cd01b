#!/usr/bin/env python3
"""What the messages table's layout costs the reads: schema version 9 (clustered by
conversation) against the current one, with the store's own statements.

    python3 load-tests/layout.py [--conversations 50] [--messages 2000]
    python3 load-tests/layout.py --migrate 1000000     # times migration 10 on that many rows

Builds each schema from schema/sqlite/*.sql in a temporary file, appends the messages of all
conversations interleaved (50 per commit, as group commit does), then times, in alternating
rounds, a page of 100 messages (sync, history) and the unread count (the conversation list,
the push badge), on a warm connection and on a fresh one; then retention's purge.
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


def timed(path, convs, messages, fresh):
    """Mean ms of a page of 100 and of an unread count; `fresh` opens a connection per
    statement, as a reader's cache is dropped before every read under a write load."""
    shared = None if fresh else connect(path)
    out = []
    for stmt, args in ((PAGE, lambda k: (k, messages // 4, 1 << 62)), (UNREAD, lambda k: (k, 0, "someone"))):
        t = time.perf_counter()
        for k in convs:
            c = shared or connect(path)
            c.execute(stmt, args(k)).fetchall()
            if not shared:
                c.close()
        out.append((time.perf_counter() - t) / len(convs) * 1e3)
    return out


def connect(path):
    c = sqlite3.connect(path)
    # As the store's reader threads read (storage/sqlite/readers.rs).
    c.executescript("PRAGMA cache_size = -2048; PRAGMA mmap_size = 268435456;")
    return c


def purge(path, convs, messages):
    """Mean ms to delete the older half of a conversation's messages, as retention does (on
    the writer, with secure_delete)."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA secure_delete = ON")
    t = time.perf_counter()
    for k in convs:
        c.execute("DELETE FROM messages WHERE conversation_id = ?1 AND seq > 0 AND seq <= ?2", (k, messages // 2))
        c.commit()
    ms = (time.perf_counter() - t) / len(convs) * 1e3
    c.close()
    return ms


def migration(tmp, n):
    """Seconds that migration 10 takes over `n` messages and as many keys written by version 9."""
    path = os.path.join(tmp, "migrate.db")
    files = sorted(glob.glob(os.path.join(HERE, "..", "schema", "sqlite", "*.sql")))
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode = WAL")
    for f in files:
        if int(os.path.basename(f)[:3]) <= 9:
            c.executescript(open(f).read())
    rng = random.Random(1)
    convs = [uuid.uuid4().hex for _ in range(1000)]
    seqs = dict.fromkeys(convs, 0)
    for b in range(n // 1000):
        rows, keys = [], []
        for _ in range(1000):
            k = rng.choice(convs)
            seqs[k] += 1
            cid, mid = str(uuid.uuid4()), uuid.uuid4().hex
            rows.append((k, seqs[k], mid, "u-" + k, "d-" + k, cid, b, "x" * 64))
            keys.append(("d-" + k, cid, k, seqs[k], mid, b, "h" * 16))
        c.executemany(INSERT, rows)
        c.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?, ?)", keys)
        c.commit()
    ten = [f for f in files if os.path.basename(f).startswith("010")][0]
    # As migrate.rs runs it: secure_delete on, one transaction.
    c.execute("PRAGMA secure_delete = ON")
    t = time.perf_counter()
    c.executescript("BEGIN IMMEDIATE;" + open(ten).read() + "COMMIT;")
    took = time.perf_counter() - t
    c.close()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=50)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--migrate", type=int)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.migrate:
            print(f"migration 10 over {a.migrate} messages and keys: {migration(tmp, a.migrate):.1f} s")
            return
        built = {}
        for label, upto in (("version 9", 9), ("current", None)):
            path = os.path.join(tmp, label + ".db")
            built[label] = (path, build(path, upto, a.conversations, a.messages))
        # Alternating rounds: this machine's noise is larger than some of the differences.
        for r in range(a.rounds):
            for label, (path, convs) in built.items():
                warm = timed(path, convs, a.messages, False)
                cold = timed(path, convs, a.messages, True)
                print(f"round {r + 1} {label:9}  page of 100: {warm[0]:.3f} ms (fresh connection "
                      f"{cold[0]:.3f})  unread count of {a.messages}: {warm[1]:.2f} ms "
                      f"({cold[1]:.2f})")
        for label, (path, convs) in built.items():
            print(f"{label:9}  purge of {a.messages // 2} messages: "
                  f"{purge(path, convs, a.messages):.2f} ms")


if __name__ == "__main__":
    main()
