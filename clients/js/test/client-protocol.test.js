// ParleyClient against a scripted socket: the orderings a real server produces only by timing
// (an ack before owed messages, a lost ack, a dead socket) are played here on purpose.
import test from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage, ParleyClient } from '../src/index.js';
import { fakeWebSocket, message, ready, until } from './fake-socket.js';

function setup(options = {}) {
  const Socket = fakeWebSocket();
  const storage = options.storage ?? new MemoryStorage();
  const client = new ParleyClient({
    baseUrl: 'http://parley.test', token: 'tok', storage, WebSocket: Socket,
    backoff: { baseMs: 1, capMs: 5 }, ...options,
  });
  const statuses = [];
  client.on('status', (s) => statuses.push(s.status));
  return { Socket, client, storage, statuses };
}

async function connected(Socket, index, conversations) {
  const ws = await until(() => Socket.opened[index], 2000, `socket ${index}`);
  await until(() => ws.sent.length > 0, 2000, 'auth frame');
  ws.push(ready(conversations));
  return ws;
}

test('authenticates with a first auth frame, then pages sync until more is false', { timeout: 5000 }, async (t) => {
  const { Socket, client, statuses } = setup({ syncLimit: 2 });
  t.after(() => client.stop());
  await client.start();
  const ws = await until(() => Socket.opened[0]);
  assert.equal(ws.url, 'ws://parley.test/v1/ws');
  await until(() => ws.sent.length === 1);
  assert.deepEqual(ws.sent[0], { type: 'auth', token: 'tok' });
  ws.push(ready([{ conversation_id: 'c', last_seq: 3, delivered_seq: 0, read_seq: 0 }]));
  const [sync1] = ws.frames('sync');
  assert.equal(sync1.limit, 2);
  ws.push(message('c', 1));
  ws.push(message('c', 2));
  ws.push({ type: 'synced', id: sync1.id, more: true });
  const sync2 = ws.frames('sync')[1];
  assert.ok(sync2 && sync2.id !== sync1.id, 'a second page is asked for');
  ws.push(message('c', 3));
  ws.push({ type: 'synced', id: sync2.id, more: false });
  assert.equal(ws.frames('sync').length, 2, 'no third page');
  assert.deepEqual(statuses, ['connecting', 'syncing', 'online']);
  await until(() => ws.frames('received').length > 0);
  assert.deepEqual(ws.frames('received'), [{ type: 'received', conversation_id: 'c', seq: 3 }]);
});

test('an ack that overtakes owed messages is not reported as received', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup();
  t.after(() => client.stop());
  await client.start();
  const entry = await client.send({ conversationId: 'c', text: 'mine' });
  const ws = await connected(Socket, 0, [{ conversation_id: 'c', last_seq: 9, delivered_seq: 5, read_seq: 5 }]);
  const send = ws.frames('send')[0];
  assert.equal(send.id, entry.id);
  // The ack (seq 10) comes before the server replays 6..9.
  ws.push({ type: 'ack', id: entry.id, conversation_id: 'c', seq: 10, message_id: 'mine', ts: 2 });
  client.markRead('c', 10); // the UI shows the acked message and calls it read
  await new Promise((r) => setTimeout(r, 120));
  assert.deepEqual(ws.frames('received'), [], 'received must wait for 6..9');
  assert.deepEqual(ws.frames('read'), [], 'read must not run ahead of what is held either');
  const seen = [];
  client.on('message', (m) => seen.push(m.seq));
  for (const seq of [6, 7, 8, 9]) ws.push(message('c', seq));
  ws.push(message('c', 10, { sender_id: 'me', client_id: entry.id })); // sync returns our own
  await until(() => ws.frames('read').length > 0);
  assert.deepEqual(seen, [6, 7, 8, 9], 'owed messages are delivered, our own is not repeated');
  assert.deepEqual(ws.frames('read'), [{ type: 'read', conversation_id: 'c', seq: 10 }]);
  assert.equal(client.held('c'), 10);
  assert.deepEqual(client.pending(), []);
});

test('a send whose ack was lost is resent with the same id after reconnecting', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup();
  t.after(() => client.stop());
  await client.start();
  const ws1 = await connected(Socket, 0, []);
  const entry = await client.send({ to: 'bob', text: 'hello' });
  assert.equal(ws1.frames('send')[0].id, entry.id);
  ws1.drop(1006); // gone before the ack
  const ws2 = await connected(Socket, 1, []);
  const resent = ws2.frames('send');
  assert.equal(resent.length, 1);
  assert.equal(resent[0].id, entry.id);
  assert.equal(resent[0].text, 'hello');
  assert.equal(resent[0].to, 'bob');
  const acks = [];
  client.on('ack', (a) => acks.push(a));
  ws2.push({ type: 'ack', id: entry.id, conversation_id: 'c', seq: 1, message_id: 'm', ts: 3, duplicate: true });
  assert.equal(acks.length, 1);
  assert.equal(acks[0].duplicate, true);
  assert.deepEqual(client.pending(), []);
  ws2.push({ type: 'ack', id: entry.id, conversation_id: 'c', seq: 1, message_id: 'm', ts: 3, duplicate: true });
  assert.equal(acks.length, 1, 'a repeated ack is not reported twice');
});

test('the outbox survives a restart of the client (a reload) through its storage', { timeout: 5000 }, async (t) => {
  const storage = new MemoryStorage();
  const first = setup({ storage });
  await first.client.start();
  const entry = await first.client.send({ conversationId: 'c', text: 'typed offline' });
  first.client.stop();
  const second = setup({ storage });
  t.after(() => second.client.stop());
  await second.client.start();
  assert.deepEqual(second.client.pending().map((e) => e.id), [entry.id]);
  const ws = await connected(second.Socket, 0, []);
  assert.deepEqual(ws.frames('send').map((f) => f.id), [entry.id]);
  ws.push({ type: 'ack', id: entry.id, conversation_id: 'c', seq: 1, message_id: 'm', ts: 1 });
  await until(async () => (await storage.entries('outbox/')).length === 0);
});

test('a refused send is dropped with send-failed; an unavailable one is retried', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup();
  t.after(() => client.stop());
  await client.start();
  const ws = await connected(Socket, 0, []);
  const bad = await client.send({ conversationId: 'c', text: 'x'.repeat(10) });
  const busy = await client.send({ conversationId: 'c', text: 'retry me' });
  const failed = client.once('send-failed');
  ws.push({ type: 'error', id: bad.id, code: 'too_large', message: 'text too large' });
  assert.equal((await failed).id, bad.id);
  ws.push({ type: 'error', id: busy.id, code: 'unavailable', message: 'moving' });
  await until(() => ws.frames('send').filter((f) => f.id === busy.id).length === 2, 3000, 'retry');
  assert.deepEqual(client.pending().map((e) => e.id), [busy.id]);
});

test('4401 stops reconnecting; other closes reconnect with backoff', { timeout: 5000 }, async (t) => {
  const { Socket, client, statuses } = setup();
  t.after(() => client.stop());
  await client.start();
  const ws1 = await connected(Socket, 0, []);
  ws1.drop(1012);
  const ws2 = await connected(Socket, 1, []);
  assert.ok(statuses.includes('offline'));
  const unauthorized = client.once('unauthorized');
  ws2.drop(4401);
  await unauthorized;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(Socket.opened.length, 2, 'no reconnect after 4401');
  assert.equal(client.status, 'unauthorized');
});

test('no ack in time means a dead socket: drop it and resend on a new one', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup({ ackTimeoutMs: 60 });
  t.after(() => client.stop());
  await client.start();
  const ws1 = await connected(Socket, 0, []);
  const entry = await client.send({ conversationId: 'c', text: 'anyone there?' });
  await until(() => ws1.closedWith !== null, 1000, 'drop after ack timeout');
  const ws2 = await connected(Socket, 1, []);
  assert.deepEqual(ws2.frames('send').map((f) => f.id), [entry.id]);
});

test('a hole the server skipped is checked with history, then passed', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup();
  t.after(() => client.stop());
  await client.start();
  const ws = await connected(Socket, 0, [{ conversation_id: 'c', last_seq: 4, delivered_seq: 1, read_seq: 1 }]);
  const seen = [];
  client.on('message', (m) => seen.push(`${m.seq}${m.repaired ? 'r' : ''}`));
  ws.push(message('c', 4)); // 2 and 3 never came
  const [h] = ws.frames('history');
  assert.equal(h.conversation_id, 'c');
  assert.equal(h.before_seq, 4);
  assert.equal(h.limit, 2);
  const gap = client.once('gap');
  // 2 was hidden by this user (history leaves it out); 3 is there.
  const m3 = message('c', 3);
  delete m3.type;
  ws.push({ type: 'history', id: h.id, conversation_id: 'c', messages: [m3] });
  assert.deepEqual(await gap, { conversation_id: 'c', from: 2, to: 3, found: 1 });
  assert.deepEqual(seen, ['4', '3r']);
  assert.equal(client.held('c'), 4);
  await until(() => ws.frames('received').some((f) => f.seq === 4));
});

test('a live deleted frame for an unseen seq counts as delivered, a later copy does not', { timeout: 5000 }, async (t) => {
  const { Socket, client } = setup();
  t.after(() => client.stop());
  await client.start();
  const ws = await connected(Socket, 0, [{ conversation_id: 'c', last_seq: 1, delivered_seq: 0, read_seq: 0 }]);
  const events = [];
  client.on('message', (m) => events.push(`message ${m.seq}`));
  client.on('deleted', (d) => events.push(`deleted ${d.seq}`));
  ws.push({ type: 'deleted', conversation_id: 'c', seq: 1, scope: 'everyone', by: 'other' });
  ws.push(message('c', 1)); // the content, read before the purge: must not resurface
  assert.deepEqual(events, ['deleted 1']);
  assert.equal(client.held('c'), 1);
});
