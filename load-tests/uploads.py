"""Upload throughput through a running server (issue 13): N uploads of SIZE bytes, C at a time,
distinct bytes each, from one user. usage: load-tests/uploads.py URL N SIZE_BYTES CONCURRENCY [content-type]"""
import http.client, json, os, sys, time, threading, urllib.parse
url, n, size, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctype = sys.argv[5] if len(sys.argv) > 5 else "application/octet-stream"
u = urllib.parse.urlparse(url)
def req(method, path, body=None, token=None, ct="application/json"):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    h = {"Content-Type": ct}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=h)
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data
name = "up%d" % os.getpid()
req("POST", "/v1/users", json.dumps({"username": name, "password": "password123"}))
st, d = req("POST", "/v1/sessions", json.dumps({"username": name, "password": "password123"}))
token = json.loads(d)["token"]
blobs = [os.urandom(size) for _ in range(min(n, 8))]
done, lock, errors = [0], threading.Lock(), []
def worker():
    while True:
        with lock:
            if done[0] >= n: return
            i = done[0]; done[0] += 1
        st, d = req("POST", "/v1/files", i.to_bytes(8, "big") + blobs[i % len(blobs)][8:], token, ctype)
        if st != 201: errors.append((st, d[:200]))
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]; [t.join() for t in ts]
dt = time.time() - t0
print(json.dumps({"uploads": n, "size": size, "concurrency": conc, "seconds": round(dt, 2),
                  "MB_per_s": round(n * size / dt / 1e6, 1), "errors": errors[:3]}))
