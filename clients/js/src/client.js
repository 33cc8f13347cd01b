/**
 * ParleyClient: one device's connection to Parley (docs/protocol.md, sections 3 and 6).
 *
 * It owns the WebSocket and everything that has to be right for "nothing lost, nothing
 * doubled": authenticating with the `auth` frame (browsers cannot set headers on a socket),
 * reconnecting with exponential backoff and full jitter, resuming with `sync` pages until
 * `more` is false, resending the persisted outbox with the same ids, deciding what to report
 * as `received` (see sequencer.js), checking holes in `seq` against `history`, and keeping
 * `read` from ever running ahead of what the device holds. A UI only binds to its events.
 *
 * Events (`client.on(type, fn)`): status, ready, synced, message, deleted, ack, send-failed,
 * receipt, typing, presence, conversation, gap, error, unauthorized; v1.1: edited, reaction.
 */
import { Emitter } from './emitter.js';
import { ParleyApi, ParleyError } from './http.js';
import { Outbox } from './outbox.js';
import { Sequencer } from './sequencer.js';
import { MemoryStorage } from './storage.js';

/** Error codes after which resending the same frame cannot succeed. */
const PERMANENT = new Set(['bad_request', 'forbidden', 'not_found', 'too_large', 'unauthorized']);
const RECEIPTS = 'receipts/';
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_TOO_SLOW = 4429;

/**
 * Full-jitter exponential backoff: a uniformly random delay in [0, min(cap, base * 2^attempt)).
 * Random spreading keeps a server restart from being met by every client at the same instant.
 */
export function backoffDelay(attempt, { baseMs = 500, capMs = 30000 } = {}, random = Math.random) {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** A fresh client message id: 128 random bits in hex (works outside secure contexts too). */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class ParleyClient extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.baseUrl the server's origin, e.g. `location.origin`
   * @param {string} options.token from `login`
   * @param {object} [options.storage] outbox and receipt store (default: in memory)
   * @param {typeof WebSocket} [options.WebSocket] constructor (default: the global one)
   * @param {typeof fetch} [options.fetch]
   * @param {number} [options.syncLimit] frames per `sync` page (server caps at 200)
   * @param {number} [options.ackTimeoutMs] a send unanswered this long means a dead socket
   * @param {{baseMs?: number, capMs?: number}} [options.backoff]
   */
  constructor({
    baseUrl, token, storage = new MemoryStorage(), WebSocket: WS = globalThis.WebSocket,
    fetch, syncLimit = 200, ackTimeoutMs = 10000, backoff = {},
  }) {
    super();
    this.api = new ParleyApi({ baseUrl, token, fetch });
    this.status = 'idle';
    this.userId = null;
    this.deviceId = null;
    /** @type {Map<string, {conversation_id: string, last_seq: number, read_seq: number}>} */
    this.conversations = new Map();
    /** @type {Map<string, {online: boolean, last_seen?: number}>} */
    this.presence = new Map();
    this.#token = token;
    this.#wsUrl = `${this.api.baseUrl.replace(/^http/, 'ws')}/v1/ws`;
    this.#WS = WS;
    this.#storage = storage;
    this.#outbox = new Outbox(storage);
    this.#options = { syncLimit, ackTimeoutMs, backoff };
  }

  #token;
  #wsUrl;
  #WS;
  #storage;
  #outbox;
  #options;
  #seq = new Sequencer();
  #ws = null;
  #ready = false;
  #stopped = false;
  #attempt = 0;
  #timers = { reconnect: null, ready: null, ack: null, cursors: null };
  #syncId = null;
  /** Sends written on this connection: id -> time sent. */
  #inflight = new Map();
  /** `history` and `delete` requests waiting for their answer: id -> {resolve, reject}. */
  #requests = new Map();
  /** conversation id -> {user id -> {delivered, read}} */
  #receipts = new Map();
  #checking = new Set();
  #receivedSent = new Map();
  #readSent = new Map();
  #readWanted = new Map();
  #typingSent = new Map();
  #onOnline = () => {
    if (this.status === 'offline') this.#connectNow();
  };
  #onOffline = () => {
    if (this.#ws) this.#drop('browser went offline');
  };

  /** Loads the outbox and receipts left by an earlier run, then connects. */
  async start() {
    await this.#outbox.load();
    for (const [key, value] of await this.#storage.entries(RECEIPTS)) {
      this.#receipts.set(key.slice(RECEIPTS.length), value);
    }
    globalThis.addEventListener?.('online', this.#onOnline);
    globalThis.addEventListener?.('offline', this.#onOffline);
    this.#connect();
  }

  /** Closes the socket for good. The outbox stays in storage for the next `start`. */
  stop() {
    this.#stopped = true;
    globalThis.removeEventListener?.('online', this.#onOnline);
    globalThis.removeEventListener?.('offline', this.#onOffline);
    for (const t of Object.values(this.#timers)) clearTimeout(t);
    const ws = this.#ws;
    this.#closed();
    ws?.close(1000, 'client stopped');
    this.#setStatus('closed');
  }

  /**
   * Queues a message: persisted first, then sent now if connected, or on every reconnect until
   * it is acknowledged (`ack` event, same `id`) or refused for good (`send-failed` event).
   * @param {{conversationId?: string, to?: string, text?: string, attachments?: {file_id: string}[], meta?: object, replyTo?: number}} message
   * @returns {Promise<object>} the outbox entry (its `id` is the client id)
   */
  async send({ conversationId, to, text, attachments, meta, replyTo }) {
    if (!conversationId === !to) throw new TypeError('send needs exactly one of conversationId and to');
    const frame = { id: newClientId() };
    if (conversationId) frame.conversation_id = conversationId;
    if (to) frame.to = to;
    if (text != null) frame.text = text;
    if (attachments?.length) frame.attachments = attachments; // as given; only file_id goes out
    if (meta != null) frame.meta = meta;
    if (replyTo != null) frame.reply_to = replyTo; // v1.1: the server adds a `quote`
    const entry = await this.#outbox.add(frame);
    this.#transmit(entry);
    return entry;
  }

  /** Sends not yet acknowledged (all, or one conversation's), oldest first. */
  pending(conversationId) {
    return this.#outbox.list().filter((e) => !conversationId || e.conversation_id === conversationId);
  }

  /** The seq up to which this device holds everything it is owed in a conversation. */
  held(conversationId) {
    return this.#seq.held(conversationId);
  }

  /** Last positions seen for the members: `{[user_id]: {delivered, read}}`. */
  receipts(conversationId) {
    return { ...this.#receipts.get(conversationId) };
  }

  /**
   * Reports that the user has seen the conversation up to `seq`. Never sent above what the
   * device holds: `read` implies `received` and would stop the server from delivering
   * anything below it that is still on its way.
   */
  markRead(conversationId, seq) {
    if (seq > (this.#readWanted.get(conversationId) ?? 0)) {
      this.#readWanted.set(conversationId, seq);
      this.#scheduleCursors();
    }
  }

  /** Tells the other members the user is typing (at most once a second per conversation). */
  typing(conversationId) {
    const now = Date.now();
    if (!this.#ready || now - (this.#typingSent.get(conversationId) ?? 0) < 1000) return;
    this.#typingSent.set(conversationId, now);
    this.#write({ type: 'typing', conversation_id: conversationId });
  }

  /**
   * Older messages, ascending: the newest `limit` below `beforeSeq` (default: the end).
   * Over the socket when connected, else over HTTP. Tombstones have `deleted: true`.
   */
  history(conversationId, { beforeSeq, limit = 50 } = {}) {
    if (!this.#ready) return this.api.messages(conversationId, { beforeSeq, limit });
    return this.#historyPage(conversationId, beforeSeq, limit);
  }

  /**
   * Retracts a message for everyone (`everyone`) or hides it from this user's devices (`me`).
   * Resolves to the ack. A `deleted` event follows (for `me`, emitted here, since the server
   * tells only the user's other devices).
   */
  async delete(conversationId, seq, scope) {
    if (!this.#ready) throw new ParleyError('unavailable', 'not connected');
    const ack = await this.#request({ type: 'delete', conversation_id: conversationId, seq, scope });
    if (scope === 'me') this.emit('deleted', { conversation_id: conversationId, seq, scope, by: this.userId });
    return ack;
  }

  /**
   * v1.1: replaces the text and/or meta of one of the user's messages (an absent field stays).
   * Resolves to the ack; every device of every member gets an `edited` event.
   */
  async edit(conversationId, seq, { text, meta } = {}) {
    if (!this.#ready) throw new ParleyError('unavailable', 'not connected');
    const frame = { type: 'edit', conversation_id: conversationId, seq };
    if (text != null) frame.text = text;
    if (meta != null) frame.meta = meta;
    return this.#request(frame);
  }

  /**
   * v1.1: adds (or with `remove`, takes back) the user's reaction to a message. Resolves to the
   * ack (`duplicate` when nothing changed); members get a `reaction` event.
   */
  async react(conversationId, seq, emoji, { remove = false } = {}) {
    if (!this.#ready) throw new ParleyError('unavailable', 'not connected');
    const frame = { type: 'react', conversation_id: conversationId, seq, emoji };
    if (remove) frame.remove = true;
    return this.#request(frame);
  }

  // ---- connection lifecycle

  #setStatus(status, extra = {}) {
    this.status = status;
    this.emit('status', { status, ...extra });
  }

  #connect() {
    if (this.#stopped) return;
    this.#setStatus('connecting');
    let ws;
    try {
      ws = new this.#WS(this.#wsUrl);
    } catch {
      this.#scheduleReconnect(0);
      return;
    }
    this.#ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token: this.#token }));
    ws.onmessage = (e) => {
      if (ws === this.#ws) this.#onFrame(JSON.parse(e.data));
    };
    ws.onclose = (e) => {
      if (ws === this.#ws) this.#onClose(e.code);
    };
    // An error always ends the connection (the close that follows is 1006), and some
    // implementations (Node 20's) report a refused connection with no close at all.
    ws.onerror = () => {
      if (ws === this.#ws) this.#drop('socket error');
    };
    this.#timers.ready = setTimeout(() => this.#drop('no ready in time'), 15000);
  }

  #connectNow() {
    clearTimeout(this.#timers.reconnect);
    this.#connect();
  }

  /** Gives up on the current socket at once (a dead one may take minutes to report close). */
  #drop(reason) {
    const ws = this.#ws;
    this.#onClose(4000);
    try {
      ws?.close(4000, reason);
    } catch {
      // already closing
    }
  }

  /** Forgets everything that belonged to the connection that just ended. */
  #closed() {
    this.#ws = null;
    this.#ready = false;
    clearTimeout(this.#timers.ready);
    clearTimeout(this.#timers.ack);
    this.#timers.ack = null;
    this.#inflight.clear();
    this.#checking.clear();
    for (const r of this.#requests.values()) r.reject(new ParleyError('unavailable', 'connection closed'));
    this.#requests.clear();
  }

  #onClose(code) {
    this.#closed();
    if (this.#stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      this.#stopped = true;
      this.#setStatus('unauthorized');
      this.emit('unauthorized', {});
      return;
    }
    this.#scheduleReconnect(code === CLOSE_TOO_SLOW ? 5000 : 0);
  }

  #scheduleReconnect(minMs) {
    const delay = Math.max(minMs, backoffDelay(this.#attempt++, this.#options.backoff));
    this.#setStatus('offline', { retryInMs: delay });
    this.#timers.reconnect = setTimeout(() => this.#connect(), delay);
  }

  #write(frame) {
    this.#ws.send(JSON.stringify(frame));
  }

  // ---- frames from the server

  #onFrame(f) {
    switch (f.type) {
      case 'ready': return this.#onReady(f);
      case 'synced': return this.#onSynced(f);
      case 'message': return this.#onMessage(f);
      case 'deleted': return this.#onDeleted(f);
      case 'ack': return this.#onAck(f);
      case 'receipt': return this.#onReceipt(f);
      case 'conversation': return this.#onConversation(f);
      case 'history': return this.#answer(f.id, f.messages);
      case 'error': return this.#onError(f);
      case 'presence':
        this.presence.set(f.user_id, { online: f.online, last_seen: f.last_seen });
        return this.emit('presence', f);
      case 'typing': return this.emit('typing', f);
      case 'edited': return this.emit('edited', f);
      case 'reaction': return this.emit('reaction', f);
      default: return undefined; // a newer server's frame: ignore, as the protocol allows
    }
  }

  #onReady(f) {
    clearTimeout(this.#timers.ready);
    this.#ready = true;
    this.#attempt = 0;
    this.userId = f.user_id;
    this.deviceId = f.device_id;
    for (const c of f.conversations) {
      this.conversations.set(c.conversation_id, {
        conversation_id: c.conversation_id, last_seq: c.last_seq, read_seq: c.read_seq,
      });
      this.#seq.start(c.conversation_id, c.delivered_seq);
      this.#receivedSent.set(c.conversation_id, c.delivered_seq);
      this.#readSent.set(c.conversation_id, c.read_seq);
    }
    this.#setStatus('syncing');
    this.emit('ready', f);
    for (const entry of this.#outbox.list()) this.#transmit(entry);
    this.#scheduleCursors();
    this.#sync();
  }

  #sync() {
    this.#syncId = `sync-${newClientId()}`;
    this.#write({ type: 'sync', id: this.#syncId, limit: this.#options.syncLimit });
  }

  #onSynced(f) {
    if (f.id !== this.#syncId) return;
    if (f.more) return this.#sync();
    this.#setStatus('online');
    // Every owed frame has arrived, so every hole left is one the server will not fill.
    for (const { conversationId, from, to } of this.#seq.holes()) {
      this.#checkHole(conversationId, { from, to });
    }
    return this.emit('synced', {});
  }

  #noteSeq(conversationId, seq) {
    const c = this.conversations.get(conversationId);
    if (c) c.last_seq = Math.max(c.last_seq, seq);
    else this.conversations.set(conversationId, { conversation_id: conversationId, last_seq: seq, read_seq: 0 });
  }

  #onMessage(m) {
    this.#noteSeq(m.conversation_id, m.seq);
    const { fresh, hole } = this.#seq.receive(m.conversation_id, m.seq);
    if (fresh) {
      this.emit('message', m);
      // Our own send, stored on an earlier connection whose ack never reached us.
      if (m.client_id && this.#outbox.get(m.client_id)) this.#acknowledged({ ...m, id: m.client_id, duplicate: true });
    }
    this.#afterReceive(m.conversation_id, hole);
  }

  #onDeleted(d) {
    const { hole } = this.#seq.receive(d.conversation_id, d.seq);
    this.emit('deleted', d);
    this.#afterReceive(d.conversation_id, hole);
  }

  #afterReceive(conversationId, hole) {
    this.#scheduleCursors();
    if (hole) this.#checkHole(conversationId, hole);
  }

  #onAck(a) {
    if (this.#requests.has(a.id)) return this.#answer(a.id, a);
    this.#noteSeq(a.conversation_id, a.seq);
    this.#seq.ack(a.conversation_id, a.seq);
    this.#scheduleCursors();
    if (this.#outbox.get(a.id)) this.#acknowledged(a);
    return undefined;
  }

  /** Reports an own send as stored, with the outbox entry it came from (text, attachments). */
  #acknowledged(a) {
    const entry = this.#outbox.get(a.id);
    this.#inflight.delete(a.id);
    this.#outbox.remove(a.id).catch((e) => this.emit('error', { code: 'storage', message: String(e) }));
    this.emit('ack', {
      id: a.id, conversation_id: a.conversation_id, seq: a.seq, message_id: a.message_id,
      ts: a.ts, duplicate: Boolean(a.duplicate), entry,
    });
  }

  #onReceipt(r) {
    const byUser = this.#receipts.get(r.conversation_id) ?? {};
    const pos = byUser[r.user_id] ?? { delivered: 0, read: 0 };
    if (r.kind === 'read') pos.read = Math.max(pos.read, r.seq);
    pos.delivered = Math.max(pos.delivered, r.seq);
    byUser[r.user_id] = pos;
    this.#receipts.set(r.conversation_id, byUser);
    if (r.user_id === this.userId && r.kind === 'read') {
      const c = this.conversations.get(r.conversation_id);
      if (c) c.read_seq = Math.max(c.read_seq, r.seq);
    }
    this.#storage.set(RECEIPTS + r.conversation_id, byUser)
      .catch((e) => this.emit('error', { code: 'storage', message: String(e) }));
    this.emit('receipt', r);
  }

  #onConversation(f) {
    const conv = f.conversation;
    const id = conv.conversation_id;
    const member = conv.members.includes(this.userId);
    if (member && !this.#seq.has(id)) {
      // Where the server starts this device: a new conversation from 1, a join from its end.
      const start = f.event === 'created' ? 0 : conv.last_seq;
      this.#seq.start(id, start);
      this.#receivedSent.set(id, start);
      this.#readSent.set(id, start);
    }
    if (member) {
      const prev = this.conversations.get(id);
      this.conversations.set(id, {
        conversation_id: id,
        last_seq: Math.max(prev?.last_seq ?? 0, conv.last_seq),
        read_seq: prev?.read_seq ?? 0,
      });
    } else {
      this.conversations.delete(id);
    }
    this.emit('conversation', f);
  }

  #onError(f) {
    if (f.id && this.#requests.has(f.id)) {
      const r = this.#requests.get(f.id);
      this.#requests.delete(f.id);
      return r.reject(new ParleyError(f.code, f.message));
    }
    if (f.id && f.id === this.#syncId) return this.#drop(`sync failed: ${f.code}`);
    const entry = f.id && this.#outbox.get(f.id);
    if (!entry) return this.emit('error', f);
    this.#inflight.delete(f.id);
    if (PERMANENT.has(f.code)) {
      this.#outbox.remove(f.id).catch((e) => this.emit('error', { code: 'storage', message: String(e) }));
      return this.emit('send-failed', { id: f.id, code: f.code, message: f.message, entry });
    }
    // unavailable, rate_limited, internal: the same id again, a little later.
    setTimeout(() => this.#transmit(entry), 250 + backoffDelay(2, this.#options.backoff));
    return undefined;
  }

  // ---- requests over the socket

  #request(frame) {
    const id = `${frame.type}-${newClientId()}`;
    return new Promise((resolve, reject) => {
      this.#requests.set(id, { resolve, reject });
      this.#write({ ...frame, id });
    });
  }

  #answer(id, value) {
    const r = this.#requests.get(id);
    if (!r) return;
    this.#requests.delete(id);
    r.resolve(value);
  }

  #historyPage(conversationId, beforeSeq, limit) {
    const frame = { type: 'history', conversation_id: conversationId, limit };
    if (beforeSeq != null) frame.before_seq = beforeSeq;
    return this.#request(frame);
  }

  /**
   * A hole the server will not fill (see sequencer.js): read it from `history`, deliver what
   * is there (hidden messages and messages from before joining are not), then move past it.
   */
  async #checkHole(conversationId, { from, to }) {
    if (this.#checking.has(conversationId)) return;
    this.#checking.add(conversationId);
    try {
      const found = [];
      let before = to + 1;
      while (before > from) {
        const limit = Math.min(200, before - from);
        const page = await this.#historyPage(conversationId, before, limit);
        found.unshift(...page.filter((m) => m.seq >= from && m.seq < before));
        if (page.length < limit || page[0].seq <= from) break; // nothing older to see
        before = page[0].seq;
      }
      let delivered = 0;
      for (const m of found) {
        if (!this.#seq.receive(conversationId, m.seq).fresh) continue;
        delivered += 1;
        this.emit('message', { ...m, repaired: true });
      }
      this.#seq.settle(conversationId, to);
      this.#checking.delete(conversationId);
      this.#scheduleCursors();
      this.emit('gap', { conversation_id: conversationId, from, to, found: delivered });
    } catch {
      // The connection closed mid-check: the hole is still there, checked after the next sync.
      this.#checking.delete(conversationId);
    }
  }

  // ---- sends

  #transmit(entry) {
    if (!this.#ready || this.#inflight.has(entry.id) || !this.#outbox.get(entry.id)) return;
    const { n, created_at, attachments, ...frame } = entry;
    if (attachments) frame.attachments = attachments.map((a) => ({ file_id: a.file_id }));
    this.#inflight.set(entry.id, Date.now());
    this.#write({ type: 'send', ...frame });
    if (!this.#timers.ack) this.#armAckTimer(this.#options.ackTimeoutMs);
  }

  /** No ack for a send within `ackTimeoutMs`: the socket is presumed dead; reconnect and resend. */
  #armAckTimer(ms) {
    this.#timers.ack = setTimeout(() => {
      this.#timers.ack = null;
      if (this.#inflight.size === 0) return;
      const oldest = Math.min(...this.#inflight.values());
      const left = oldest + this.#options.ackTimeoutMs - Date.now();
      if (left <= 0) this.#drop('ack timeout');
      else this.#armAckTimer(left);
    }, ms);
  }

  // ---- received and read

  #scheduleCursors() {
    if (this.#timers.cursors || !this.#ready) return;
    this.#timers.cursors = setTimeout(() => {
      this.#timers.cursors = null;
      if (this.#ready) this.#flushCursors();
    }, 50);
  }

  /** Cumulative `received` up to `held`, and `read` up to what the user saw but never past `held`. */
  #flushCursors() {
    for (const id of this.conversations.keys()) {
      const held = this.#seq.held(id);
      const read = Math.min(this.#readWanted.get(id) ?? 0, held);
      if (read > (this.#readSent.get(id) ?? 0)) {
        this.#readSent.set(id, read);
        this.#receivedSent.set(id, Math.max(read, this.#receivedSent.get(id) ?? 0));
        this.#write({ type: 'read', conversation_id: id, seq: read });
        this.conversations.get(id).read_seq = Math.max(this.conversations.get(id).read_seq, read);
      }
      if (held > (this.#receivedSent.get(id) ?? 0)) {
        this.#receivedSent.set(id, held);
        this.#write({ type: 'received', conversation_id: id, seq: held });
      }
    }
  }
}
