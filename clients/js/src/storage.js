/**
 * Where the client keeps what must outlive the page: the outbox (sends not yet acknowledged)
 * and the last receipt positions it saw.
 *
 * The client needs only four asynchronous operations, so any key-value store will do:
 *
 *   get(key) -> value | undefined      set(key, value)      delete(key)
 *   entries(prefix) -> [[key, value], ...] sorted by key
 *
 * Values are plain JSON-like objects. `IndexedDBStorage` is the browser's durable store;
 * `MemoryStorage` keeps everything in the process (Node, tests, or a UI that accepts losing the
 * outbox on reload). Hand one instance to one device: message ids are deduplicated per device.
 */

/** A storage that lives as long as the object. Two clients given the same one share it. */
export class MemoryStorage {
  #map = new Map();

  async get(key) {
    return this.#map.has(key) ? structuredClone(this.#map.get(key)) : undefined;
  }

  async set(key, value) {
    this.#map.set(key, structuredClone(value));
  }

  async delete(key) {
    this.#map.delete(key);
  }

  async entries(prefix = '') {
    return [...this.#map.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => [k, structuredClone(v)]);
  }
}

/**
 * A storage in one IndexedDB database (one object store, `kv`). Every `set` is its own
 * transaction and resolves once it has committed, so a value whose `set` resolved survives a
 * reload or a crash of the tab.
 */
export class IndexedDBStorage {
  /** @param {string} name database name; use one per device, e.g. `parley-${device_id}` */
  constructor(name, indexedDB = globalThis.indexedDB) {
    this.name = name;
    this.#idb = indexedDB;
  }

  #idb;
  #db = null;

  #open() {
    if (!this.#db) {
      this.#db = new Promise((resolve, reject) => {
        const req = this.#idb.open(this.name, 1);
        req.onupgradeneeded = () => req.result.createObjectStore('kv');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return this.#db;
  }

  async #run(mode, fn) {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('kv', mode);
      const req = fn(tx.objectStore('kv'));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  get(key) {
    return this.#run('readonly', (s) => s.get(key));
  }

  async set(key, value) {
    await this.#run('readwrite', (s) => s.put(value, key));
  }

  async delete(key) {
    await this.#run('readwrite', (s) => s.delete(key));
  }

  async entries(prefix = '') {
    const range = IDBKeyRange.bound(prefix, `${prefix}\uffff`);
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('kv', 'readonly');
      const store = tx.objectStore('kv');
      const keys = store.getAllKeys(range);
      const values = store.getAll(range);
      tx.oncomplete = () => resolve(keys.result.map((k, i) => [k, values.result[i]]));
      tx.onerror = () => reject(tx.error);
    });
  }

  /** Closes the connection and deletes the database (after logging out, say). */
  async destroy() {
    if (this.#db) (await this.#db).close();
    this.#db = null;
    await new Promise((resolve, reject) => {
      const req = this.#idb.deleteDatabase(this.name);
      req.onsuccess = () => resolve();
      req.onerror = () => reject(req.error);
      req.onblocked = () => resolve();
    });
  }
}
