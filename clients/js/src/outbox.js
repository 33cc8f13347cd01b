/**
 * The outbox: every send, written to storage *before* it goes on the wire and removed only
 * when the server has acknowledged it (or refused it for good).
 *
 * This is what makes sends exactly-once from the user's point of view. A message typed
 * offline, or whose ack was lost to a dropped connection or a reload, is still in the outbox
 * and is sent again with the same client `id`; the server stores it at most once and answers
 * a repeat with the original ack (`duplicate: true`).
 */

const PREFIX = 'outbox/';

export class Outbox {
  /** @param {import('./storage.js').MemoryStorage} storage any storage with get/set/delete/entries */
  constructor(storage) {
    this.storage = storage;
    /** @type {Map<string, object>} id -> entry, in the order they were added */
    this.entries = new Map();
    this.next = 1;
  }

  /** Reads what a previous page or process left behind. */
  async load() {
    const rows = await this.storage.entries(PREFIX);
    rows.sort(([, a], [, b]) => a.n - b.n);
    for (const [, entry] of rows) {
      this.entries.set(entry.id, entry);
      this.next = Math.max(this.next, entry.n + 1);
    }
  }

  /**
   * Persists a send and resolves once storage has it.
   * @param {object} frame the `send` frame's fields besides `type` (`id` included)
   */
  async add(frame) {
    const entry = { ...frame, n: this.next++, created_at: Date.now() };
    await this.storage.set(PREFIX + entry.id, entry);
    this.entries.set(entry.id, entry);
    return entry;
  }

  get(id) {
    return this.entries.get(id);
  }

  async remove(id) {
    if (!this.entries.delete(id)) return;
    await this.storage.delete(PREFIX + id);
  }

  /** Pending entries, oldest first. */
  list() {
    return [...this.entries.values()];
  }
}
