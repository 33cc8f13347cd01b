// A scripted stand-in for the server's socket, so the client's protocol logic (ordering,
// cursors, retries, timeouts) can be driven frame by frame. Injected as `WebSocket`.

/** A WebSocket class whose instances are collected in `Socket.opened`. */
export function fakeWebSocket() {
  class Socket {
    static opened = [];

    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closedWith = null;
      Socket.opened.push(this);
      setTimeout(() => this.onopen?.());
    }

    send(data) {
      this.sent.push(JSON.parse(data));
    }

    close(code) {
      this.closedWith = code ?? 1000;
    }

    /** The server sends a frame. */
    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    /** The server (or the network) closes the connection. */
    drop(code = 1006) {
      this.onclose?.({ code });
    }

    /** Frames the client sent, of one type. */
    frames(type) {
      return this.sent.filter((f) => f.type === type);
    }
  }
  return Socket;
}

/** Resolves when `check()` is truthy; rejects after `ms`. */
export async function until(check, ms = 2000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function ready(conversations = []) {
  return {
    type: 'ready', user_id: 'me', device_id: 'dev', session_id: 's', heartbeat_ms: 15000,
    conversations,
  };
}

export function message(conversation_id, seq, extra = {}) {
  return {
    type: 'message', conversation_id, seq, message_id: `m${seq}`, sender_id: 'other',
    sender_device_id: 'od', ts: 1, text: `text ${seq}`, attachments: [], meta: null, ...extra,
  };
}
