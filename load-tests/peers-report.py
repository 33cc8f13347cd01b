"""Folds load-tests/peers' runs into one JSON file and prints the side-by-side table.

Usage: peers-report.py TMPDIR OUT "RATES"
Every ratio is Parley / peer from the same run: below 1 means Parley needs less (CPU, latency,
memory); for throughput, above 1 means Parley carries more.
"""
import glob
import json
import os
import sys

tmp, out, rates = sys.argv[1], sys.argv[2], sys.argv[3].split()
runs = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(tmp + "/*.json"))}
systems = ["parley", "nats", "ejabberd"]
peers = systems[1:]


def figures(r):
    """The comparable figures of one `direct`-shaped run."""
    if not r:
        return None
    cpu = r.get("cpu") or {}
    return {
        "acked_per_s": r.get("acked_per_s"),
        "ack_p50_ms": (r.get("ack_latency") or {}).get("p50_ms"),
        "ack_p99_ms": (r.get("ack_latency") or {}).get("p99_ms"),
        "delivery_p50_ms": (r.get("delivery_latency") or {}).get("p50_ms"),
        "delivery_p99_ms": (r.get("delivery_latency") or {}).get("p99_ms"),
        "server_cpu_us_per_message": cpu.get("server_cpu_us_per_message"),
        "complete": r.get("complete"),
    }


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return float(f"{a / b:.3g}")  # three significant digits: ejabberd's are 0.000x
    return None


report = {"runs": runs, "rates": {}, "saturation": {}, "idle": {}, "ratios": {}}
for rate in rates:
    report["rates"][rate] = {s: figures(runs.get(f"{s}_rate_{rate}")) for s in systems}
report["saturation"] = {s: figures(runs.get(f"{s}_saturation")) for s in systems}
for s in systems:
    r = runs.get(f"{s}_idle") or {}
    report["idle"][s] = {
        "connections": r.get("connections"),
        "server_bytes_per_connection": r.get("server_bytes_per_connection"),
    }

keys = ["acked_per_s", "ack_p50_ms", "ack_p99_ms", "delivery_p50_ms", "delivery_p99_ms", "server_cpu_us_per_message"]
for peer in peers:
    ratios = report["ratios"].setdefault(peer, {})
    for label, row in [(f"rate_{r}", report["rates"][r]) for r in rates] + [("saturation", report["saturation"])]:
        p, n = row.get("parley") or {}, row.get(peer) or {}
        ratios[label] = {k: ratio(p.get(k), n.get(k)) for k in keys}
    ratios["idle_bytes_per_connection"] = ratio(
        report["idle"]["parley"]["server_bytes_per_connection"], report["idle"][peer]["server_bytes_per_connection"]
    )
json.dump(report, open(out, "w"), indent=2)

print("wrote", out)
print(f"{'run':16} {'system':9} {'acked/s':>9} {'ack p50':>8} {'ack p99':>8} {'dlv p50':>8} {'dlv p99':>8} {'µs/msg':>7} complete")
for label, row in [(f"rate {r}", report["rates"][r]) for r in rates] + [("saturation", report["saturation"])]:
    for s in systems:
        f = row.get(s) or {}
        cells = [f.get(k) for k in keys]
        print(f"{label:16} {s:9} " + " ".join(f"{'-' if c is None else c:>8}" for c in cells) + f" {f.get('complete')}")
for s in systems:
    i = report["idle"][s]
    if i["connections"]:
        print(f"idle {s:9} {i['connections']} connections, {i['server_bytes_per_connection']} bytes of server RSS each")
for peer in peers:
    print(f"ratios (parley / {peer}):")
    for label, r in report["ratios"][peer].items():
        if isinstance(r, dict):
            r = {k: v for k, v in r.items() if v is not None}
        print(f"  {label:26} {r}")
bad = [name for name, r in runs.items() if r.get("complete") is False]
if bad:
    print("INCOMPLETE:", ", ".join(bad), file=sys.stderr)
    sys.exit(1)
