/**
 * @parley/client: the JavaScript SDK for Parley. Import everything from here; the modules
 * behind it are split by concern (http, client, sequencer, outbox, storage, emitter).
 */
export { ParleyClient, backoffDelay, newClientId } from './client.js';
export { ParleyApi, ParleyError, login, register } from './http.js';
export { Sequencer } from './sequencer.js';
export { Outbox } from './outbox.js';
export { IndexedDBStorage, MemoryStorage } from './storage.js';
export { Emitter } from './emitter.js';
