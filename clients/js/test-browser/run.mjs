// Browser tests of the web client: Debian's Chromium driven by playwright-core, two users in
// two browser contexts (alice on a phone-sized viewport, bob on a desktop one), against the
// real server. Prints one line per scenario and `N passed, N failed`; exits non-zero on failure.
//
//   PARLEY_BIN=target/release/parley node clients/js/test-browser/run.mjs
//
// PARLEY_SERVES_WEB=1: the server serves the page itself at /. Otherwise a dev server serves
// web/ and the SDK and proxies /v1/* to the server (devserver.mjs). CHROMIUM overrides the
// browser path (default /usr/bin/chromium). Screenshots go to target/browser-screenshots/;
// UPDATE_README_SCREENSHOT=1 also rewrites web/screenshot.png (alice's phone, scenario 4).
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

// The SDK seeds one scenario from Node, which needs a global WebSocket (a flag on Node 20).
if (typeof WebSocket === 'undefined') {
  const r = spawnSync(process.execPath, ['--experimental-websocket', ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { chromium } = await import('playwright-core');
const { ParleyApi, ParleyClient, login, register } = await import('../src/index.js');
const { parleyBin, repoRoot, startParley } = await import('../test/server.js');
const { startDevServer } = await import('./devserver.mjs');

const SHOTS = path.join(repoRoot, 'target/browser-screenshots');
const PASSWORD = 'correct horse battery';

// ------------------------------------------------------------------ helpers

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function settle(ms = 1000) {
  await new Promise((r) => setTimeout(r, ms));
}

/** The message rows whose text is exactly `text`. */
const messages = (page, text) => page.locator('#messages .msg')
  .filter({ has: page.locator('.text').getByText(text, { exact: true }) });

async function signUp(page, url, username) {
  await page.goto(url);
  await page.getByRole('button', { name: 'New here? Create an account' }).click();
  const form = page.locator('#auth');
  await form.getByLabel('Username').fill(username);
  await form.getByLabel('Password').fill(PASSWORD);
  await form.getByLabel('Display name').fill(username[0].toUpperCase() + username.slice(1));
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#app').waitFor();
}

async function send(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

async function openChat(page, title) {
  await page.locator('#conversations .conversation', { hasText: title }).click();
  await page.locator('#chat-title', { hasText: title }).waitFor();
}

async function tickOf(page, text) {
  return messages(page, text).locator('.ticks').getAttribute('data-state');
}

async function waitTick(page, text, state) {
  await messages(page, text).locator(`.ticks[data-state="${state}"]`).waitFor();
}

/** What the server stores, read with the page's own session: the ground truth for "once". */
async function storedTexts(page, baseUrl) {
  const session = JSON.parse(await page.evaluate(() => sessionStorage.getItem('parley.session')));
  const open = await page.evaluate(() => sessionStorage.getItem('parley.open'));
  const api = new ParleyApi({ baseUrl, token: session.token });
  return (await api.messages(open, { limit: 200 })).map((m) => m.text);
}

/** Records every tick state a message's row shows, in order, from inside the page. */
async function recordTicks(page, text) {
  await page.evaluate((wanted) => {
    window.tickLog = [];
    const note = () => {
      const row = [...document.querySelectorAll('#messages .msg')].find((r) => r.textContent.includes(wanted));
      const s = row?.querySelector('.ticks')?.dataset.state;
      if (s && window.tickLog.at(-1) !== s) window.tickLog.push(s);
    };
    new MutationObserver(note).observe(document.getElementById('messages'), { childList: true, subtree: true, attributes: true });
  }, text);
}

/** A picture made by the page's canvas, as PNG bytes: something worth seeing on the other side. */
async function makePng(page) {
  const dataUrl = await page.evaluate(() => {
    const c = Object.assign(document.createElement('canvas'), { width: 240, height: 160 });
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, 240, 160);
    grad.addColorStop(0, '#2b6cd4');
    grad.addColorStop(1, '#22a355');
    g.fillStyle = grad;
    g.fillRect(0, 0, 240, 160);
    g.fillStyle = '#fff';
    g.font = 'bold 36px sans-serif';
    g.fillText('Parley', 62, 92);
    return c.toDataURL('image/png');
  });
  return Buffer.from(dataUrl.split(',')[1], 'base64');
}

// ------------------------------------------------------------------ scenarios

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });

scenario('two users chat; the ticks go sent → delivered → read', async ({ alice, bob, url }) => {
  await signUp(alice, url, 'alice');
  await signUp(bob, url, 'bob');
  await alice.getByRole('button', { name: 'New chat' }).click();
  await alice.locator('#new-chat-dialog').getByLabel('Username').fill('bob');
  await alice.getByRole('button', { name: 'Start' }).click();
  await alice.locator('#chat-title', { hasText: 'Bob' }).waitFor();
  await recordTicks(alice, 'Hello Bob');
  await send(alice, 'Hello Bob');
  await waitTick(alice, 'Hello Bob', 'delivered');
  // bob has not opened the conversation: delivered, not read, and an unread badge.
  await bob.locator('#conversations .badge', { hasText: '1' }).waitFor();
  await settle(300);
  check(await tickOf(alice, 'Hello Bob') === 'delivered', 'read before bob opened the conversation');
  await openChat(bob, 'Alice');
  await waitTick(alice, 'Hello Bob', 'read');
  check(await bob.locator('#conversations .badge').count() === 0, 'badge still shown after reading');
  const log = (await alice.evaluate(() => window.tickLog)).filter((s) => s !== 'pending');
  check(JSON.stringify(log) === '["sent","delivered","read"]', `tick states were ${JSON.stringify(log)}`);
  // typing, then a reply
  await bob.getByLabel('Message', { exact: true }).pressSequentially('Hi Al');
  await alice.locator('#typing', { hasText: 'Bob is typing' }).waitFor();
  await bob.getByLabel('Message', { exact: true }).pressSequentially('ice!');
  await bob.getByLabel('Message', { exact: true }).press('Enter');
  await messages(alice, 'Hi Alice!').waitFor();
  await alice.locator('#typing:empty').waitFor();
});

scenario('a message sent offline is delivered exactly once after reconnecting', async ({ alice, bob, url, aliceContext }) => {
  await aliceContext.setOffline(true);
  await alice.locator('#banner[data-status="offline"]').waitFor();
  await send(alice, 'Sent while offline');
  await waitTick(alice, 'Sent while offline', 'pending');
  await alice.locator('#banner', { hasText: '1 message waiting to send' }).waitFor();
  await settle(800);
  check(await messages(bob, 'Sent while offline').count() === 0, 'bob got it while alice was offline');
  await aliceContext.setOffline(false);
  await messages(bob, 'Sent while offline').waitFor();
  await waitTick(alice, 'Sent while offline', 'read');
  await alice.locator('#banner').waitFor({ state: 'hidden' });
  await settle();
  check(await messages(bob, 'Sent while offline').count() === 1, 'bob shows it more than once');
  check(await messages(alice, 'Sent while offline').count() === 1, 'alice shows it more than once');
  const stored = (await storedTexts(bob, url)).filter((t) => t === 'Sent while offline');
  check(stored.length === 1, `stored ${stored.length} times`);
});

scenario('a reload in the middle of a send: no duplicate, nothing lost', async ({ alice, bob, url }) => {
  // The page's socket goes through this route, which can lose one ack, or one send frame.
  const wire = [];
  let loseAckOf = null;
  let loseSendWith = null;
  await alice.routeWebSocket(/\/v1\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((data) => {
      const f = JSON.parse(data);
      if (f.type === 'send') wire.push({ dir: 'out', id: f.id, text: f.text });
      if (f.type === 'send' && f.text === loseSendWith) {
        loseSendWith = null;
        return; // never reaches the server
      }
      server.send(data);
    });
    server.onMessage((data) => {
      const f = JSON.parse(data);
      if (f.type === 'ack') wire.push({ dir: 'in', id: f.id, duplicate: Boolean(f.duplicate) });
      if (f.type === 'ack' && f.id === loseAckOf) {
        loseAckOf = null;
        return; // stored by the server, never acknowledged to the page
      }
      ws.send(data);
    });
  });
  await alice.reload();
  await alice.locator('#chat-title', { hasText: 'Bob' }).waitFor();
  await alice.locator('#banner').waitFor({ state: 'hidden' });
  await alice.locator('#chat-presence.online').waitFor(); // bob, now a contact, is online

  // 1. The server stores the message, the ack is lost, the page reloads.
  const lostAck = new Promise((resolve) => {
    const timer = setInterval(() => {
      const out = wire.find((w) => w.dir === 'out' && w.text === 'Reload after the ack was lost');
      if (out) {
        clearInterval(timer);
        resolve(out.id);
      }
    }, 5);
  });
  const armed = (id) => { loseAckOf = id; };
  const sending = send(alice, 'Reload after the ack was lost');
  const id = await lostAck;
  armed(id);
  await sending;
  await messages(bob, 'Reload after the ack was lost').waitFor();
  await alice.reload();
  // The outbox resends it with the same id, and the server answers with the original ack.
  for (let i = 0; i < 100 && !wire.some((w) => w.dir === 'in' && w.id === id && w.duplicate); i += 1) await settle(50);
  const sends = wire.filter((w) => w.dir === 'out' && w.text === 'Reload after the ack was lost');
  check(sends.length === 2 && sends.every((w) => w.id === id), `expected a resend with the same id, saw ${JSON.stringify(sends)}`);
  check(wire.some((w) => w.dir === 'in' && w.id === id && w.duplicate), 'the resend was not answered as a duplicate');
  // Not necessarily "read": bob's receipt may have come while the page was reloading, and the
  // protocol does not replay receipts.
  await messages(alice, 'Reload after the ack was lost').locator('.ticks:not([data-state="pending"])').waitFor();

  // 2. The send frame never reaches the server, the page reloads.
  loseSendWith = 'Reload before it reached the server';
  await send(alice, 'Reload before it reached the server');
  await waitTick(alice, 'Reload before it reached the server', 'pending');
  await alice.reload();
  await messages(bob, 'Reload before it reached the server').waitFor();
  await waitTick(alice, 'Reload before it reached the server', 'read');
  const resent = wire.filter((w) => w.dir === 'out' && w.text === 'Reload before it reached the server');
  check(resent.length === 2 && resent[0].id === resent[1].id, 'not resent with the same id');

  await settle();
  for (const text of ['Reload after the ack was lost', 'Reload before it reached the server']) {
    check(await messages(bob, text).count() === 1, `bob shows "${text}" ${await messages(bob, text).count()} times`);
    check(await messages(alice, text).count() === 1, `alice shows "${text}" ${await messages(alice, text).count()} times`);
    const stored = (await storedTexts(alice, url)).filter((t) => t === text);
    check(stored.length === 1, `"${text}" stored ${stored.length} times`);
  }
});

scenario('an image upload shows its preview on the other side', async ({ alice, bob }) => {
  const png = await makePng(alice);
  await alice.locator('#file-input').setInputFiles({ name: 'parley.png', mimeType: 'image/png', buffer: png });
  await alice.locator('#preview img[src^="blob:"]').waitFor();
  await alice.getByLabel('Message', { exact: true }).fill('A picture');
  await alice.getByRole('button', { name: 'Send' }).click();
  await alice.locator('#preview').waitFor({ state: 'hidden' });
  const img = messages(bob, 'A picture').locator('img.attachment');
  await img.waitFor();
  await bob.waitForFunction(() => {
    const i = [...document.querySelectorAll('#messages img.attachment')].at(-1);
    // v1.1: loaded from a signed URL, without the token.
    return i && i.complete && i.naturalWidth === 240 && i.src.includes('sig=') && !i.src.includes('Bearer');
  });
  await waitTick(alice, 'A picture', 'read');
  if (process.env.UPDATE_README_SCREENSHOT === '1') {
    await settle(300);
    await alice.screenshot({ path: path.join(repoRoot, 'web/screenshot.png') });
  }
});

scenario('retract for everyone and hide for me', async ({ alice, bob }) => {
  await send(alice, 'Oops, wrong chat');
  await messages(bob, 'Oops, wrong chat').waitFor();
  await messages(alice, 'Oops, wrong chat').getByRole('button', { name: 'Message actions' }).click();
  await messages(alice, 'Oops, wrong chat').getByRole('button', { name: 'Retract' }).click();
  await messages(bob, 'Oops, wrong chat').waitFor({ state: 'detached' });
  await bob.locator('#messages .msg.deleted', { hasText: 'Message retracted' }).waitFor();
  await alice.locator('#messages .msg.deleted', { hasText: 'Message retracted' }).waitFor();
  // bob hides alice's greeting: gone for bob, still there for alice.
  await messages(bob, 'Hello Bob').getByRole('button', { name: 'Message actions' }).click();
  await messages(bob, 'Hello Bob').getByRole('button', { name: 'Hide for me' }).click();
  await messages(bob, 'Hello Bob').waitFor({ state: 'detached' });
  await bob.reload();
  await bob.locator('#chat-title', { hasText: 'Alice' }).waitFor();
  await messages(bob, 'Hi Alice!').waitFor();
  check(await messages(bob, 'Hello Bob').count() === 0, 'the hidden message came back after a reload');
  check(await messages(alice, 'Hello Bob').count() === 1, 'hiding removed it for alice too');
});

scenario('scroll back through history', async ({ alice, url }) => {
  // carol, a Node client of the same SDK, leaves 120 messages for alice.
  await register(url, { username: 'carol', password: PASSWORD, display_name: 'Carol' });
  const session = await login(url, { username: 'carol', password: PASSWORD });
  const api = new ParleyApi({ baseUrl: url, token: session.token });
  const aliceUser = await api.findUser('alice');
  const conv = await api.createDirect(aliceUser.user_id);
  const carol = new ParleyClient({ baseUrl: url, token: session.token });
  await carol.start();
  for (let i = 1; i <= 120; i += 1) {
    await carol.send({ conversationId: conv.conversation_id, text: `Old message ${i}`, meta: { sender_name: 'Carol' } });
  }
  await carol.once('ack', (a) => a.seq === 120);
  carol.stop();
  // alice got them live; after a reload she holds none and must page through history.
  await alice.getByRole('button', { name: 'Back to conversations' }).click();
  await alice.reload();
  await openChat(alice, 'Carol');
  await messages(alice, 'Old message 120').waitFor();
  const first = messages(alice, 'Old message 1');
  check(await first.count() === 0, 'all history loaded at once');
  for (let i = 0; i < 10 && await first.count() === 0; i += 1) {
    await alice.locator('#scroller').evaluate((s) => { s.scrollTop = 0; });
    await settle(300);
  }
  await first.waitFor();
  check(await alice.locator('#messages .msg').count() === 120, 'not every message was loaded exactly once');
  check(await alice.locator('#older').isHidden(), '"Load older messages" still offered at the start');
});

// ------------------------------------------------------------------ run

async function main() {
  const bin = parleyBin();
  if (!bin) {
    console.error('run.mjs: no parley binary; set PARLEY_BIN');
    return 2;
  }
  await mkdir(SHOTS, { recursive: true });
  const server = await startParley(bin);
  const web = process.env.PARLEY_SERVES_WEB === '1'
    ? { url: server.baseUrl, close: async () => {} }
    : await startDevServer({ backend: server.baseUrl });
  // launch() gives the browser a fresh temporary profile (user-data-dir) of its own.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const aliceContext = await browser.newContext({ viewport: { width: 360, height: 640 }, deviceScaleFactor: 2 });
  const bobContext = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  const pageErrors = [];
  for (const [who, page] of [['alice', alice], ['bob', bob]]) {
    page.setDefaultTimeout(10000);
    page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  }
  const ctx = { alice, bob, aliceContext, bobContext, url: web.url };
  let passed = 0;
  let failed = 0;
  for (const [i, s] of scenarios.entries()) {
    const started = Date.now();
    const before = pageErrors.length;
    let error = null;
    try {
      await s.fn(ctx);
      if (pageErrors.length > before) throw new Error(`uncaught error in the page: ${pageErrors.slice(before).join('; ')}`);
    } catch (e) {
      error = e;
    }
    const slug = `${i + 1}-${s.name.replace(/[^a-z0-9]+/gi, '-').replace(/-+$/, '').toLowerCase()}`;
    await alice.screenshot({ path: path.join(SHOTS, `${slug}-alice.png`) }).catch(() => {});
    await bob.screenshot({ path: path.join(SHOTS, `${slug}-bob.png`) }).catch(() => {});
    const took = `${((Date.now() - started) / 1000).toFixed(1)} s`;
    if (error) {
      failed += 1;
      // Playwright's first lines name the call and the locator; the rest is its call log.
      console.log(`not ok ${i + 1} - ${s.name} (${took}): ${error.message.split('\n').slice(0, 3).join(' | ')}`);
    } else {
      passed += 1;
      console.log(`ok ${i + 1} - ${s.name} (${took})`);
    }
  }
  await browser.close();
  await web.close();
  await server.cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

process.exit(await main());
