// The small parts on their own: backoff bounds, the outbox's order and persistence, storage
// copies, and the emitter's error isolation.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Emitter, MemoryStorage, Outbox, backoffDelay, newClientId } from '../src/index.js';

test('backoff is full jitter under an exponential cap', () => {
  const opts = { baseMs: 100, capMs: 1000 };
  assert.equal(backoffDelay(0, opts, () => 0), 0);
  assert.equal(backoffDelay(0, opts, () => 0.999), 99);
  assert.equal(backoffDelay(3, opts, () => 0.5), 400);
  assert.equal(backoffDelay(30, opts, () => 0.999), 999, 'capped');
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4, opts)));
  assert.ok(spread.size > 10, 'random delays, not one fixed value');
  for (const d of spread) assert.ok(d >= 0 && d < 1000);
});

test('client ids are 128-bit hex and unique', () => {
  const ids = new Set(Array.from({ length: 1000 }, newClientId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
});

test('the outbox keeps order and reloads from storage', async () => {
  const storage = new MemoryStorage();
  const a = new Outbox(storage);
  await a.load();
  await a.add({ id: 'x', conversation_id: 'c', text: '1' });
  await a.add({ id: 'y', conversation_id: 'c', text: '2' });
  await a.add({ id: 'a', conversation_id: 'c', text: '3' });
  await a.remove('y');
  const b = new Outbox(storage);
  await b.load();
  assert.deepEqual(b.list().map((e) => e.text), ['1', '3'], 'insertion order, not key order');
  const next = await b.add({ id: 'z', conversation_id: 'c', text: '4' });
  assert.ok(next.n > b.get('a').n, 'numbering continues after a reload');
});

test('memory storage hands out copies and lists by prefix', async () => {
  const s = new MemoryStorage();
  const v = { n: 1 };
  await s.set('p/b', v);
  await s.set('p/a', { n: 2 });
  await s.set('q/a', { n: 3 });
  v.n = 99;
  assert.deepEqual(await s.get('p/b'), { n: 1 });
  assert.deepEqual((await s.entries('p/')).map(([k]) => k), ['p/a', 'p/b']);
  await s.delete('p/a');
  assert.equal(await s.get('p/a'), undefined);
});

test('a throwing listener does not stop the next one, and its error is rethrown later', () => {
  const e = new Emitter();
  const got = [];
  const offBad = e.on('x', () => {
    throw new Error('listener bug');
  });
  const off = e.on('x', (d) => got.push(d));
  const scheduled = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn) => scheduled.push(fn);
  try {
    e.emit('x', 1);
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  offBad();
  e.emit('x', 2);
  off();
  e.emit('x', 3);
  assert.deepEqual(got, [1, 2]);
  assert.equal(scheduled.length, 1);
  assert.throws(scheduled[0], /listener bug/);
});

test('once resolves with the first event that passes the filter', async () => {
  const e = new Emitter();
  const second = e.once('y', (d) => d > 1);
  e.emit('y', 1);
  e.emit('y', 2);
  e.emit('y', 3);
  assert.equal(await second, 2);
});
