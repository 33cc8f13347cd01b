// The SDK against the real server binary, over real sockets: one server for the whole file,
// fresh users for every test.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage, ParleyApi, ParleyClient, ParleyError, login, register } from '../src/index.js';
import { parleyBin, startParley } from './server.js';
import { check, matches, seen, violations } from './schema.js';

const bin = parleyBin();
// Every test also has a deadline, so a broken client fails instead of waiting forever.
const opts = { skip: bin ? false : 'no parley binary: build it or set PARLEY_BIN', timeout: 30000 };
let server;
const clients = [];

before(async () => {
  if (bin) server = await startParley(bin);
});
after(async () => {
  for (const c of clients) c.stop();
  await server?.cleanup();
});

let counter = 0;
/** A registered, logged-in user: `{session, api, name}`. `device()` logs in again (a new device). */
async function user(prefix) {
  const name = `${prefix}${Date.now().toString(36)}${counter++}`;
  await register(server.baseUrl, { username: name, password: 'correct horse', display_name: prefix });
  const device = async () => {
    const session = await login(server.baseUrl, { username: name, password: 'correct horse' });
    return { session, api: new ParleyApi({ baseUrl: server.baseUrl, token: session.token }) };
  };
  return { name, device, ...(await device()) };
}

/** A client for a session; records every frame it writes in `client.wire`. */
function client(session, options = {}) {
  const wire = [];
  class RecordingSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => check('server', JSON.parse(ev.data)));
    }
    send(data) {
      const frame = JSON.parse(data);
      check('client', frame);
      wire.push(frame);
      super.send(data);
    }
  }

  const c = new ParleyClient({
    baseUrl: server.baseUrl, token: session.token, WebSocket: RecordingSocket,
    backoff: { baseMs: 50, capMs: 500 }, ...options,
  });
  c.wire = wire;
  clients.push(c);
  return c;
}

function collect(c, type) {
  const out = [];
  c.on(type, (d) => out.push(d));
  return out;
}

async function until(check, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function started(c) {
  const synced = c.once('synced');
  await c.start();
  await synced;
  return c;
}

async function summary(api, conversationId) {
  return (await api.conversations()).find((s) => s.conversation_id === conversationId);
}

test('register and login: errors carry the protocol code', opts, async () => {
  const alice = await user('alice');
  assert.ok(alice.session.token && alice.session.device_id);
  await assert.rejects(
    register(server.baseUrl, { username: alice.name, password: 'another one' }),
    (e) => e instanceof ParleyError && e.code === 'conflict' && e.status === 409,
  );
  await assert.rejects(
    login(server.baseUrl, { username: alice.name, password: 'wrong password' }),
    (e) => e.code === 'unauthorized',
  );
  assert.equal((await alice.api.me()).username, alice.name);
  assert.equal((await alice.api.findUser(alice.name)).user_id, alice.session.user_id);
  assert.equal(await alice.api.findUser(`${alice.name}-nobody`), null);
});

test('a chat: ack, live message, delivered and read receipts', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const b = await started(client(bob.session));
  const receipts = collect(a, 'receipt');
  const got = b.once('message');
  const entry = await a.send({ conversationId: conv.conversation_id, text: 'hi bob' });
  const ack = await a.once('ack', (x) => x.id === entry.id);
  assert.equal(ack.seq, 1);
  assert.equal(ack.duplicate, false);
  const m = await got;
  assert.equal(m.text, 'hi bob');
  assert.equal(m.sender_id, alice.session.user_id);
  await until(() => receipts.some((r) => r.kind === 'delivered' && r.seq === 1), 5000, 'delivered');
  b.markRead(conv.conversation_id, 1);
  await until(() => receipts.some((r) => r.kind === 'read' && r.seq === 1), 5000, 'read');
  assert.deepEqual(a.receipts(conv.conversation_id)[bob.session.user_id], { delivered: 1, read: 1 });
  const s = await summary(bob.api, conv.conversation_id);
  assert.equal(s.read_seq, 1);
  assert.equal(s.unread, 0);
});

test('a message queued offline is sent once on connect; a resend of its id is a duplicate', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const b = await started(client(bob.session));
  const received = collect(b, 'message');
  const storage = new MemoryStorage();
  const a1 = client(alice.session, { storage });
  const entry = await a1.send({ conversationId: conv.conversation_id, text: 'typed offline' });
  assert.deepEqual(a1.pending().map((e) => e.id), [entry.id], 'kept before any connection');
  const saved = await storage.get(`outbox/${entry.id}`);
  await a1.start();
  await a1.once('ack', (x) => x.id === entry.id);
  a1.stop();
  // As if the ack had been lost: the entry is back in storage, and a new run resends it.
  await storage.set(`outbox/${entry.id}`, saved);
  const a2 = client(alice.session, { storage });
  await a2.start();
  const again = await a2.once('ack', (x) => x.id === entry.id);
  assert.equal(again.duplicate, true);
  assert.equal(a2.wire.filter((f) => f.type === 'send' && f.id === entry.id).length, 1);
  await until(() => received.length >= 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(received.map((m) => m.text), ['typed offline'], 'delivered exactly once');
  const stored = await bob.api.messages(conv.conversation_id);
  assert.equal(stored.length, 1, 'stored exactly once');
});

test('resume: sync pages until more is false, then received covers them all', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  for (let i = 1; i <= 25; i += 1) await a.send({ conversationId: conv.conversation_id, text: `m${i}` });
  await until(() => a.pending().length === 0, 10000, 'all acked');
  const b = client(bob.session, { syncLimit: 10 });
  const got = collect(b, 'message');
  await started(b);
  assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 25 }, (_, i) => i + 1));
  assert.equal(b.wire.filter((f) => f.type === 'sync').length, 3, 'pages of 10, 10 and 5');
  await until(async () => (await summary(bob.api, conv.conversation_id)).delivered_seq === 25, 5000, 'cursor');
});

test('a device that is behind gets its ack early and every owed message still', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  for (let i = 1; i <= 5; i += 1) await a.send({ conversationId: conv.conversation_id, text: `owed ${i}` });
  await until(() => a.pending().length === 0, 10000, 'all acked');
  const b = client(bob.session, { syncLimit: 1 });
  const got = collect(b, 'message');
  const entry = await b.send({ conversationId: conv.conversation_id, text: 'sent while behind' });
  const ack = b.once('ack', (x) => x.id === entry.id);
  await started(b);
  assert.equal((await ack).seq, 6);
  assert.deepEqual(got.map((m) => m.text), ['owed 1', 'owed 2', 'owed 3', 'owed 4', 'owed 5']);
  assert.equal(b.held(conv.conversation_id), 6);
  const received = b.wire.filter((f) => f.type === 'received').map((f) => f.seq);
  assert.ok(received.every((s, i) => i === 0 || s > received[i - 1]), 'received only grows');
  await until(async () => (await summary(bob.api, conv.conversation_id)).delivered_seq === 6, 5000, 'cursor');
});

test('history pages backwards over the socket and both ways over HTTP', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  for (let i = 1; i <= 30; i += 1) await a.send({ conversationId: conv.conversation_id, text: `h${i}` });
  await until(() => a.pending().length === 0, 10000, 'all acked');
  const last = await a.history(conv.conversation_id, { limit: 10 });
  assert.deepEqual(last.map((m) => m.seq), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
  const older = await a.history(conv.conversation_id, { beforeSeq: 21, limit: 10 });
  assert.deepEqual(older.map((m) => m.text), Array.from({ length: 10 }, (_, i) => `h${i + 11}`));
  const forward = await bob.api.messages(conv.conversation_id, { afterSeq: 5, limit: 3 });
  assert.deepEqual(forward.map((m) => m.seq), [6, 7, 8]);
  const backward = await bob.api.messages(conv.conversation_id, { beforeSeq: 3 });
  assert.deepEqual(backward.map((m) => m.seq), [1, 2]);
});

test('a message hidden on another device comes as deleted (me) in its place, with no hole', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const bob2 = await bob.device();
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const b1 = await started(client(bob.session));
  for (const text of ['one', 'two', 'three']) await a.send({ conversationId: conv.conversation_id, text });
  await until(() => b1.held(conv.conversation_id) === 3, 5000, 'bob device 1 holds 3');
  await b1.delete(conv.conversation_id, 2, 'me');
  const b2 = client(bob2.session);
  const got = collect(b2, 'message');
  const deleted = collect(b2, 'deleted');
  const gaps = collect(b2, 'gap');
  await started(b2);
  await until(() => b2.held(conv.conversation_id) === 3, 5000, 'bob device 2 holds 3');
  assert.deepEqual(got.map((m) => m.text), ['one', 'three']);
  assert.deepEqual(deleted.map((d) => [d.seq, d.scope]), [[2, 'me']]);
  assert.deepEqual(gaps, []);
  await until(async () => (await summary(bob2.api, conv.conversation_id)).delivered_seq === 3, 5000, 'cursor');
});

test('v1.1: edits, reactions and replies', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const b = await started(client(bob.session));
  const edited = collect(b, 'edited');
  const reactions = collect(a, 'reaction');
  const got = collect(a, 'message');
  await a.send({ conversationId: conv.conversation_id, text: 'helo' });
  await until(() => b.held(conv.conversation_id) === 1, 5000, 'bob holds it');
  const ack = await a.edit(conv.conversation_id, 1, { text: 'hello' });
  assert.equal(ack.seq, 1);
  await until(() => edited.some((e) => e.text === 'hello'), 5000, 'edited event');
  await b.react(conv.conversation_id, 1, '👍');
  await until(() => reactions.some((r) => r.emoji === '👍' && r.added), 5000, 'reaction event');
  await b.send({ conversationId: conv.conversation_id, text: 'yes', replyTo: 1 });
  await until(() => got.some((m) => m.seq === 2), 5000, 'alice gets the reply');
  assert.equal(got.find((m) => m.seq === 2).quote.text, 'hello');
  const page = await a.history(conv.conversation_id);
  assert.equal(page[0].text, 'hello');
  assert.deepEqual(page[0].reactions, [{ emoji: '👍', count: 1, me: false }]);
  assert.equal(page[1].quote.text, 'hello');
  await assert.rejects(b.edit(conv.conversation_id, 1, { text: 'mine' }), (e) => e.code === 'forbidden');
});

test('retract for everyone reaches the other member; hide stays with its user', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const b = await started(client(bob.session));
  const deleted = collect(b, 'deleted');
  await a.send({ conversationId: conv.conversation_id, text: 'oops' });
  await a.send({ conversationId: conv.conversation_id, text: 'keep' });
  await until(() => b.held(conv.conversation_id) === 2, 5000, 'bob holds both');
  const ack = await a.delete(conv.conversation_id, 1, 'everyone');
  assert.equal(ack.seq, 1);
  await until(() => deleted.some((d) => d.seq === 1 && d.scope === 'everyone'), 5000, 'deleted frame');
  await b.delete(conv.conversation_id, 2, 'me');
  const bobView = await b.history(conv.conversation_id);
  assert.deepEqual(bobView.map((m) => [m.seq, Boolean(m.deleted)]), [[1, true]]);
  const aliceView = await a.history(conv.conversation_id);
  assert.deepEqual(aliceView.map((m) => m.text ?? ''), ['', 'keep']);
  await assert.rejects(b.delete(conv.conversation_id, 99, 'everyone'), (e) => e.code === 'not_found');
});

test('typing and presence reach the other member', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const online = a.once('presence', (p) => p.user_id === bob.session.user_id && p.online);
  const b = await started(client(bob.session));
  await online;
  assert.equal(a.presence.get(bob.session.user_id).online, true);
  const typing = a.once('typing');
  b.typing(conv.conversation_id);
  assert.deepEqual(await typing, { type: 'typing', conversation_id: conv.conversation_id, user_id: bob.session.user_id });
  const offline = a.once('presence', (p) => p.user_id === bob.session.user_id && !p.online);
  b.stop();
  const p = await offline;
  assert.ok(p.last_seen > 0);
});

test('upload with progress, then send it as an attachment', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
  const progress = [];
  const info = await alice.api.upload(new Blob([png], { type: 'image/png' }), {
    onProgress: (loaded, total) => progress.push([loaded, total]),
  });
  assert.equal(info.size, png.length);
  assert.equal(info.content_type, 'image/png');
  assert.deepEqual(progress.at(-1), [png.length, png.length]);
  await assert.rejects(alice.api.upload(Buffer.from('not a png'), { contentType: 'image/png' }),
    (e) => e.code === 'bad_request');
  const a = await started(client(alice.session));
  const b = await started(client(bob.session));
  const got = b.once('message');
  await a.send({ conversationId: conv.conversation_id, attachments: [{ file_id: info.file_id }] });
  const m = await got;
  assert.equal(m.attachments[0].file_id, info.file_id);
  const bytes = Buffer.from(await (await bob.api.file(info.file_id)).arrayBuffer());
  assert.ok(bytes.equals(png));
  // v1.1: an image's dimensions and thumbnail; signed URLs need no token.
  assert.deepEqual([m.attachments[0].width, m.attachments[0].height], [1, 1]);
  const signed = await bob.api.fileUrl(info.file_id);
  const res = await fetch(signed.url);
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(png));
  assert.equal((await fetch(signed.thumbnail_url)).headers.get('content-type'), 'image/png');
  assert.equal((await fetch(signed.url.replace('sig=', 'sig=x'))).status, 401);
});

test('the server restarts: the client reconnects, resends and resumes', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.api.createDirect(bob.session.user_id);
  const a = await started(client(alice.session));
  const b = await started(client(bob.session));
  const got = collect(b, 'message');
  await server.stop();
  await until(() => a.status !== 'online' && b.status !== 'online', 5000, 'both disconnected');
  const acked = a.once('ack');
  const entry = await a.send({ conversationId: conv.conversation_id, text: 'during the restart' });
  await server.restart(); // the client may well be back, and acknowledged, before this returns
  assert.equal((await acked).id, entry.id);
  await until(() => got.length === 1, 10000, 'bob gets it');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(got.map((m) => m.text), ['during the restart']);
  assert.equal(b.status, 'online');
});

test('a bad token ends in unauthorized, without retrying', opts, async () => {
  const c = client({ token: 'not-a-token' });
  const statuses = collect(c, 'status');
  await c.start();
  await c.once('unauthorized');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(statuses.map((s) => s.status), ['connecting', 'unauthorized']);
});

test('a member added to a group starts at its join point; one removed stops getting it', opts, async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const carol = await user('carol');
  const group = await alice.api.createGroup('trio', [bob.session.user_id]);
  assert.deepEqual(group.admins, [alice.session.user_id]);
  const a = await started(client(alice.session));
  for (const text of ['before carol 1', 'before carol 2']) await a.send({ conversationId: group.conversation_id, text });
  await until(() => a.pending().length === 0, 5000, 'acked');
  const c = await started(client(carol.session));
  const got = collect(c, 'message');
  const gaps = collect(c, 'gap');
  const joined = c.once('conversation', (f) => f.event === 'member_added');
  const updated = await alice.api.addMembers(group.conversation_id, [carol.session.user_id]);
  assert.ok(updated.members.includes(carol.session.user_id));
  assert.equal((await joined).conversation.last_seq, 2);
  await a.send({ conversationId: group.conversation_id, text: 'welcome carol' });
  await until(() => got.length === 1, 5000, 'carol gets the new message');
  assert.equal(got[0].seq, 3);
  assert.equal(c.held(group.conversation_id), 3);
  assert.deepEqual(gaps, [], 'messages from before joining are not a hole to check');
  const history = await c.history(group.conversation_id);
  assert.deepEqual(history.map((m) => m.text), ['welcome carol']);
  const removed = c.once('conversation', (f) => f.event === 'member_removed');
  await alice.api.removeMember(group.conversation_id, carol.session.user_id);
  await removed;
  assert.equal(c.conversations.has(group.conversation_id), false);
  await assert.rejects(carol.api.conversation(group.conversation_id), (e) => e.code === 'forbidden');
});

// Last in the file: everything the tests above put on the wire, both ways, matched the JSON
// Schemas in docs/schema/ (the reference for every field's presence and nullability).
test('every frame on the wire matched docs/schema', opts, () => {
  assert.deepEqual(violations.slice(0, 3), [], `${violations.length} frames did not match`);
  for (const type of ['ready', 'ack', 'message', 'receipt', 'deleted', 'edited', 'reaction',
    'typing', 'presence', 'conversation', 'synced', 'history']) {
    assert.ok(seen.server.has(type), `no ${type} frame was checked`);
  }
  for (const type of ['auth', 'send', 'received', 'read', 'sync', 'history', 'delete', 'typing']) {
    assert.ok(seen.client.has(type), `no client ${type} frame was checked`);
  }
  // The schemas refuse what the protocol refuses (so this check can fail).
  const ack = { type: 'ack', id: 'c1', conversation_id: 'x', seq: 1, message_id: 'm', ts: 1 };
  assert.ok(matches('server', ack));
  assert.ok(!matches('server', { ...ack, seq: '1' }), 'seq must be an integer');
  assert.ok(!matches('server', { ...ack, duplicate: false }), 'duplicate is left out when false');
  assert.ok(!matches('server', { type: 'message', conversation_id: 'x', seq: 1 }), 'missing fields');
  assert.ok(!matches('client', { type: 'send', id: 'c', conversation_id: 'x', to: 'u', text: 't' }),
    'send names exactly one of conversation_id and to');
});
