/**
 * The Parley web client: everything the page does, on top of the SDK (served at ./sdk/).
 *
 * It keeps a small in-memory model (conversations, their messages by seq, the user's pending
 * sends) and re-renders from it whenever an SDK event changes it. What makes the ticks and
 * the "exactly once" true lives in the SDK: the outbox in IndexedDB, resends with the same id,
 * received/read reporting. The session is kept in sessionStorage, so each tab can be a
 * different user (two tabs, two people chatting) and a reload keeps the same device.
 */
import { IndexedDBStorage, ParleyApi, ParleyClient, login, register } from './sdk/index.js';

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'parley.session';
const OPEN_KEY = 'parley.open';
const NAMES_KEY = 'parley.names';
const PAGE = 50;

const state = {
  session: null,
  me: null,
  api: null,
  client: null,
  storage: null,
  /** @type {Map<string, Conv>} */
  convs: new Map(),
  openId: null,
  /** user id -> name: the protocol has no lookup by id, so names come from searches and from
   * the `sender_name` this client puts in every message's meta. */
  names: new Map(Object.entries(JSON.parse(localStorage.getItem(NAMES_KEY) || '{}'))),
  /** file id -> Promise of an object URL (images are fetched with the token, then shown). */
  images: new Map(),
  /** file -> when its signed URL in `images` expires (ms); none for local blob: URLs. */
  imageExpiry: new Map(),
  /** message and file -> its <img>, reused by every render. */
  imageViews: new Map(),
  /** conversation id -> Map(user id -> timer) of who is typing. */
  typing: new Map(),
  /** client id -> {entry, code}: sends the server refused for good. */
  failed: new Map(),
  attachment: null,
  /** The client's last `status` event. */
  status: { status: 'idle' },
  /** Whether the reader is at the end of the open chat (and should stay there as it grows);
   * changed only by scrolling, so content that grows under the reader does not reset it. */
  stick: true,
  /** The message row whose action menu is open. */
  menuKey: null,
};

/**
 * @typedef {object} Conv
 * @property {object} info the conversation object (members, admins, title, kind)
 * @property {Map<number, object>} msgs messages and tombstones by seq
 * @property {number} unread
 * @property {number} baseSeq last_seq when `unread` was counted by the server
 * @property {boolean} loaded whether history was read at least once
 * @property {boolean} complete whether the oldest message is loaded
 */

// ---------------------------------------------------------------- names and formatting

function learnName(userId, name) {
  if (!userId || !name || state.names.get(userId) === name) return;
  state.names.set(userId, name);
  localStorage.setItem(NAMES_KEY, JSON.stringify(Object.fromEntries(state.names)));
}

function nameOf(userId) {
  if (userId === state.me?.user_id) return 'You';
  return state.names.get(userId) || `user ${userId.slice(0, 6)}`;
}

function convTitle(conv) {
  if (conv.info.kind === 'group') return conv.info.title || 'Group';
  return nameOf(peerOf(conv) ?? state.me.user_id);
}

function peerOf(conv) {
  return conv.info.kind === 'direct' ? conv.info.members.find((u) => u !== state.me.user_id) : null;
}

function time(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// ---------------------------------------------------------------- log in and out

let registering = false;

function showAuth(message = '') {
  $('app').hidden = true;
  $('auth').hidden = false;
  $('auth-error').textContent = message;
  $('auth-username').focus();
}

function setAuthMode(register) {
  registering = register;
  $('auth-display-row').hidden = !register;
  $('auth-password-hint').hidden = !register;
  $('auth-password').autocomplete = register ? 'new-password' : 'current-password';
  $('auth-submit').textContent = register ? 'Create account' : 'Log in';
  $('auth-toggle').textContent = register ? 'Have an account? Log in' : 'New here? Create an account';
  $('auth-error').textContent = '';
}

async function onAuthSubmit(event) {
  event.preventDefault();
  const username = $('auth-username').value.trim();
  const password = $('auth-password').value;
  if (!username || password.length < 8) {
    $('auth-error').textContent = 'Enter a username and a password of at least 8 characters.';
    return;
  }
  $('auth-submit').disabled = true;
  try {
    if (registering) {
      await register(location.origin, { username, password, display_name: $('auth-display').value.trim() || undefined });
    }
    const session = await login(location.origin, { username, password, device_name: 'Web browser' });
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    $('auth-form').reset();
    await start(session);
  } catch (e) {
    $('auth-error').textContent = e.code === 'conflict' ? 'That username is taken.'
      : e.code === 'unauthorized' ? 'Wrong username or password.' : e.message;
  } finally {
    $('auth-submit').disabled = false;
  }
}

async function logout(message) {
  const pendingSends = state.client?.pending().length ?? 0;
  state.client?.stop();
  // The outbox belongs to this device; a new login is a new device, so an empty one can go.
  if (state.storage && pendingSends === 0) await state.storage.destroy().catch(() => {});
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(OPEN_KEY);
  Object.assign(state, { session: null, me: null, api: null, client: null, storage: null, openId: null });
  // Nothing of this user may stay on the page for the next one.
  for (const url of await Promise.allSettled(state.images.values())) {
    if (url.value) URL.revokeObjectURL(url.value);
  }
  for (const map of [state.convs, state.failed, state.images, state.imageExpiry, state.imageViews]) map.clear();
  $('messages').replaceChildren();
  document.body.classList.remove('chat-open');
  showAuth(message);
}

// ---------------------------------------------------------------- start

async function start(session) {
  state.session = session;
  state.api = new ParleyApi({ baseUrl: location.origin, token: session.token });
  try {
    state.me = await state.api.me();
  } catch (e) {
    if (e.code === 'unauthorized') return logout('Your session has ended. Please log in again.');
    throw e;
  }
  learnName(state.me.user_id, state.me.display_name || state.me.username);
  state.storage = new IndexedDBStorage(`parley-${session.device_id}`);
  const client = new ParleyClient({ baseUrl: location.origin, token: session.token, storage: state.storage });
  state.client = client;
  client.on('status', (s) => {
    state.status = s;
    renderBanner();
  });
  client.on('synced', () => refreshConversations());
  client.on('message', onMessage);
  client.on('deleted', onDeleted);
  client.on('ack', onAck);
  client.on('send-failed', onSendFailed);
  client.on('receipt', onReceipt);
  client.on('typing', onTyping);
  client.on('presence', () => renderAll());
  client.on('conversation', onConversationEvent);
  client.on('unauthorized', () => logout('Your session has ended. Please log in again.'));

  $('auth').hidden = true;
  $('app').hidden = false;
  $('me').textContent = state.me.display_name || state.me.username;
  await client.start(); // loads the outbox and the receipts seen before, then connects
  await refreshConversations().catch(() => {}); // offline: refreshed again once synced
  const reopen = sessionStorage.getItem(OPEN_KEY);
  if (reopen && state.convs.has(reopen)) openConversation(reopen);
  renderAll();
}

/** Summaries from the server: titles, members, and unread counts that survive reloads. */
async function refreshConversations() {
  for (const s of await state.api.conversations()) {
    const conv = ensureConv(s);
    conv.info = s;
    conv.unread = state.openId === s.conversation_id && isVisible() ? 0 : s.unread;
    conv.baseSeq = s.last_seq;
  }
  renderAll();
}

function ensureConv(info) {
  let conv = state.convs.get(info.conversation_id);
  if (!conv) {
    conv = { info, msgs: new Map(), unread: 0, baseSeq: info.last_seq ?? 0, loaded: false, complete: false };
    state.convs.set(info.conversation_id, conv);
  }
  return conv;
}

/** A conversation we hear of before its summary (a message racing the `created` event). */
async function convFor(conversationId) {
  if (state.convs.has(conversationId)) return state.convs.get(conversationId);
  return ensureConv(await state.api.conversation(conversationId));
}

// ---------------------------------------------------------------- SDK events

async function onMessage(m) {
  const conv = await convFor(m.conversation_id);
  learnName(m.sender_id, m.meta?.sender_name);
  const existing = conv.msgs.get(m.seq);
  if (!existing?.deleted) conv.msgs.set(m.seq, m);
  if (m.sender_id !== state.me.user_id && !m.deleted) {
    stopTyping(m.conversation_id, m.sender_id);
    if (m.seq > conv.baseSeq && !(state.openId === m.conversation_id && isVisible())) conv.unread += 1;
  }
  renderAll();
  if (state.openId === m.conversation_id) markRead();
}

function onDeleted(d) {
  const conv = state.convs.get(d.conversation_id);
  if (!conv) return;
  if (d.scope === 'me') {
    conv.msgs.delete(d.seq);
  } else {
    const m = conv.msgs.get(d.seq) ?? { conversation_id: d.conversation_id, seq: d.seq, ts: Date.now() };
    conv.msgs.set(d.seq, { ...m, deleted: true, text: null, attachments: [] });
  }
  renderAll();
}

/** An own send was stored: it becomes an ordinary message at its seq. */
function onAck({ conversation_id, seq, message_id, ts, id, entry }) {
  const conv = state.convs.get(conversation_id);
  if (conv && !conv.msgs.has(seq)) {
    conv.msgs.set(seq, {
      conversation_id, seq, message_id, ts, sender_id: state.me.user_id, text: entry.text,
      attachments: entry.attachments ?? [], meta: entry.meta, client_id: id,
    });
  }
  renderAll();
}

function onSendFailed(f) {
  state.failed.set(f.id, { entry: f.entry, code: f.code });
  renderAll();
}

function onReceipt(r) {
  const conv = state.convs.get(r.conversation_id);
  if (conv && r.user_id === state.me.user_id && r.kind === 'read' && r.seq >= conv.info.last_seq) {
    conv.unread = 0; // read on another of this user's devices
  }
  renderAll();
}

function onTyping(t) {
  if (t.user_id === state.me.user_id) return;
  const who = state.typing.get(t.conversation_id) ?? new Map();
  clearTimeout(who.get(t.user_id));
  who.set(t.user_id, setTimeout(() => stopTyping(t.conversation_id, t.user_id), 4000));
  state.typing.set(t.conversation_id, who);
  renderTyping();
}

function stopTyping(conversationId, userId) {
  const who = state.typing.get(conversationId);
  if (!who?.has(userId)) return;
  clearTimeout(who.get(userId));
  who.delete(userId);
  renderTyping();
}

function onConversationEvent({ conversation }) {
  const mine = conversation.members.includes(state.me.user_id);
  if (!mine) {
    state.convs.delete(conversation.conversation_id);
    if (state.openId === conversation.conversation_id) closeConversation();
  } else {
    const conv = ensureConv(conversation);
    conv.info = { ...conv.info, ...conversation };
  }
  renderAll();
}

// ---------------------------------------------------------------- sending

async function onComposerSubmit(event) {
  event.preventDefault();
  const conversationId = state.openId;
  const input = $('message-input');
  const text = input.value.trim();
  const attachment = state.attachment;
  if (!conversationId || (!text && !attachment)) return;
  $('composer-error').textContent = '';
  let attachments;
  if (attachment) {
    const progress = $('upload-progress');
    progress.hidden = false;
    $('send').disabled = true;
    try {
      const info = await state.api.upload(attachment.file, {
        onProgress: (loaded, total) => { progress.value = total ? loaded / total : 0; },
      });
      state.images.set(info.file_id, Promise.resolve(attachment.url));
      attachments = [info];
    } catch (e) {
      $('composer-error').textContent = `The image could not be uploaded (${e.message}). Try again when online.`;
      return;
    } finally {
      progress.hidden = true;
      $('send').disabled = false;
    }
    state.attachment = null;
    renderPreview();
  }
  input.value = '';
  autosize();
  const meta = { sender_name: state.me.display_name || state.me.username };
  await state.client.send({ conversationId, text: text || undefined, attachments, meta });
  state.stick = true; // one's own new message is worth seeing
  renderAll();
}

function onFileChosen() {
  const file = $('file-input').files[0];
  $('file-input').value = '';
  if (!file) return;
  if (!file.type.startsWith('image/')) {
    $('composer-error').textContent = 'Only images can be sent here.';
    return;
  }
  if (state.attachment) URL.revokeObjectURL(state.attachment.url);
  state.attachment = { file, url: URL.createObjectURL(file) };
  renderPreview();
  $('message-input').focus();
}

function renderPreview() {
  $('preview').hidden = !state.attachment;
  if (state.attachment) $('preview-img').src = state.attachment.url;
  else $('preview-img').removeAttribute('src');
}

function autosize() {
  const input = $('message-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
}

// ---------------------------------------------------------------- reading

function isVisible() {
  return document.visibilityState === 'visible';
}

function atBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
}

function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
}

/** Reports the newest message as read when the user can actually see it. */
function markRead() {
  const conv = state.convs.get(state.openId);
  if (!conv || !isVisible() || !atBottom() || conv.msgs.size === 0) return;
  const newest = Math.max(...conv.msgs.keys());
  state.client.markRead(state.openId, newest);
  if (conv.unread) {
    conv.unread = 0;
    renderList();
  }
}

async function openConversation(id) {
  const conv = state.convs.get(id);
  if (!conv) return;
  state.openId = id;
  state.stick = true;
  sessionStorage.setItem(OPEN_KEY, id);
  document.body.classList.add('chat-open');
  $('composer-error').textContent = '';
  renderAll();
  scrollToBottom();
  if (!conv.loaded) await loadOlder(conv, true);
  markRead();
}

function closeConversation() {
  state.openId = null;
  sessionStorage.removeItem(OPEN_KEY);
  document.body.classList.remove('chat-open');
  renderAll();
}

let loadingOlder = false;

/** One page of history: the newest page on first open, then the page before the oldest held. */
async function loadOlder(conv, first = false) {
  if (loadingOlder || (conv.complete && !first)) return;
  loadingOlder = true;
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  try {
    const beforeSeq = first || conv.msgs.size === 0 ? undefined : Math.min(...conv.msgs.keys());
    const page = await state.client.history(conv.info.conversation_id, { beforeSeq, limit: PAGE });
    for (const m of page) {
      learnName(m.sender_id, m.meta?.sender_name);
      if (!conv.msgs.get(m.seq)?.deleted) conv.msgs.set(m.seq, m);
    }
    conv.loaded = true;
    conv.complete = page.length < PAGE || page[0].seq === 1;
  } catch (e) {
    $('composer-error').textContent = `Could not load messages (${e.message}).`;
  } finally {
    loadingOlder = false;
  }
  renderAll();
  scroller.scrollTop = first ? scroller.scrollHeight : scroller.scrollHeight - fromBottom;
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  if (!state.me) return;
  renderBanner();
  renderList();
  renderChat();
}

/** The connection banner: hidden while online, else what the client is doing about it. */
function renderBanner() {
  const { status, retryInMs } = state.status;
  const pending = state.client?.pending().length ?? 0;
  const waiting = pending ? ` ${pending} message${pending > 1 ? 's' : ''} waiting to send.` : '';
  const text = {
    connecting: 'Connecting…',
    syncing: 'Syncing…',
    offline: navigator.onLine === false
      ? `Offline. Messages you send go out when you are back online.${waiting}`
      : `Connection lost. Retrying in ${Math.ceil((retryInMs ?? 0) / 1000)} s.${waiting}`,
  }[status];
  const banner = $('banner');
  banner.hidden = !text;
  banner.textContent = text ?? '';
  banner.dataset.status = status;
}

function lastMessage(conv) {
  if (conv.msgs.size === 0) return null;
  return conv.msgs.get(Math.max(...conv.msgs.keys()));
}

function renderList() {
  const list = $('conversations');
  const convs = [...state.convs.values()].sort((a, b) =>
    (lastMessage(b)?.ts ?? b.info.created_at ?? 0) - (lastMessage(a)?.ts ?? a.info.created_at ?? 0));
  $('no-conversations').hidden = convs.length > 0;
  list.replaceChildren(...convs.map((conv) => {
    const id = conv.info.conversation_id;
    const last = lastMessage(conv);
    const preview = !last ? (conv.info.kind === 'group' ? `${conv.info.members.length} members` : 'No messages yet')
      : last.deleted ? 'Message retracted'
        : last.text || (last.attachments?.length ? 'Image' : '');
    const peer = peerOf(conv);
    const button = el('button', { type: 'button', className: 'conversation' },
      peer ? presenceDot(peer) : el('span', { className: 'dot group', ariaHidden: 'true' }),
      el('span', { className: 'name' }, convTitle(conv)),
      el('span', { className: 'preview' }, preview),
      conv.unread ? el('span', { className: 'badge', ariaLabel: `${conv.unread} unread` }, String(conv.unread)) : null);
    button.dataset.id = id;
    if (state.openId === id) button.setAttribute('aria-current', 'true');
    button.addEventListener('click', () => openConversation(id));
    return el('li', {}, button);
  }));
}

function presenceDot(userId) {
  const p = state.client.presence.get(userId);
  const online = Boolean(p?.online);
  const label = online ? 'online' : p?.last_seen ? `last seen ${time(p.last_seen)}` : 'offline';
  const dot = el('span', { className: `dot ${online ? 'online' : ''}`, title: label, role: 'img', ariaLabel: label });
  return dot;
}

function renderChat() {
  const conv = state.convs.get(state.openId);
  $('chat').hidden = !conv;
  $('placeholder').hidden = Boolean(conv);
  if (!conv) return;
  $('chat-title').textContent = convTitle(conv);
  const peer = peerOf(conv);
  const p = peer && state.client.presence.get(peer);
  $('chat-subtitle').textContent = conv.info.kind === 'group'
    ? conv.info.members.map(nameOf).join(', ')
    : p?.online ? 'online' : p?.last_seen ? `last seen ${time(p.last_seen)}` : '';
  const dot = $('chat-presence');
  dot.hidden = !peer;
  dot.className = `dot ${p?.online ? 'online' : ''}`;
  $('older').hidden = !conv.loaded || conv.complete;
  renderMessages(conv);
  renderTyping();
}

function renderMessages(conv) {
  const list = $('messages');
  const focusKey = document.activeElement?.closest?.('.msg')?.dataset.key;
  const focusClass = document.activeElement?.dataset?.action;
  const rows = [...conv.msgs.values()].sort((a, b) => a.seq - b.seq).map((m) => messageRow(conv, m));
  const id = conv.info.conversation_id;
  // A pending send that history or sync already shows as stored (same client id) is that
  // message; its ack is on the way (the resend after a reload is answered as a duplicate).
  const stored = new Set([...conv.msgs.values()].map((m) => m.client_id).filter(Boolean));
  for (const entry of state.client.pending(id)) {
    if (!stored.has(entry.id)) rows.push(messageRow(conv, entry, 'pending'));
  }
  for (const [clientId, f] of state.failed) {
    if (f.entry.conversation_id === id) rows.push(messageRow(conv, { ...f.entry, id: clientId }, 'failed', f.code));
  }
  list.replaceChildren(...rows);
  if (focusKey) {
    const row = list.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    (row?.querySelector(`[data-action="${focusClass}"]`) ?? row?.querySelector('.more'))?.focus();
  }
  if (state.stick) scrollToBottom();
}

/** Ticks for an own message: every other member's position decides (all delivered, all read). */
function tickState(conv, seq) {
  const others = conv.info.members.filter((u) => u !== state.me.user_id);
  const receipts = state.client.receipts(conv.info.conversation_id);
  const pos = others.map((u) => receipts[u] ?? { delivered: 0, read: 0 });
  const readBy = pos.filter((p) => p.read >= seq).length;
  if (others.length && readBy === others.length) return { tick: 'read', label: 'Read' };
  if (others.length && pos.every((p) => p.delivered >= seq)) {
    return { tick: 'delivered', label: readBy ? `Delivered, read by ${readBy} of ${others.length}` : 'Delivered' };
  }
  return { tick: 'sent', label: 'Sent' };
}

/** Tick icons as inline SVG (static strings), so they look the same whatever fonts exist. */
const CHECK = 'M1.5 8.5l3.5 3.5 7-8';
const TICKS = {
  pending: '<circle cx="8" cy="8" r="6" /><path d="M8 4.8V8l2.2 1.4" />',
  sent: `<path d="${CHECK}" />`,
  delivered: `<path d="${CHECK}" /><path d="M7.5 11.5l.5.5 7-8" />`,
  failed: '<circle cx="8" cy="8" r="6" /><path d="M8 4.5v4.2M8 11v.3" />',
};
TICKS.read = TICKS.delivered;

function tickIcon(state) {
  return `<svg viewBox="0 0 17 16" aria-hidden="true">${TICKS[state]}</svg>`;
}

function messageRow(conv, m, status, code) {
  const own = m.sender_id === state.me.user_id || Boolean(status);
  const key = status ? `c${m.id}` : `s${m.seq}`;
  const li = el('li', { className: `msg ${own ? 'own' : 'theirs'}${m.deleted ? ' deleted' : ''}` });
  li.dataset.key = key;
  if (m.seq) li.dataset.seq = String(m.seq);
  if (!own && conv.info.kind === 'group') li.append(el('p', { className: 'sender' }, nameOf(m.sender_id)));
  if (m.deleted) {
    li.append(el('p', { className: 'text' }, 'Message retracted'));
  } else {
    for (const a of m.attachments ?? []) li.append(attachmentView(a, m));
    if (m.text) li.append(el('p', { className: 'text' }, m.text));
  }
  const meta = el('div', { className: 'meta' });
  if (m.ts || m.created_at) meta.append(el('time', { dateTime: new Date(m.ts ?? m.created_at).toISOString() }, time(m.ts ?? m.created_at)));
  if (own) {
    const t = status === 'pending' ? { tick: 'pending', label: 'Waiting to send' }
      : status === 'failed' ? { tick: 'failed', label: `Not sent (${code})` } : tickState(conv, m.seq);
    const ticks = el('span', { className: 'ticks', title: t.label, role: 'img', ariaLabel: t.label, innerHTML: tickIcon(t.tick) });
    ticks.dataset.state = t.tick;
    meta.append(ticks);
    if (status === 'failed') meta.append(el('span', { className: 'failed' }, `Not sent: ${code}`));
  }
  if (!status && !m.deleted) meta.append(actionsFor(conv, m, own, key));
  li.append(meta);
  return li;
}

function attachmentView(a, m) {
  const isImage = a.content_type?.startsWith('image/') || state.images.has(a.file_id);
  if (!isImage) {
    const b = el('button', { type: 'button', className: 'file quiet' }, `Download file (${Math.ceil((a.size ?? 0) / 1024)} KB)`);
    b.addEventListener('click', async () => {
      const url = URL.createObjectURL(await state.api.file(a.file_id));
      el('a', { href: url, download: a.file_id }).click();
    });
    return b;
  }
  // The same element across renders: a fresh one would be empty until it loads, and the
  // list shrinking for a moment would throw the reader off the end of the chat.
  const key = `${m.client_id ?? m.id ?? m.message_id}/${a.file_id}`;
  if (state.imageViews.has(key)) return state.imageViews.get(key);
  const from = m.sender_id ?? state.me.user_id; // pending sends have no sender yet
  const img = el('img', { className: 'attachment', alt: from === state.me.user_id ? 'Image you sent' : `Image from ${nameOf(from)}` });
  imageUrl(a.file_id).then((url) => { img.src = url; }, () => {
    img.alt = 'Image (could not be loaded)';
    state.imageViews.delete(key); // try again on the next render
  });
  state.imageViews.set(key, img);
  return img;
}

/**
 * An image's URL: a short-lived signed URL from the server (an <img> cannot send the token,
 * and no token goes into a URL), asked for again when it is about to expire; the sender's
 * own upload keeps its local blob: URL.
 */
function imageUrl(fileId) {
  const expires = state.imageExpiry.get(fileId);
  if (state.images.has(fileId) && !(expires < Date.now() + 30000)) return state.images.get(fileId);
  const p = state.api.fileUrl(fileId).then((s) => {
    state.imageExpiry.set(fileId, s.expires_at);
    return s.url;
  });
  p.catch(() => state.images.delete(fileId)); // try again on the next render
  state.images.set(fileId, p);
  return p;
}

/** The "⋯" menu: retract (sender or group admin) and hide (anyone). Stays open across renders. */
function actionsFor(conv, m, own, key) {
  const open = state.menuKey === key;
  const wrap = el('span', { className: 'actions' });
  const more = el('button', { type: 'button', className: 'more quiet', ariaLabel: 'Message actions', ariaExpanded: String(open) }, '⋯');
  const menu = el('span', { className: 'menu', hidden: !open });
  more.addEventListener('click', () => {
    state.menuKey = menu.hidden ? key : null;
    menu.hidden = !menu.hidden;
    more.ariaExpanded = String(!menu.hidden);
    if (!menu.hidden) menu.querySelector('button').focus();
  });
  const admin = conv.info.kind === 'group' && conv.info.admins?.includes(state.me.user_id);
  if (own || admin) menu.append(actionButton('retract', 'Retract', () => remove(conv, m.seq, 'everyone')));
  menu.append(actionButton('hide', 'Hide for me', () => remove(conv, m.seq, 'me')));
  wrap.append(more, menu);
  return wrap;
}

function actionButton(action, label, onClick) {
  const b = el('button', { type: 'button', className: 'quiet' }, label);
  b.dataset.action = action;
  b.addEventListener('click', onClick);
  return b;
}

async function remove(conv, seq, scope) {
  state.menuKey = null;
  try {
    await state.client.delete(conv.info.conversation_id, seq, scope);
  } catch (e) {
    $('composer-error').textContent = e.code === 'forbidden'
      ? 'This message can no longer be retracted.' : `Could not do that (${e.message}).`;
  }
}

function renderTyping() {
  const who = [...(state.typing.get(state.openId)?.keys() ?? [])].map(nameOf);
  $('typing').textContent = who.length === 0 ? ''
    : `${who.join(', ')} ${who.length > 1 ? 'are' : 'is'} typing…`;
}

// ---------------------------------------------------------------- new conversations

function openNewChat() {
  $('new-chat-form').reset();
  $('new-chat-error').textContent = '';
  onKindChange();
  $('new-chat-dialog').showModal();
  $('new-chat-users').focus();
}

function onKindChange() {
  const group = $('new-chat-form').elements.kind.value === 'group';
  $('group-title-row').hidden = !group;
  document.querySelector('label[for="new-chat-users"]').textContent = group ? 'Usernames' : 'Username';
  $('new-chat-hint').textContent = group ? 'Separate usernames with commas.' : 'Their exact username.';
}

async function onNewChatSubmit(event) {
  event.preventDefault();
  const group = $('new-chat-form').elements.kind.value === 'group';
  const names = $('new-chat-users').value.split(',').map((s) => s.trim()).filter(Boolean);
  const error = $('new-chat-error');
  if (names.length === 0 || (!group && names.length > 1)) {
    error.textContent = group ? 'Enter at least one username.' : 'Enter one username.';
    return;
  }
  try {
    const users = await Promise.all(names.map((n) => state.api.findUser(n)));
    const missing = names.filter((_, i) => !users[i]);
    if (missing.length) {
      error.textContent = `No user named ${missing.join(', ')}.`;
      return;
    }
    for (const u of users) learnName(u.user_id, u.display_name || u.username);
    const info = group
      ? await state.api.createGroup($('group-title').value.trim() || names.join(', '), users.map((u) => u.user_id))
      : await state.api.createDirect(users[0].user_id);
    const conv = ensureConv(info);
    conv.info = { ...conv.info, ...info };
    $('new-chat-dialog').close();
    await openConversation(info.conversation_id);
    $('message-input').focus();
  } catch (e) {
    error.textContent = e.message;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('auth-form').addEventListener('submit', onAuthSubmit);
  $('auth-toggle').addEventListener('click', () => setAuthMode(!registering));
  $('logout').addEventListener('click', () => logout());
  $('new-chat').addEventListener('click', openNewChat);
  $('new-chat-cancel').addEventListener('click', () => $('new-chat-dialog').close());
  $('new-chat-form').addEventListener('submit', onNewChatSubmit);
  $('new-chat-form').addEventListener('change', onKindChange);
  $('back').addEventListener('click', closeConversation);
  $('composer').addEventListener('submit', onComposerSubmit);
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', onFileChosen);
  $('preview-remove').addEventListener('click', () => {
    URL.revokeObjectURL(state.attachment.url);
    state.attachment = null;
    renderPreview();
  });
  const input = $('message-input');
  input.addEventListener('input', () => {
    autosize();
    if (input.value.trim() && state.openId) state.client.typing(state.openId);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('older').addEventListener('click', () => loadOlder(state.convs.get(state.openId)));
  $('scroller').addEventListener('scroll', () => {
    const conv = state.convs.get(state.openId);
    if (conv && $('scroller').scrollTop < 60 && conv.loaded) loadOlder(conv);
    state.stick = atBottom();
    markRead();
  });
  // Pictures load after their rows: keep a reader who is at the end there as the list grows.
  new ResizeObserver(() => {
    if (state.stick) scrollToBottom();
  }).observe($('messages'));
  document.addEventListener('visibilitychange', markRead);
}

wire();
setAuthMode(false);
const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
if (saved) start(saved).catch((e) => showAuth(e.message));
else showAuth();
