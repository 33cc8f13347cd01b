/**
 * The event API a UI binds to: `on` returns its own unsubscribe function, and `once` returns a
 * promise (handy in tests and in flows such as "wait until synced"). Kept here rather than using
 * EventTarget so that listeners receive the plain frame objects and work the same in Node.
 */
export class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map();

  /** Calls `fn(detail)` for every `type` event; returns a function that stops it. */
  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /** The next `type` event for which `filter(detail)` holds. */
  once(type, filter = () => true) {
    return new Promise((resolve) => {
      const off = this.on(type, (detail) => {
        if (!filter(detail)) return;
        off();
        resolve(detail);
      });
    });
  }

  /**
   * A listener that throws does not stop the others, nor the client's own bookkeeping; the
   * error is rethrown on its own task so it still shows up (console, test runner).
   */
  emit(type, detail) {
    for (const fn of [...(this.#listeners.get(type) ?? [])]) {
      try {
        fn(detail);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}
