// Starts the real `parley` binary for tests: a free port, a temporary data directory, fast
// password hashing. Used by the SDK's tests and by the browser tests.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** `PARLEY_BIN`, else a binary cargo already built in this repository, else null. */
export function parleyBin() {
  if (process.env.PARLEY_BIN) return process.env.PARLEY_BIN;
  for (const p of ['target/release/parley', 'target/debug/parley']) {
    const full = path.join(repoRoot, p);
    if (existsSync(full)) return full;
  }
  return null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHealthy(baseUrl, child, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`parley exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${baseUrl}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('parley did not become healthy');
}

/**
 * Runs `parley serve`. `stop()` ends it (SIGTERM, then SIGKILL); `restart()` starts it again on
 * the same port and data directory; `cleanup()` stops it and removes the directory.
 */
export async function startParley(bin = parleyBin()) {
  if (!bin || !existsSync(bin)) throw new Error(`no parley binary at ${bin} (set PARLEY_BIN)`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'parley-js-'));
  const config = path.join(dir, 'parley.toml');
  await writeFile(config, '[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[limits]\nip_auth_per_min = 1000000\nip_auth_burst = 1000000\n');
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = { baseUrl, port, dir, child: null, log: '' };

  server.restart = async () => {
    const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`,
      '--data-dir', path.join(dir, 'data'), '--config', config],
    { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d) => {
      server.log = (server.log + d).slice(-20000);
    });
    server.child = child;
    await waitHealthy(baseUrl, child, 20000);
  };
  server.stop = async () => {
    const { child } = server;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  server.cleanup = async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  };
  await server.restart();
  return server;
}
