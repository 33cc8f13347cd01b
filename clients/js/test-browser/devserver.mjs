// A dependency-free stand-in for the routes `parley serve` will have for the web client: it
// serves web/ at / and the SDK at /sdk/, and proxies /v1/* (the WebSocket upgrade included) to
// a parley process, so the page sees one origin exactly as it will when parley serves it.
//
// The browser tests start it; by hand: node clients/js/test-browser/devserver.mjs
//   --backend http://127.0.0.1:8080 [--port 8000]   (then open http://127.0.0.1:8000)
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** URL path -> file, the same table the server embeds. Null for anything else. */
export function staticFile(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return path.join(root, 'web/index.html');
  if (urlPath === '/app.js' || urlPath === '/style.css') return path.join(root, 'web', urlPath);
  const sdk = /^\/sdk\/([a-z]+\.js)$/.exec(urlPath);
  return sdk ? path.join(root, 'clients/js/src', sdk[1]) : null;
}

async function serveStatic(req, res) {
  const file = staticFile(new URL(req.url, 'http://x').pathname);
  try {
    if (!file) throw new Error('not found');
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)], 'cache-control': 'no-cache' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
}

function proxyHttp(req, res, backend) {
  const up = http.request({
    host: backend.hostname, port: backend.port, method: req.method, path: req.url,
    headers: { ...req.headers, host: backend.host },
  }, (upRes) => {
    res.writeHead(upRes.statusCode, upRes.headers);
    upRes.pipe(res);
  });
  up.on('error', () => {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end('{"error":{"code":"unavailable","message":"backend unreachable"}}');
  });
  req.pipe(up);
}

/** Replays the upgrade request to the backend and splices the two sockets together. */
function proxyUpgrade(req, socket, head, backend) {
  const up = net.connect(Number(backend.port), backend.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i];
      lines.push(`${name}: ${name.toLowerCase() === 'host' ? backend.host : req.rawHeaders[i + 1]}`);
    }
    up.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  const end = () => {
    up.destroy();
    socket.destroy();
  };
  up.on('error', end);
  socket.on('error', end);
  up.on('close', end);
  socket.on('close', end);
}

/**
 * Starts the dev server. Resolves to `{url, close()}`.
 * @param {{backend: string, port?: number}} options backend: the parley origin
 */
export function startDevServer({ backend, port = 0 }) {
  const target = new URL(backend);
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/v1/')) proxyHttp(req, res, target);
    else serveStatic(req, res);
  });
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket, head) => {
    sockets.add(socket);
    if (req.url.startsWith('/v1/')) proxyUpgrade(req, socket, head, target);
    else socket.destroy();
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        close: () => new Promise((done) => {
          for (const s of sockets) s.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const dev = await startDevServer({ backend: arg('backend', 'http://127.0.0.1:8080'), port: Number(arg('port', 8000)) });
  console.log(`serving web/ at ${dev.url}, proxying /v1/* to ${arg('backend', 'http://127.0.0.1:8080')}`);
}
