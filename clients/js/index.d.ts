// Type declarations for @parley/client (the modules in src/). The wire shapes follow
// docs/protocol.md of the Parley server.

export type ErrorCode =
  | 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'conflict' | 'too_large'
  | 'rate_limited' | 'unavailable' | 'internal';

/** An error answer of the server, or `network` / `aborted` when there was none. */
export class ParleyError extends Error {
  constructor(code: ErrorCode | 'network' | 'aborted' | string, message: string, status?: number);
  code: ErrorCode | 'network' | 'aborted' | string;
  status?: number;
}

export interface Session {
  token: string;
  user_id: string;
  device_id: string;
  expires_at: number;
}

export interface User {
  user_id: string;
  username: string;
  display_name?: string | null;
}

export interface Conversation {
  conversation_id: string;
  kind: 'direct' | 'group';
  title: string | null;
  members: string[];
  admins: string[];
  created_at: number;
  last_seq: number;
  /** v1.1: the group's avatar (a file id), or null. */
  avatar: string | null;
}

export interface ConversationSummary extends Conversation {
  delivered_seq: number;
  read_seq: number;
  unread: number;
  /** v1.1: my own settings of it. */
  muted_until: number;
  archived: boolean;
  pinned_at: number;
}

export interface Attachment {
  file_id: string;
  size: number;
  content_type: string;
  sha256: string;
  /** v1.1: images (JPEG, PNG, WebP, GIF) only, else null. */
  width?: number | null;
  height?: number | null;
  /** v1.1: the thumbnail's path, `/v1/files/{file_id}/thumbnail`. */
  thumbnail?: string | null;
  /** v1.1: ThumbHash, standard base64. */
  placeholder?: string | null;
}

/** v1.1: `api.fileUrl(id)`: absolute URLs that need no token until `expires_at` (ms). */
export interface SignedFileUrl {
  url: string;
  thumbnail_url: string | null;
  expires_at: number;
}

export type FileInfo = Attachment;

export interface Message {
  conversation_id: string;
  seq: number;
  message_id: string;
  sender_id: string;
  sender_device_id: string;
  ts: number;
  text: string | null;
  attachments: Attachment[];
  meta: Record<string, unknown> | null;
  /** The sender's client id; only on the sender's own devices. */
  client_id?: string;
  /** A retracted message (a tombstone): in history pages, and in gap repairs. */
  deleted?: boolean;
  /** v1.1: when the text or meta last changed. */
  edited_at?: number;
  /** v1.1: the seq this message replies to, and what it shows of it (built when read). */
  reply_to?: number;
  quote?: { seq: number; sender_id: string; text: string | null; attachments: number; deleted?: boolean };
  /** v1.1: reactions, most used first (in pages and sync; none on a live message). */
  reactions?: Array<{ emoji: string; count: number; me: boolean }>;
  /** Set on a message the client found in `history` while checking a hole in `seq`. */
  repaired?: boolean;
}

type Fetch = typeof fetch;

export function register(
  baseUrl: string,
  body: { username: string; password: string; display_name?: string },
  fetchFn?: Fetch,
): Promise<{ user_id: string; username: string }>;

export function login(
  baseUrl: string,
  body: { username: string; password: string; device_name?: string },
  fetchFn?: Fetch,
): Promise<Session>;

export class ParleyApi {
  constructor(options: { baseUrl: string; token: string; fetch?: Fetch });
  readonly baseUrl: string;
  token: string;
  me(): Promise<User>;
  /** `null` when there is no such user. */
  findUser(username: string): Promise<User | null>;
  createDirect(userId: string): Promise<Conversation>;
  createGroup(title: string, memberIds: string[]): Promise<Conversation>;
  conversations(): Promise<ConversationSummary[]>;
  conversation(conversationId: string): Promise<Conversation>;
  addMembers(conversationId: string, userIds: string[]): Promise<Conversation>;
  removeMember(conversationId: string, userId: string): Promise<null>;
  messages(
    conversationId: string,
    page?: { beforeSeq?: number; afterSeq?: number; limit?: number },
  ): Promise<Message[]>;
  upload(
    data: Blob | ArrayBuffer | Uint8Array,
    options?: {
      contentType?: string;
      onProgress?: (loaded: number, total: number) => void;
      signal?: AbortSignal;
    },
  ): Promise<FileInfo>;
  file(fileId: string): Promise<Blob>;
  fileUrl(fileId: string): Promise<SignedFileUrl>;
}

/** What the client keeps across reloads. Values are plain JSON-like objects. */
export interface Storage {
  get(key: string): Promise<any>;
  set(key: string, value: any): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every entry whose key starts with `prefix`, sorted by key. */
  entries(prefix?: string): Promise<[string, any][]>;
}

export class MemoryStorage implements Storage {
  get(key: string): Promise<any>;
  set(key: string, value: any): Promise<void>;
  delete(key: string): Promise<void>;
  entries(prefix?: string): Promise<[string, any][]>;
}

export class IndexedDBStorage implements Storage {
  /** One database per device, e.g. `parley-${device_id}`. */
  constructor(name: string, indexedDB?: IDBFactory);
  readonly name: string;
  get(key: string): Promise<any>;
  set(key: string, value: any): Promise<void>;
  delete(key: string): Promise<void>;
  entries(prefix?: string): Promise<[string, any][]>;
  /** Closes and deletes the database. */
  destroy(): Promise<void>;
}

/** A send waiting for its ack, as kept in storage. */
export interface OutboxEntry {
  /** The client id: sent again, unchanged, until acknowledged. */
  id: string;
  conversation_id?: string;
  to?: string;
  text?: string;
  /** As given to `send` (only `file_id` goes on the wire). */
  attachments?: Array<{ file_id: string } & Partial<Attachment>>;
  meta?: Record<string, unknown>;
  n: number;
  created_at: number;
}

export class Outbox {
  constructor(storage: Storage);
  load(): Promise<void>;
  add(frame: Omit<OutboxEntry, 'n' | 'created_at'>): Promise<OutboxEntry>;
  get(id: string): OutboxEntry | undefined;
  remove(id: string): Promise<void>;
  list(): OutboxEntry[];
}

export interface Hole {
  from: number;
  to: number;
}

export class Sequencer {
  has(conversationId: string): boolean;
  held(conversationId: string): number;
  start(conversationId: string, seq: number): void;
  ack(conversationId: string, seq: number): void;
  receive(conversationId: string, seq: number): { fresh: boolean; hole: Hole | null };
  holes(): Array<Hole & { conversationId: string }>;
  settle(conversationId: string, to: number): void;
}

export class Emitter<Events extends Record<string, any> = Record<string, any>> {
  on<K extends keyof Events & string>(type: K, fn: (detail: Events[K]) => void): () => void;
  off<K extends keyof Events & string>(type: K, fn: (detail: Events[K]) => void): void;
  once<K extends keyof Events & string>(type: K, filter?: (detail: Events[K]) => boolean): Promise<Events[K]>;
  emit<K extends keyof Events & string>(type: K, detail: Events[K]): void;
}

export type Status = 'idle' | 'connecting' | 'syncing' | 'online' | 'offline' | 'unauthorized' | 'closed';

export interface ReadyFrame {
  type: 'ready';
  user_id: string;
  device_id: string;
  session_id: string;
  heartbeat_ms: number;
  conversations: Array<{ conversation_id: string; last_seq: number; delivered_seq: number; read_seq: number }>;
}

export interface AckEvent {
  id: string;
  conversation_id: string;
  seq: number;
  message_id: string;
  ts: number;
  duplicate: boolean;
  /** The outbox entry that was sent (text, attachments, meta). */
  entry: OutboxEntry;
}

export interface ClientEvents {
  status: { status: Status; retryInMs?: number };
  ready: ReadyFrame;
  synced: Record<string, never>;
  message: Message & { type?: 'message' };
  deleted: { conversation_id: string; seq: number; scope: 'everyone' | 'me'; by: string };
  ack: AckEvent;
  'send-failed': { id: string; code: ErrorCode; message: string; entry: OutboxEntry };
  receipt: { type: 'receipt'; conversation_id: string; user_id: string; kind: 'delivered' | 'read'; seq: number };
  typing: { type: 'typing'; conversation_id: string; user_id: string };
  presence: { type: 'presence'; user_id: string; online: boolean; last_seen?: number };
  conversation: {
    type: 'conversation';
    event: 'created' | 'member_added' | 'member_removed' | 'updated';
    conversation: Conversation;
  };
  /** v1.1: the user's own settings of a conversation changed on one of its devices. */
  settings: {
    type: 'settings';
    conversation_id: string;
    muted_until: number;
    archived: boolean;
    pinned_at: number;
  };
  gap: { conversation_id: string; from: number; to: number; found: number };
  error: { code: string; message: string; id?: string };
  unauthorized: Record<string, never>;
  edited: {
    type: 'edited'; conversation_id: string; seq: number; text: string | null;
    meta: Record<string, unknown> | null; edited_at: number; by: string;
  };
  reaction: { type: 'reaction'; conversation_id: string; seq: number; user_id: string; emoji: string; added: boolean };
}

export interface ClientOptions {
  baseUrl: string;
  token: string;
  storage?: Storage;
  WebSocket?: typeof WebSocket;
  fetch?: Fetch;
  /** Frames per `sync` page, default 200 (the server's cap). */
  syncLimit?: number;
  /** A send without an ack for this long means a dead socket, default 10000. */
  ackTimeoutMs?: number;
  backoff?: { baseMs?: number; capMs?: number };
}

export class ParleyClient extends Emitter<ClientEvents> {
  constructor(options: ClientOptions);
  readonly api: ParleyApi;
  status: Status;
  userId: string | null;
  deviceId: string | null;
  conversations: Map<string, { conversation_id: string; last_seq: number; read_seq: number }>;
  presence: Map<string, { online: boolean; last_seen?: number }>;
  start(): Promise<void>;
  stop(): void;
  send(message: {
    conversationId?: string;
    to?: string;
    text?: string;
    attachments?: Array<{ file_id: string } & Partial<Attachment>>;
    meta?: Record<string, unknown>;
    replyTo?: number;
  }): Promise<OutboxEntry>;
  pending(conversationId?: string): OutboxEntry[];
  held(conversationId: string): number;
  receipts(conversationId: string): Record<string, { delivered: number; read: number }>;
  markRead(conversationId: string, seq: number): void;
  typing(conversationId: string): void;
  history(conversationId: string, page?: { beforeSeq?: number; limit?: number }): Promise<Message[]>;
  delete(conversationId: string, seq: number, scope: 'everyone' | 'me'): Promise<AckFrame>;
  edit(conversationId: string, seq: number, change: { text?: string; meta?: Record<string, unknown> }): Promise<AckFrame>;
  react(conversationId: string, seq: number, emoji: string, options?: { remove?: boolean }): Promise<AckFrame>;
}

export interface AckFrame {
  type: 'ack'; id: string; conversation_id: string; seq: number; message_id: string; ts: number; duplicate?: boolean;
}

export function backoffDelay(
  attempt: number,
  options?: { baseMs?: number; capMs?: number },
  random?: () => number,
): number;

export function newClientId(): string;
