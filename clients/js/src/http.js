/**
 * The HTTP half of the protocol (docs/protocol.md, section 2): accounts, sessions,
 * conversations, message listings and files.
 *
 * It exists apart from the socket client because a UI needs it before there is a socket (to
 * register and log in) and beside it (to find users, create conversations, upload files).
 * Every non-2xx answer becomes a `ParleyError` carrying the protocol's error `code`.
 */

/** An error the server answered with (`{"error":{"code","message"}}`), or a network failure. */
export class ParleyError extends Error {
  /**
   * @param {string} code protocol error code (`bad_request`, `unauthorized`, ...) or `network`
   * @param {string} message
   * @param {number} [status] HTTP status, when there was an answer
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'ParleyError';
    this.code = code;
    this.status = status;
  }
}

function trimBase(baseUrl) {
  return String(baseUrl).replace(/\/+$/, '');
}

/** Turns an answer into its JSON body, or throws the ParleyError it carries. */
async function decode(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  const body = text ? safeJson(text) : null;
  if (res.ok) return body;
  const err = body && body.error;
  throw new ParleyError(
    (err && err.code) || 'internal',
    (err && err.message) || `HTTP ${res.status}`,
    res.status,
  );
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function request(fetchFn, url, init) {
  let res;
  try {
    res = await fetchFn(url, init);
  } catch (e) {
    throw new ParleyError('network', e && e.message ? e.message : 'network error');
  }
  return decode(res);
}

function jsonInit(method, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  return { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
}

/**
 * Creates an account. Resolves to `{user_id, username}`; a taken name rejects with `conflict`.
 * @param {string} baseUrl e.g. `location.origin` or `http://127.0.0.1:8080`
 */
export function register(baseUrl, { username, password, display_name }, fetchFn = globalThis.fetch) {
  return request(fetchFn, `${trimBase(baseUrl)}/v1/users`,
    jsonInit('POST', { username, password, display_name }));
}

/**
 * Logs in, which creates a new device. Resolves to `{token, user_id, device_id, expires_at}`.
 * Keep the result: a device's outbox ids are only deduplicated for that same device.
 */
export function login(baseUrl, { username, password, device_name }, fetchFn = globalThis.fetch) {
  return request(fetchFn, `${trimBase(baseUrl)}/v1/sessions`,
    jsonInit('POST', { username, password, device_name }));
}

/** The authenticated HTTP endpoints, bound to one token. */
export class ParleyApi {
  /**
   * @param {{baseUrl: string, token: string, fetch?: typeof fetch}} options
   */
  constructor({ baseUrl, token, fetch: fetchFn = globalThis.fetch }) {
    this.baseUrl = trimBase(baseUrl);
    this.token = token;
    this.fetch = fetchFn;
  }

  #call(method, path, body) {
    return request(this.fetch, this.baseUrl + path, jsonInit(method, body, this.token));
  }

  /** `{user_id, username, display_name}` of the caller. */
  me() {
    return this.#call('GET', '/v1/users/me');
  }

  /** The user with this exact username, or `null` if there is none. */
  async findUser(username) {
    try {
      return await this.#call('GET', `/v1/users?username=${encodeURIComponent(username)}`);
    } catch (e) {
      if (e.code === 'not_found') return null;
      throw e;
    }
  }

  /** The direct conversation with `userId` (created if the pair has none yet). */
  createDirect(userId) {
    return this.#call('POST', '/v1/conversations', { kind: 'direct', members: [userId] });
  }

  /** A new group; the caller becomes a member and its admin. */
  createGroup(title, memberIds) {
    return this.#call('POST', '/v1/conversations', { kind: 'group', title, members: memberIds });
  }

  /** Summaries: conversation objects plus `delivered_seq`, `read_seq` and `unread`. */
  async conversations() {
    return (await this.#call('GET', '/v1/conversations')).conversations;
  }

  conversation(conversationId) {
    return this.#call('GET', `/v1/conversations/${encodeURIComponent(conversationId)}`);
  }

  addMembers(conversationId, userIds) {
    return this.#call('POST', `/v1/conversations/${encodeURIComponent(conversationId)}/members`,
      { user_ids: userIds });
  }

  /** Leave (your own id) or, as a group admin, remove someone. */
  removeMember(conversationId, userId) {
    return this.#call('DELETE',
      `/v1/conversations/${encodeURIComponent(conversationId)}/members/${encodeURIComponent(userId)}`);
  }

  /**
   * One page of messages, ascending by seq. With `afterSeq`: forward from it; otherwise the
   * newest below `beforeSeq` (default: the end). Tombstones have `deleted: true`.
   */
  async messages(conversationId, { beforeSeq, afterSeq, limit } = {}) {
    const q = new URLSearchParams();
    if (beforeSeq != null) q.set('before_seq', String(beforeSeq));
    if (afterSeq != null) q.set('after_seq', String(afterSeq));
    if (limit != null) q.set('limit', String(limit));
    const qs = q.toString();
    const path = `/v1/conversations/${encodeURIComponent(conversationId)}/messages${qs ? `?${qs}` : ''}`;
    return (await this.#call('GET', path)).messages;
  }

  /**
   * Uploads a file; resolves to `{file_id, size, content_type, sha256}`. `onProgress(loaded,
   * total)` is called as bytes go out: continuously where XMLHttpRequest exists (browsers),
   * otherwise once at the start and once at the end (fetch cannot report upload progress).
   * @param {Blob|ArrayBuffer|Uint8Array} data
   * @param {{contentType?: string, onProgress?: (loaded: number, total: number) => void, signal?: AbortSignal}} [options]
   */
  upload(data, { contentType, onProgress, signal } = {}) {
    const type = contentType || (typeof Blob !== 'undefined' && data instanceof Blob && data.type)
      || 'application/octet-stream';
    const total = data.size ?? data.byteLength;
    const url = `${this.baseUrl}/v1/files`;
    if (typeof XMLHttpRequest !== 'undefined') {
      return uploadWithXhr(url, this.token, data, type, total, onProgress, signal);
    }
    onProgress?.(0, total);
    return request(this.fetch, url, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': type },
      body: data,
      signal,
    }).then((info) => {
      onProgress?.(total, total);
      return info;
    });
  }

  /** A file's bytes as a Blob (an `<img>` cannot send the Authorization header itself). */
  async file(fileId) {
    const fetchFn = this.fetch; // called unbound: a browser's fetch refuses another `this`
    let res;
    try {
      res = await fetchFn(`${this.baseUrl}/v1/files/${encodeURIComponent(fileId)}`, {
        headers: { authorization: `Bearer ${this.token}` },
      });
    } catch (e) {
      throw new ParleyError('network', e && e.message ? e.message : 'network error');
    }
    if (!res.ok) await decode(res);
    return res.blob();
  }

  /**
   * v1.1: short-lived URLs (absolute) that read a file, and an image's thumbnail, without a
   * token: for `<img src>`, `<video src>`. They expire at `expires_at` (ms).
   */
  async fileUrl(fileId) {
    const id = encodeURIComponent(fileId);
    const s = await request(this.fetch, `${this.baseUrl}/v1/files/${id}/url`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}` },
    });
    return {
      url: `${this.baseUrl}${s.url}`,
      thumbnail_url: s.thumbnail_url ? `${this.baseUrl}${s.thumbnail_url}` : null,
      expires_at: s.expires_at,
    };
  }
}

function uploadWithXhr(url, token, data, type, total, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', type);
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : total);
    xhr.onload = () => {
      const body = safeJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress?.(total, total);
        resolve(body);
      } else {
        const err = body && body.error;
        reject(new ParleyError((err && err.code) || 'internal',
          (err && err.message) || `HTTP ${xhr.status}`, xhr.status));
      }
    };
    xhr.onerror = () => reject(new ParleyError('network', 'upload failed'));
    xhr.onabort = () => reject(new ParleyError('aborted', 'upload aborted'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(data);
  });
}
