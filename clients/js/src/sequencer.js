/**
 * Per-conversation bookkeeping of which `seq`s this device holds: the decision behind every
 * `received` report, and the gap detector. Pure (no I/O), so the algorithm is tested alone.
 *
 * `held` is the highest seq such that the device holds every message at or below it that it
 * is owed. It is the only number ever reported as `received`, because the server takes that
 * report as "deliver nothing at or below this again": reporting past a message not yet held
 * would lose it for this device.
 *
 * Positions above `held` that are already accounted for sit in `above`:
 *  - the seq of an `ack` for one of our own sends (the server sends no `message` for it), and
 *  - a `message` or `deleted` frame that arrived above a hole.
 * Whenever `held + 1` is in `above`, `held` moves up (`#advance`).
 *
 * Why an ack does not move `held` by itself: a device that is behind may get the ack of its
 * new send (say seq 10) before the server has replayed what it owed (6 to 9). Taking 10 as
 * the high-water mark would drop 6..9 as "already seen" and report them received. Instead 10
 * waits in `above` until 6..9 have arrived.
 *
 * A hole is a range `held+1 .. min(above)-1`. The server delivers in seq order, so a hole
 * below a frame that has just arrived, or any hole once a `sync` has finished, is one the
 * server will not fill: messages hidden by this user on another device, or from before this
 * member joined. `receive` reports such a hole; the client then checks it against `history`
 * (delivering anything found there) and calls `settle`. A hole that is only below an ack is
 * not reported: the owed messages may still be on their way.
 */
export class Sequencer {
  /** @type {Map<string, {held: number, above: Set<number>}>} */
  #convs = new Map();

  #conv(id) {
    let c = this.#convs.get(id);
    if (!c) {
      c = { held: 0, above: new Set() };
      this.#convs.set(id, c);
    }
    return c;
  }

  #advance(c) {
    for (const s of c.above) if (s <= c.held) c.above.delete(s);
    while (c.above.delete(c.held + 1)) c.held += 1;
  }

  #hole(c) {
    if (c.above.size === 0) return null;
    return { from: c.held + 1, to: Math.min(...c.above) - 1 };
  }

  has(conversationId) {
    return this.#convs.has(conversationId);
  }

  /** The seq up to which everything owed is held (what `received` may report). */
  held(conversationId) {
    return this.#convs.get(conversationId)?.held ?? 0;
  }

  /** The server's cursor for this device (`ready`, or joining a conversation); never moves back. */
  start(conversationId, seq) {
    const c = this.#conv(conversationId);
    c.held = Math.max(c.held, seq);
    this.#advance(c);
  }

  /** One of our sends was stored at `seq`. */
  ack(conversationId, seq) {
    const c = this.#conv(conversationId);
    if (seq > c.held) c.above.add(seq);
    this.#advance(c);
  }

  /**
   * A `message` or `deleted` frame for `seq` arrived in the delivery stream.
   * @returns {{fresh: boolean, hole: {from: number, to: number} | null}} `fresh` is false for
   *   a seq already held or acknowledged; `hole` is a range the server skipped below it.
   */
  receive(conversationId, seq) {
    const c = this.#conv(conversationId);
    const fresh = seq > c.held && !c.above.has(seq);
    if (fresh) c.above.add(seq);
    this.#advance(c);
    return { fresh, hole: seq > c.held ? this.#hole(c) : null };
  }

  /** Every hole, as after a finished `sync`, when each one is final. */
  holes() {
    const out = [];
    for (const [conversationId, c] of this.#convs) {
      const hole = this.#hole(c);
      if (hole) out.push({ conversationId, ...hole });
    }
    return out;
  }

  /** Everything up to `to` has been checked and delivered: `held` moves past it. */
  settle(conversationId, to) {
    const c = this.#conv(conversationId);
    c.held = Math.max(c.held, to);
    this.#advance(c);
  }
}
