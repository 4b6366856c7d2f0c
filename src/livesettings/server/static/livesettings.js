// livesettings browser client: an ES module with no dependencies and no build step.
//
//   import { LiveSettings } from "/static/livesettings.js";
//   const ls = new LiveSettings({ url, token, refreshToken, autoSaveDelay: 1500 });
//   ls.addEventListener("change", (e) => render(e.detail.settings));
//   ls.set("/theme", "dark");
//
// What it keeps (DESIGN §2, §3, §5):
// - the confirmed settings and revision of the user, cached in localStorage, so that a reload
//   renders at once, also offline; the pending edits of each tab, also in localStorage, so that
//   they survive a reload and another tab can finish them (mutation ids keep them exactly once);
// - one socket per tab (WebSocket, or the SSE endpoint with HTTP writes when WebSockets cannot
//   connect), resubscribing with the cached revision after every reconnect;
// - secrets (api_keys/<name>) only in memory, only while online: never cached, queued or passed
//   to another tab;
// - tokens only in memory: never in localStorage, sessionStorage or IndexedDB. A page of the
//   server's own origin uses the cookie mode (`refreshCookie: true`, as the settings page does):
//   the refresh token is an HttpOnly, SameSite=Strict cookie scoped to /v1/auth that no script
//   can read, and each tab gets its own access token from it, one tab at a time (Web Lock).
//   With a `refreshToken` given by the app, the rotated pair stays in memory, is passed to the
//   other tabs of the user over BroadcastChannel, and is told by the `tokens` event.

const PREFIX = "livesettings:v1";

/** localStorage key of the signed-in user in cookie mode: `{user_id, username}`, no token. */
export const USER_KEY = "livesettings:user";

/** The key older versions kept the whole session (tokens included) under; removed on load. */
export const SESSION_KEY = "livesettings:session";
const LOGOUT_PENDING_KEY = "livesettings:logout-pending";
const LEGACY_IDB = "livesettings"; // older versions' IndexedDB copy of the session
const COOKIE_MODE = Object.freeze({ "X-Refresh-Cookie": "1" });

/** The top-level fields of a settings document. */
export const FIELDS = Object.freeze(["theme", "language", "preferences", "ai_providers", "api_keys"]);

const DEFAULTS = Object.freeze({
  theme: "light",
  language: "en",
  preferences: {},
  ai_providers: {},
  api_keys: {},
});

/** The values of `status.connection`. */
export const Connection = Object.freeze({
  CONNECTING: "connecting",
  ONLINE: "online",
  OFFLINE: "offline",
  ERROR: "error",
});

/** Options a `LiveSettings` takes when they are not given. Times are milliseconds. */
export const DEFAULT_OPTIONS = Object.freeze({
  autoSaveDelay: 1500, // debounce before an edit is sent; null or false: only saveNow() sends
  heartbeatInterval: 5000, // idle time after which a ping is sent
  heartbeatTimeout: 10000, // a ping without a pong (or any frame) for this long: offline
  reconnectDelay: 500, // first reconnect delay; doubles up to maxReconnectDelay, with jitter
  maxReconnectDelay: 30000,
  refreshLeadTime: 60000, // refresh the access token this long before it expires
  transport: "auto", // "auto" (WebSocket, SSE when it cannot connect), "websocket" or "sse"
  requestTimeout: 15000,
});

const SECRET_CODES = new Set(["offline_secret"]);
// Per-mutation errors that say nothing about the edit itself: retry it later.
const TRANSIENT_CODES = new Set(["storage_unavailable", "draining", "decrypt_failed"]);
const AUTH_CODES = new Set(["unauthorized", "token_expired", "invalid_token", "token_revoked"]);
// Errors after which this client's session cannot continue: sign in again.
const SESSION_END_CODES = new Set(["session_expired", "signed_out"]);
const SEEN_LIMIT = 2000;
const SSE_KEEPALIVE = 15000;

/** An error with the server's snake_case `code`, its `message` and `details` (`path`). */
export class LiveSettingsError extends Error {
  constructor(code, message, { status = null, details = null, mutationId = null } = {}) {
    super(message);
    this.name = "LiveSettingsError";
    this.code = code;
    this.status = status;
    this.details = details;
    this.path = details && typeof details.path === "string" ? details.path : null;
    this.mutationId = mutationId;
  }
}

// ---------------------------------------------------------------------------------------------
// JSON documents and merge patches (RFC 7386 with the document's rules, DESIGN §2)

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const copy = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const isSecretPath = (path) => path.length >= 2 && path[0] === "api_keys";

// Plain assignment of "__proto__" would change the object's prototype instead.
function put(target, key, value) {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function hasSet(patch) {
  for (const value of Object.values(patch)) {
    if (value === null) continue;
    if (!isObject(value) || hasSet(value)) return true;
  }
  return false;
}

function mergeInto(target, patch, path) {
  for (const [key, value] of Object.entries(patch)) {
    const child = [...path, key];
    if (value === null) {
      delete target[key];
    } else if (isObject(value) && !isSecretPath(child)) {
      const current = Object.hasOwn(target, key) ? target[key] : undefined;
      if (isObject(current)) {
        const wasEmpty = Object.keys(current).length === 0;
        mergeInto(current, value, child);
        if (!wasEmpty && Object.keys(current).length === 0) delete target[key];
      } else if (hasSet(value)) {
        const created = {};
        mergeInto(created, value, child);
        put(target, key, created);
      }
    } else {
      put(target, key, copy(value));
    }
  }
}

/** `doc` with the merge `patch` applied (a new object); `null` on a field resets it. */
export function applyPatch(doc, patch) {
  const result = copy(doc);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      if (Object.hasOwn(DEFAULTS, key)) result[key] = copy(DEFAULTS[key]);
      else delete result[key];
    } else if (isObject(value)) {
      const current = Object.hasOwn(result, key) ? result[key] : undefined;
      if (isObject(current)) {
        mergeInto(current, value, [key]);
      } else if (hasSet(value)) {
        const created = {};
        mergeInto(created, value, [key]);
        put(result, key, created);
      }
    } else {
      put(result, key, copy(value));
    }
  }
  return result;
}

/** The merge patch turning `before` into `after`. */
export function diffPatch(before, after) {
  const patch = {};
  for (const key of Object.keys(before)) if (!Object.hasOwn(after, key)) put(patch, key, null);
  for (const [key, value] of Object.entries(after)) {
    if (!Object.hasOwn(before, key)) {
      put(patch, key, copy(value));
    } else if (isObject(before[key]) && isObject(value)) {
      const sub = diffPatch(before[key], value);
      if (Object.keys(sub).length) put(patch, key, sub);
    } else if (JSON.stringify(before[key]) !== JSON.stringify(value)) {
      put(patch, key, copy(value));
    }
  }
  return patch;
}

// `b` applied after `a` as one patch, or null when no single merge patch says the same
// (a value or a delete followed by an object merged into it).
function composePatches(a, b, path = []) {
  const out = copy(a);
  for (const [key, value] of Object.entries(b)) {
    const child = [...path, key];
    if (isObject(value) && !isSecretPath(child) && Object.hasOwn(out, key)) {
      if (!isObject(out[key])) return null;
      const sub = composePatches(out[key], value, child);
      if (sub === null) return null;
      put(out, key, sub);
    } else {
      put(out, key, copy(value));
    }
  }
  return out;
}

// `patch` without what it says at `path` (or at the part of `path` it reaches).
function removePath(patch, path) {
  const out = copy(patch);
  const parents = [];
  let node = out;
  for (let i = 0; i < path.length; i += 1) {
    const key = path[i];
    if (!isObject(node) || !Object.hasOwn(node, key)) return out;
    if (i === path.length - 1 || !isObject(node[key])) {
      delete node[key];
      break;
    }
    parents.push([node, key]);
    node = node[key];
  }
  for (let i = parents.length - 1; i >= 0; i -= 1) {
    const [parent, key] = parents[i];
    if (isObject(parent[key]) && Object.keys(parent[key]).length === 0) delete parent[key];
  }
  return out;
}

/** A path as segments: a JSON Pointer ("/a/b"), a dotted name ("a.b") or an array. */
export function parsePath(path) {
  if (Array.isArray(path)) return path.map(String);
  const text = String(path);
  if (text === "") return [];
  if (text.startsWith("/")) {
    return text
      .slice(1)
      .split("/")
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  }
  return text.split(".");
}

/** Segments as an RFC 6901 JSON Pointer. */
export function toPointer(path) {
  return parsePath(path)
    .map((s) => "/" + s.replace(/~/g, "~0").replace(/\//g, "~1"))
    .join("");
}

/** The value at `path` in `doc`, or undefined. */
export function getAt(doc, path) {
  let node = doc;
  for (const key of parsePath(path)) {
    if (!isObject(node) || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function patchAt(path, value) {
  const parts = parsePath(path);
  if (parts.length === 0) {
    if (!isObject(value)) throw new LiveSettingsError("invalid", "the root must be an object");
    return copy(value);
  }
  const patch = {};
  let node = patch;
  parts.forEach((key, i) => {
    if (i === parts.length - 1) put(node, key, value === undefined ? null : copy(value));
    else {
      const next = {};
      put(node, key, next);
      node = next;
    }
  });
  return patch;
}

function normalise(settings) {
  const out = {};
  for (const field of FIELDS) {
    const value = isObject(settings) && Object.hasOwn(settings, field) ? settings[field] : null;
    out[field] = value === null || value === undefined ? copy(DEFAULTS[field]) : copy(value);
  }
  return out;
}

/** What a client may show of a secret before the server answers (DESIGN §2). */
function maskLocally(secret) {
  const masked = { set: true, pending: true };
  if (secret.length >= 12) masked.last4 = secret.slice(-4);
  return masked;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function randomId(prefix) {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The claims of a JWT, read without checking it (the server checks), or null. */
export function decodeJwt(token) {
  try {
    const part = String(token).split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return isObject(claims) ? claims : null;
  } catch {
    return null;
  }
}

function defaultStorage() {
  try {
    const storage = globalThis.localStorage;
    const probe = PREFIX + ":probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return null; // storage disabled: keep everything in memory
  }
}

// localStorage with JSON values; a full or disabled storage never breaks the client.
class Store {
  constructor(storage) {
    this.storage = storage;
    this.memory = new Map();
  }

  get(key) {
    try {
      const text = this.storage ? this.storage.getItem(key) : this.memory.get(key);
      return text == null ? null : JSON.parse(text);
    } catch {
      return null;
    }
  }

  set(key, value) {
    const text = JSON.stringify(value);
    try {
      if (this.storage) this.storage.setItem(key, text);
      else this.memory.set(key, text);
      return true;
    } catch {
      return false;
    }
  }

  remove(key) {
    try {
      if (this.storage) this.storage.removeItem(key);
      else this.memory.delete(key);
    } catch {
      // nothing to do: the key stays, and is overwritten later
    }
  }

  keys(prefix) {
    const found = [];
    try {
      if (this.storage) {
        for (let i = 0; i < this.storage.length; i += 1) {
          const key = this.storage.key(i);
          if (key !== null && key.startsWith(prefix)) found.push(key);
        }
      } else {
        for (const key of this.memory.keys()) if (key.startsWith(prefix)) found.push(key);
      }
    } catch {
      // storage went away: nothing to list
    }
    return found;
  }
}

async function readError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const error = body && isObject(body.error) ? body.error : null;
  const code = error && typeof error.code === "string" ? error.code : `http_${response.status}`;
  const message =
    error && typeof error.message === "string"
      ? error.message
      : `the server answered ${response.status} ${response.statusText}`.trim();
  return new LiveSettingsError(code, message, {
    status: response.status,
    details: error ? (error.details ?? null) : null,
  });
}

async function request(
  url,
  { method = "GET", token = null, body, headers = {}, timeout = 15000, credentials = "omit" },
) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const all = { Accept: "application/json", ...headers };
  if (token) all.Authorization = `Bearer ${token}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
      credentials, // "same-origin" only for the refresh cookie (Path=/v1/auth)
    });
  } catch (err) {
    throw new LiveSettingsError("offline", "the server cannot be reached", {
      details: { reason: String(err && err.name) },
    });
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) throw await readError(response);
  if (response.status === 204) return null;
  return response.json();
}

function issuedAt(token) {
  const claims = decodeJwt(token);
  return Number(claims?.iat ?? claims?.exp ?? 0);
}

// Older versions kept the session, tokens included, in localStorage and IndexedDB.
let legacyCleared = false;

function forgetLegacyTokens() {
  legacyCleared = true;
  for (const name of ["localStorage", "sessionStorage"]) {
    try {
      globalThis[name]?.removeItem(SESSION_KEY);
    } catch {
      // storage disabled: nothing was stored there either
    }
  }
  try {
    globalThis.indexedDB?.deleteDatabase(LEGACY_IDB);
  } catch {
    // no IndexedDB: nothing to remove
  }
}

// Everything that reads or rotates the refresh cookie holds this lock, so that two tabs never
// send the same cookie (a refresh token presented twice revokes its whole family), and a tab
// always sends the cookie the previous holder's answer set.
function cookieLock(base) {
  return `livesettings:refresh-cookie:${base}`;
}

async function withLock(name, fn) {
  const locks = globalThis.navigator?.locks;
  return locks ? locks.request(name, fn) : fn();
}

async function refreshRequest(base, body, { cookie, timeout }) {
  try {
    return await request(base + "/v1/auth/refresh", {
      method: "POST",
      body,
      headers: cookie ? COOKIE_MODE : {},
      credentials: cookie ? "same-origin" : "omit",
      timeout,
    });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      throw new LiveSettingsError("session_expired", "your session has ended: sign in again", {
        status: err.status,
      });
    }
    throw err;
  }
}

function baseUrl(url) {
  return String(url ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
}

function storedUser(store) {
  const user = store.get(USER_KEY);
  return isObject(user) && typeof user.user_id === "string" && user.user_id ? user : null;
}

// A sign-out made while the server could not be reached: the cookie still holds a live refresh
// token, so the logout is finished (with it) as soon as the server answers.
async function finishLogout(base, store, timeout = 5000) {
  if (!store.get(LOGOUT_PENDING_KEY)) return true;
  try {
    await withLock(cookieLock(base), async () => {
      const body = await refreshRequest(base, {}, { cookie: true, timeout });
      await request(base + "/v1/auth/logout", {
        method: "POST",
        token: body.access_token,
        headers: COOKIE_MODE,
        credentials: "same-origin",
        timeout,
      });
    });
  } catch (err) {
    if (err.code === "offline" || err.status >= 500) return false;
    // session_expired: the cookie holds nothing live any more, which is what was wanted
  }
  store.remove(LOGOUT_PENDING_KEY);
  return true;
}

function sessionFromTokens(body, username, cookie = false) {
  const session = {
    access_token: body.access_token,
    expires_at: body.expires_at ?? decodeJwt(body.access_token)?.exp ?? null,
    user_id: body.user_id ?? decodeJwt(body.access_token)?.sub ?? null,
    username: username ?? null,
  };
  if (cookie) session.cookie = true;
  else session.refresh_token = body.refresh_token ?? null;
  return session;
}

// ---------------------------------------------------------------------------------------------
// The client

/**
 * Live settings of one user. Events (`CustomEvent`, data in `event.detail`):
 * - `change` {settings, revision, source}: the settings as shown changed (source: "local",
 *   "tab", "server", "refresh", "ack", "rejected", "adopted");
 * - `apiKeysChange` {apiKeys}: the masked api_keys changed;
 * - `status` (the status object, see `status`);
 * - `conflict` {path, mine, winner, lost, kept, revision, mutationId}: an edit of this
 *   browser lost (`lost: true`: the value `winner` was kept) or overwrote a concurrent one;
 * - `error` {code, message, path, mutationId, status}: a refused edit (it is dropped, the
 *   message names the field), `offline_secret`, `session_expired`, `signed_out`, …;
 * - `tokens` {accessToken, refreshToken, expiresAt, userId}: a `refreshToken` given by the app
 *   was rotated (the old one is spent). Nothing is stored: keep it yourself if you must.
 */
export class LiveSettings extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url] the server's origin (default: this page's)
   * @param {string|function(): Promise<string>} options.token an access token, or a function
   *   returning a fresh one (an external identity provider's)
   * @param {string} [options.refreshToken] a built-in user's refresh token: the client then
   *   refreshes the pair before expiry, one tab at a time, keeps it in memory and passes it to
   *   the user's other tabs (BroadcastChannel) and to the `tokens` event
   * @param {boolean} [options.refreshCookie] cookie mode, for pages of the server's own origin:
   *   the refresh token is the HttpOnly cookie set by `signIn({cookie: true})`; `token` may be
   *   left out (the first one is fetched with the cookie), `userId` is then needed
   * @param {string} [options.userId] needed when the token is not a JWT with `sub`
   * @param {number|null|false} [options.autoSaveDelay] debounce in ms; null/false: manual
   */
  constructor(options = {}) {
    super();
    const opts = { ...DEFAULT_OPTIONS, ...options };
    this._opts = opts;
    this.url = String(opts.url ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
    this._store = new Store(opts.storage === undefined ? defaultStorage() : opts.storage);
    if (!legacyCleared && opts.storage === undefined) forgetLegacyTokens();
    this._tokenSource = typeof opts.token === "function" ? opts.token : null;
    this._token = typeof opts.token === "string" ? opts.token : null;
    this._refreshToken = opts.refreshToken ?? null;
    this._refreshCookie = Boolean(opts.refreshCookie) && !this._tokenSource;
    const claims = this._token ? decodeJwt(this._token) : null;
    this.userId = opts.userId ?? claims?.sub ?? null;
    if (!this.userId) {
      throw new LiveSettingsError("invalid_options", "LiveSettings needs a JWT token or userId");
    }
    this._setTokenClaims(claims);
    this.autoSaveDelay = opts.autoSaveDelay;
    this._prefix = `${PREFIX}:${encodeURIComponent(this.userId)}`;
    this.clientId = this._loadClientId();
    this.tabId = randomId("tab");

    const cached = this._store.get(this._prefix + ":state");
    this._hasCache =
      isObject(cached) && Number.isInteger(cached.revision) && isObject(cached.settings);
    this._confirmed = this._hasCache
      ? { revision: cached.revision, settings: normalise(cached.settings) }
      : { revision: 0, settings: normalise({}) };
    this._seq = 0;
    this._own = []; // this tab's edits: {id, base, patch, at, created, seq, sealed, acked}
    this._secrets = []; // secret edits, in memory only: the same plus viewPatch
    this._foreign = new Map(); // other tabs' edits: tabId -> entries
    this._linger = new Map(); // acked foreign edits not yet confirmed here: id -> entry
    this._seen = new Set(); // mutation ids confirmed by a change frame
    this._waiters = [];
    this._syncedWaiters = [];
    this._syncTimes = [];
    this._status = {
      connection: Connection.CONNECTING,
      syncing: false,
      unsaved: 0,
      lastSyncAt: this._hasCache && Number.isInteger(cached.syncedAt) ? cached.syncedAt : null,
      errorCount: 0,
      syncsPerMinute: 0,
      error: null,
      transport: null,
      revision: this._confirmed.revision,
    };
    this._conn = null;
    this._connSeq = 0;
    this._connecting = false;
    this._attempt = 0;
    this._authFailures = 0;
    this._wsFailures = 0;
    this._mode = opts.transport === "sse" ? "sse" : "ws";
    this._sseSince = 0;
    this._httpQueue = [];
    this._httpBusy = false;
    this._closed = false;
    this._sessionEnded = false;
    this._tabLocked = false;
    this._timers = { save: null, reconnect: null, heartbeat: null, refresh: null, adopt: null };

    this._loadOtherQueues();
    this._view = this._computeView();
    this._viewText = JSON.stringify(this._view);
    this._keysText = JSON.stringify(this._view.api_keys);
    this._statusText = "";
    this._refreshStatus(false);

    /** Resolves once the client is first in sync with the server. */
    this.ready = new Promise((resolve) => {
      this._readyResolve = resolve;
    });
    this._wire();
    this._scheduleRefresh();
    this._timers.connect = setTimeout(() => this._connect(), 0);
  }

  // -- public API ----------------------------------------------------------------------------

  /** The settings as shown: the confirmed ones with every pending edit applied (a copy). */
  get settings() {
    return copy(this._view);
  }

  /** The confirmed revision the view is based on. */
  get revision() {
    return this._confirmed.revision;
  }

  /**
   * A copy of the status: `connection` (connecting | online | offline | error), `syncing`,
   * `unsaved` (pending edits), `lastSyncAt` (ms), `errorCount`, `syncsPerMinute`, `error`
   * (the message of the last error about the connection or the client as a whole, cleared
   * by the next successful sync), `transport` ("ws", "sse" or null) and `revision` (the
   * confirmed revision). An edit the server refused is not such an error: it is dropped, told
   * by the `error` event (with the path it names) and counted in `errorCount`, and leaves
   * `error` alone, so the status says the same whichever order the server's answers to
   * other edits arrive in.
   */
  get status() {
    return { ...this._status };
  }

  /** Listen to an event; returns the function that stops listening. */
  on(type, callback) {
    const handler = (event) => callback(event.detail);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /** Set the value at `path` ("/ai_providers/openai/model", "theme", or an array). */
  set(path, value) {
    this.update(patchAt(path, value === undefined ? null : value));
  }

  /**
   * Merge a patch into the settings at once (optimistic) and queue it for saving. A patch
   * touching `api_keys` is sent at once and only when online: offline it throws
   * `offline_secret` and nothing of the patch is applied.
   */
  update(patch) {
    if (this._closed) throw new LiveSettingsError("closed", "this client is closed");
    if (!isObject(patch)) throw new LiveSettingsError("invalid", "a patch must be an object");
    for (const key of Object.keys(patch)) {
      if (!FIELDS.includes(key)) {
        throw new LiveSettingsError("unknown_field", `/${key} is not a settings field`, {
          details: { path: toPointer([key]) },
        });
      }
    }
    const { api_keys: keys, ...rest } = patch;
    if (keys !== undefined) this._updateSecrets(keys);
    if (Object.keys(rest).length) this._updatePlain(rest);
  }

  /** Send every pending edit now; resolves once they are saved (or refused). */
  saveNow() {
    this._sealOpen();
    this._broadcast({ type: "flush" });
    this._flush();
    const ids = new Set(
      [...this._own, ...this._secrets].filter((e) => e.acked == null).map((e) => e.id),
    );
    this._refreshStatus();
    if (ids.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => this._waiters.push({ ids, resolve }));
  }

  /** Reload the settings from the server (a snapshot), keeping pending edits on top. */
  async refresh() {
    const conn = this._conn;
    if (conn && conn.kind === "ws" && conn.ready) {
      const synced = new Promise((resolve) => this._syncedWaiters.push(resolve));
      conn.synced = false;
      conn.ws.send(JSON.stringify({ type: "subscribe", since: null }));
      this._refreshStatus();
      await Promise.race([synced, new Promise((r) => setTimeout(r, this._opts.requestTimeout))]);
      return this.settings;
    }
    const body = await this._api("GET", "/v1/settings");
    this._applySnapshot(body.revision, body.settings, "refresh", true);
    return this.settings;
  }

  /** The last `limit` changes: [{revision, patch, mutation_id, client_id, committed_at, mine}]. */
  async history({ limit = 20 } = {}) {
    const since = Math.max(0, this._confirmed.revision - limit);
    const body = await this._api("GET", `/v1/settings/changes?since=${since}&limit=${limit}`);
    return body.changes.map((c) => ({ ...c, mine: c.client_id === this.clientId })).reverse();
  }

  /** Restore the non-secret fields as they were at `revision`, as a new revision. */
  async revert(revision) {
    const body = await this._api(
      "POST",
      "/v1/settings/revert",
      { revision },
      {
        "Idempotency-Key": randomId("revert"),
        "X-Client-Id": this.clientId,
      },
    );
    return { revision: body.revision, conflicts: body.conflicts };
  }

  /**
   * End the session on the server (every session of the user), forget it here and close. In
   * cookie mode the server clears the cookie; when it cannot be reached the logout is finished
   * by the next page load or sign-in that reaches it.
   */
  async signOut() {
    let reached = false;
    try {
      const token = this._refreshCookie ? await this._validToken() : this._token;
      if (token) {
        await request(this.url + "/v1/auth/logout", {
          method: "POST",
          token,
          headers: this._refreshCookie ? COOKIE_MODE : {},
          credentials: this._refreshCookie ? "same-origin" : "omit",
          timeout: 5000,
        });
      }
      reached = true;
    } catch (err) {
      // 401: the session had ended already (and the server cleared the cookie all the same)
      reached = err.status != null || SESSION_END_CODES.has(err.code);
    }
    if (this._refreshCookie) {
      if (!reached) this._store.set(LOGOUT_PENDING_KEY, true);
      if (storedUser(this._store)?.user_id === this.userId) this._store.remove(USER_KEY);
    }
    this.close();
  }

  /** Remove this user's cached settings from this browser (pending edits stay unless `all`). */
  forgetCache({ all = false } = {}) {
    this._store.remove(this._prefix + ":state");
    if (all) for (const key of this._store.keys(this._prefix + ":")) this._store.remove(key);
  }

  /** Stop: close the socket and timers. Pending edits stay stored for the next client. */
  close() {
    if (this._closed) return;
    this._sealOpen();
    this._persistOwn();
    this._closed = true;
    for (const timer of Object.values(this._timers)) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this._dropConnection("closed", false);
    this._broadcast({ type: "bye", tab: this.tabId });
    if (this._channel) this._channel.close();
    for (const [target, type, fn] of this._listeners) target.removeEventListener(type, fn);
    if (this._releaseTabLock) this._releaseTabLock();
    for (const waiter of this._waiters) waiter.resolve(false);
    this._waiters = [];
  }

  // -- the seed's service names ------------------------------------------------------------

  /** Call `callback(settings, detail)` on every change; returns the cleanup function. */
  subscribeToSettingsChanges(callback) {
    return this.on("change", (detail) => callback(detail.settings, detail));
  }

  /** Call `callback(apiKeys)` when the masked api_keys change; returns the cleanup function. */
  onApiKeysUpdate(callback) {
    return this.on("apiKeysChange", (detail) => callback(detail.apiKeys));
  }

  /** Apply `settings` (a merge patch) and save at once; resolves when saved. */
  updateSettingsRealtime(settings) {
    this.update(settings);
    return this.saveNow();
  }

  /** The latest settings: live ones when online, else a fresh read, else the cached ones. */
  async getLatestSettings() {
    if (this._status.connection === Connection.ONLINE) return this.settings;
    try {
      return await this.refresh();
    } catch {
      return this.settings;
    }
  }

  // -- sign-in helpers ---------------------------------------------------------------------

  /**
   * Sign in a built-in user; returns the session `{access_token, expires_at, user_id,
   * username}`. `cookie: true` (pages of the server's own origin) leaves the refresh token in
   * an HttpOnly cookie and remembers the user (not the tokens) for the next page load;
   * otherwise the session also holds `refresh_token`, which nothing here stores.
   */
  static async signIn({ url, username, password, cookie = false, storage } = {}) {
    return LiveSettings._auth("/v1/auth/token", { url, username, password, cookie, storage });
  }

  /** Create a built-in user and sign it in; the same options and result as `signIn`. */
  static async signUp({ url, username, password, cookie = false, storage } = {}) {
    return LiveSettings._auth("/v1/auth/signup", { url, username, password, cookie, storage });
  }

  static async _auth(path, { url, username, password, cookie, storage }) {
    const base = baseUrl(url);
    const store = new Store(storage === undefined ? defaultStorage() : storage);
    const call = () =>
      request(base + path, {
        method: "POST",
        body: { username, password },
        headers: cookie ? COOKIE_MODE : {},
        credentials: cookie ? "same-origin" : "omit",
      });
    if (!cookie) return sessionFromTokens(await call(), username);
    await finishLogout(base, store);
    // Under the cookie lock: a refresh of another tab cannot overwrite the new cookie.
    const body = await withLock(cookieLock(base), call);
    store.set(USER_KEY, { user_id: body.user_id, username: username ?? null });
    return sessionFromTokens(body, username, true);
  }

  /**
   * Cookie mode: the session the refresh cookie still holds, as `signIn` returns it, or null
   * when there is none (never signed in, signed out, expired). Throws `offline` when the
   * server cannot be reached.
   */
  static async resumeSession({ url, storage } = {}) {
    const base = baseUrl(url);
    const store = new Store(storage === undefined ? defaultStorage() : storage);
    if (!(await finishLogout(base, store))) {
      throw new LiveSettingsError("offline", "the server cannot be reached");
    }
    let body;
    try {
      body = await withLock(cookieLock(base), () =>
        refreshRequest(base, {}, { cookie: true, timeout: DEFAULT_OPTIONS.requestTimeout }),
      );
    } catch (err) {
      if (err.code === "session_expired") return null;
      throw err;
    }
    const known = storedUser(store);
    const username = known?.user_id === body.user_id ? known.username : null;
    store.set(USER_KEY, { user_id: body.user_id, username });
    return sessionFromTokens(body, username, true);
  }

  /** Cookie mode: the user signed in on this browser, `{user_id, username}` (no token). */
  static signedInUser(storage) {
    return storedUser(new Store(storage === undefined ? defaultStorage() : storage));
  }

  /** Finish a sign-out that could not reach the server; false while it still cannot. */
  static finishPendingLogout({ url, storage } = {}) {
    return finishLogout(baseUrl(url), new Store(storage === undefined ? defaultStorage() : storage));
  }

  /** Remove what older versions stored: their sessions, tokens included. */
  static forgetStoredTokens() {
    forgetLegacyTokens();
  }

  /** Tokens are no longer stored: always null (kept for older callers). */
  static loadSession() {
    return null;
  }

  /** Forget the signed-in user of cookie mode and any stored tokens (tells no server). */
  static clearSession(storage) {
    new Store(storage === undefined ? defaultStorage() : storage).remove(USER_KEY);
    forgetLegacyTokens();
  }

  /** A client for a session returned by `signIn`, `signUp` or `resumeSession`. */
  static fromSession(session, options = {}) {
    return new LiveSettings({
      ...options,
      token: session.access_token ?? undefined,
      refreshToken: session.cookie ? undefined : (session.refresh_token ?? undefined),
      refreshCookie: Boolean(session.cookie),
      userId: session.user_id ?? undefined,
    });
  }

  // -- edits ---------------------------------------------------------------------------------

  _updateSecrets(keys) {
    if (keys === null) {
      throw new LiveSettingsError("invalid", "remove API keys one by one", {
        details: { path: "/api_keys" },
      });
    }
    if (!isObject(keys)) {
      throw new LiveSettingsError("invalid_value", "/api_keys must be an object", {
        details: { path: "/api_keys" },
      });
    }
    if (!this._canSendNow()) {
      const error = new LiveSettingsError(
        "offline_secret",
        "API keys are never stored offline: retry when the connection is back",
        { details: { path: toPointer(["api_keys", ...Object.keys(keys).slice(0, 1)]) } },
      );
      this._reportError(error, { edit: true });
      throw error;
    }
    const viewKeys = {};
    for (const [name, value] of Object.entries(keys)) {
      if (value !== null && typeof value !== "string") {
        throw new LiveSettingsError("invalid_value", "an API key must be a string or null", {
          details: { path: toPointer(["api_keys", name]) },
        });
      }
      put(viewKeys, name, value === null ? null : maskLocally(value));
    }
    this._seq += 1;
    const now = Date.now();
    this._secrets.push({
      id: randomId("m"),
      base: this._confirmed.revision,
      patch: { api_keys: keys },
      viewPatch: { api_keys: viewKeys },
      at: now,
      created: now,
      seq: this._seq,
      sealed: true,
      acked: null,
      secret: true,
    });
    this._changed("local");
    this._flush();
  }

  _updatePlain(patch) {
    const now = Date.now();
    let open = this._own.length ? this._own[this._own.length - 1] : null;
    if (open && !open.sealed) {
      const composed = composePatches(open.patch, patch);
      if (composed === null) {
        open.sealed = true;
        open = null;
      } else {
        open.patch = composed;
        open.at = now;
      }
    } else {
      open = null;
    }
    if (open === null) {
      this._seq += 1;
      this._own.push({
        id: randomId("m"),
        base: this._confirmed.revision,
        patch: copy(patch),
        at: now,
        created: now,
        seq: this._seq,
        sealed: false,
        acked: null,
      });
    }
    this._persistOwn();
    this._broadcastOwn();
    this._changed("local");
    this._scheduleSave();
  }

  _scheduleSave() {
    clearTimeout(this._timers.save);
    const delay = this.autoSaveDelay;
    if (delay === null || delay === false || delay === undefined) return;
    this._timers.save = setTimeout(() => {
      this._sealOpen();
      this._flush();
    }, Math.max(0, Number(delay)));
  }

  _sealOpen() {
    clearTimeout(this._timers.save);
    let sealed = false;
    for (const entry of this._own) {
      if (!entry.sealed) {
        entry.sealed = true;
        sealed = true;
      }
    }
    if (sealed) {
      this._persistOwn();
      this._broadcastOwn();
    }
  }

  _canSendNow() {
    const conn = this._conn;
    return Boolean(conn && conn.ready && conn.synced && globalThis.navigator?.onLine !== false);
  }

  // -- the view and the status ------------------------------------------------------------

  _pendingEntries() {
    const all = [...this._own, ...this._secrets, ...this._linger.values()];
    for (const entries of this._foreign.values()) all.push(...entries);
    const ids = new Set();
    return all
      .filter((e) => {
        if (ids.has(e.id) || this._seen.has(e.id)) return false;
        ids.add(e.id);
        return true;
      })
      .sort((a, b) => a.created - b.created || a.seq - b.seq);
  }

  _computeView() {
    let view = this._confirmed.settings;
    for (const entry of this._pendingEntries()) view = applyPatch(view, entry.viewPatch ?? entry.patch);
    return normalise(view);
  }

  _changed(source) {
    this._dropConfirmed();
    const view = this._computeView();
    const text = JSON.stringify(view);
    if (text !== this._viewText) {
      this._view = view;
      this._viewText = text;
      this._emit("change", {
        settings: copy(view),
        revision: this._confirmed.revision,
        source,
      });
      const keys = JSON.stringify(view.api_keys);
      if (keys !== this._keysText) {
        this._keysText = keys;
        this._emit("apiKeysChange", { apiKeys: copy(view.api_keys) });
      }
    }
    this._refreshStatus();
    this._settleWaiters();
  }

  _refreshStatus(emit = true) {
    const now = Date.now();
    this._syncTimes = this._syncTimes.filter((t) => now - t < 60000);
    const unsaved = this._pendingEntries().filter((e) => e.acked == null).length;
    const inFlight = [...this._own, ...this._secrets].some(
      (e) => e.sentOn != null && e.acked == null,
    );
    const conn = this._conn;
    const status = this._status;
    status.unsaved = unsaved;
    status.syncing = Boolean(conn && conn.ready && (!conn.synced || inFlight));
    status.syncsPerMinute = this._syncTimes.length;
    status.transport = conn ? conn.kind : null;
    status.revision = this._confirmed.revision;
    const text = JSON.stringify(status);
    if (emit && text !== this._statusText) {
      this._statusText = text;
      this._emit("status", { ...status });
    } else if (!emit) {
      this._statusText = text;
    }
  }

  _setConnection(connection, error) {
    if (this._status.connection === Connection.ERROR && this._sessionEnded) return;
    this._status.connection = connection;
    if (error !== undefined) this._status.error = error;
    this._refreshStatus();
  }

  _recordSync() {
    const now = Date.now();
    this._syncTimes.push(now);
    this._status.lastSyncAt = now;
    if (this._status.connection !== Connection.ERROR) this._status.error = null;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // `edit`: the error is about one edit, which is dropped and told by the event; it is not a
  // state of the client, so `status.error` stays as it is. (Were it set, the next ack would
  // clear it. The server refuses an invalid edit at once but acks an earlier valid one only
  // once committed, so the status would end red or green depending on the disk's speed.)
  _reportError(error, { edit = false } = {}) {
    this._status.errorCount += 1;
    if (!edit) this._status.error = error.message;
    this._refreshStatus();
    this._emit("error", {
      code: error.code,
      message: error.message,
      path: error.path ?? null,
      mutationId: error.mutationId ?? null,
      status: error.status ?? null,
    });
  }

  // Drop edits that the confirmed revision now holds.
  _dropConfirmed() {
    const revision = this._confirmed.revision;
    const done = (e) => (e.acked != null && e.acked <= revision) || this._seen.has(e.id);
    const before = this._own.length;
    this._own = this._own.filter((e) => !done(e));
    this._secrets = this._secrets.filter((e) => !done(e));
    for (const [id, entry] of this._linger) if (done(entry)) this._linger.delete(id);
    for (const [tab, entries] of this._foreign) {
      const kept = entries.filter((e) => !done(e));
      if (kept.length) this._foreign.set(tab, kept);
      else this._foreign.delete(tab);
    }
    if (this._own.length !== before) {
      this._persistOwn();
      this._broadcastOwn();
    }
  }

  _settleWaiters() {
    if (!this._waiters.length) return;
    const pending = new Set(
      [...this._own, ...this._secrets].filter((e) => e.acked == null).map((e) => e.id),
    );
    this._waiters = this._waiters.filter((waiter) => {
      for (const id of waiter.ids) if (pending.has(id)) return true;
      waiter.resolve(true);
      return false;
    });
  }

  // -- storage and other tabs ----------------------------------------------------------

  _loadClientId() {
    const key = this._prefix + ":client";
    let id = this._store.get(key);
    if (typeof id !== "string" || !/^[\x21-\x7e]{1,128}$/.test(id)) {
      id = randomId("web");
      this._store.set(key, id);
    }
    return id;
  }

  _saveState() {
    this._store.set(this._prefix + ":state", {
      revision: this._confirmed.revision,
      settings: this._confirmed.settings,
      syncedAt: this._status.lastSyncAt,
    });
  }

  _persistOwn() {
    // Before the tab lock is held another tab could take this queue for an orphan's.
    if (!this._tabLocked && globalThis.navigator?.locks) return;
    const key = `${this._prefix}:queue:${this.tabId}`;
    if (!this._own.length) this._store.remove(key);
    else this._store.set(key, { tab: this.tabId, entries: this._own.map(storedEntry) });
  }

  _loadOtherQueues() {
    const prefix = `${this._prefix}:queue:`;
    for (const key of this._store.keys(prefix)) {
      const tab = key.slice(prefix.length);
      const data = this._store.get(key);
      const entries = isObject(data) && Array.isArray(data.entries) ? data.entries : [];
      const valid = entries.filter(validEntry);
      if (valid.length && tab !== this.tabId) this._foreign.set(tab, valid);
    }
  }

  _broadcast(message) {
    if (!this._channel || this._closed) return;
    try {
      this._channel.postMessage(message);
    } catch {
      // a closed channel: the other tabs read the queue from storage instead
    }
  }

  _broadcastOwn() {
    this._broadcast({ type: "queue", tab: this.tabId, entries: this._own.map(storedEntry) });
  }

  _onTabMessage(message) {
    if (!isObject(message) || this._closed) return;
    if (message.type === "queue" && typeof message.tab === "string" && message.tab !== this.tabId) {
      const entries = Array.isArray(message.entries) ? message.entries.filter(validEntry) : [];
      const previous = this._foreign.get(message.tab) ?? [];
      const ids = new Set(entries.map((e) => e.id));
      for (const entry of previous) {
        // Saved by its tab but not yet confirmed here: keep showing it until our socket has it.
        if (!ids.has(entry.id) && entry.acked != null && entry.acked > this._confirmed.revision) {
          this._linger.set(entry.id, entry);
        }
      }
      for (const entry of entries) {
        if (entry.acked != null) continue;
        this._linger.delete(entry.id);
      }
      if (entries.length) this._foreign.set(message.tab, entries);
      else this._foreign.delete(message.tab);
      this._changed("tab");
    } else if (message.type === "flush") {
      this._sealOpen();
      this._flush();
    } else if (message.type === "bye") {
      setTimeout(() => this._adoptOrphans(), 150);
    } else if (message.type === "tokens") {
      this._onTokensMessage(message);
    }
  }

  _acquireTabLock() {
    const locks = globalThis.navigator?.locks;
    if (!locks) return Promise.resolve(false);
    return new Promise((acquired) => {
      locks
        .request(`livesettings:tab:${this.tabId}`, () => {
          acquired(true);
          return new Promise((release) => {
            this._releaseTabLock = release;
          });
        })
        .catch(() => acquired(false));
    });
  }

  // Take over the queues of tabs that are gone (their tab lock is free), so that what they
  // left unsaved is saved: the same mutation ids, so nothing applies twice.
  async _adoptOrphans() {
    const locks = globalThis.navigator?.locks;
    if (this._closed || !locks || !this._tabLocked) return;
    const prefix = `${this._prefix}:queue:`;
    const tabs = this._store
      .keys(prefix)
      .map((key) => key.slice(prefix.length))
      .filter((tab) => tab !== this.tabId);
    if (!tabs.length) return;
    const state = await locks.query();
    const held = new Set((state.held ?? []).map((lock) => lock.name));
    const orphans = tabs.filter((tab) => !held.has(`livesettings:tab:${tab}`));
    if (!orphans.length || this._closed) return;
    await locks.request(`${this._prefix}:adopt`, async () => {
      let adopted = 0;
      for (const tab of orphans) {
        const data = this._store.get(prefix + tab);
        this._store.remove(prefix + tab);
        // The stored copy can lag behind (localStorage syncs between tabs lazily); the copy
        // broadcast by that tab arrived in order. Take the newer version of each edit.
        const versions = new Map();
        const stored = isObject(data) && Array.isArray(data.entries) ? data.entries : [];
        for (const entry of [...stored, ...(this._foreign.get(tab) ?? [])].filter(validEntry)) {
          const known = versions.get(entry.id);
          if (!known || entry.at >= known.at) versions.set(entry.id, entry);
        }
        this._foreign.delete(tab);
        this._broadcast({ type: "queue", tab, entries: [] });
        for (const entry of versions.values()) {
          if (this._seen.has(entry.id) || this._own.some((e) => e.id === entry.id)) continue;
          this._own.push({ ...entry, sealed: true, sentOn: null });
          adopted += 1;
        }
      }
      if (!adopted) return;
      this._own.sort((a, b) => a.created - b.created || a.seq - b.seq);
      this._persistOwn();
      this._broadcastOwn();
      this._changed("adopted");
      this._flush();
    });
  }

  _wire() {
    this._listeners = [];
    const listen = (target, type, fn) => {
      if (!target || typeof target.addEventListener !== "function") return;
      target.addEventListener(type, fn);
      this._listeners.push([target, type, fn]);
    };
    if (typeof BroadcastChannel === "function") {
      this._channel = new BroadcastChannel(`${this._prefix}:tabs`);
      this._channel.onmessage = (event) => this._onTabMessage(event.data);
    }
    listen(globalThis, "online", () => {
      this._attempt = 0;
      this._connect();
    });
    listen(globalThis, "offline", () => {
      this._dropConnection("the browser is offline");
    });
    listen(globalThis, "storage", (event) => {
      if (event.key === USER_KEY && this._refreshCookie) this._onUserStored();
    });
    listen(globalThis, "pagehide", () => {
      // Send what is pending while the socket still exists; the stored queue is the backup.
      this._sealOpen();
      this._flush();
      this._persistOwn();
      this._broadcast({ type: "bye", tab: this.tabId });
    });
    this._acquireTabLock().then((locked) => {
      if (this._closed) return;
      this._tabLocked = locked;
      this._persistOwn();
      this._adoptOrphans();
    });
    this._timers.adopt = setInterval(() => this._adoptOrphans(), 3000);
  }

  // -- tokens ------------------------------------------------------------------------------

  _setTokenClaims(claims) {
    this._tokenExp = Number.isFinite(claims?.exp) ? claims.exp * 1000 : null;
    // Without iat, the token is taken as issued now: the lead must stay below its lifetime.
    this._tokenIat = Number.isFinite(claims?.iat) ? claims.iat * 1000 : Date.now();
  }

  _setTokens(access, refresh) {
    this._token = access;
    if (refresh !== undefined) this._refreshToken = refresh;
    this._setTokenClaims(decodeJwt(access));
    this._scheduleRefresh();
    const conn = this._conn;
    if (conn && conn.kind === "ws" && conn.opened) {
      conn.ws.send(JSON.stringify({ type: "auth", token: access, client_id: this.clientId }));
    } else if (conn && conn.kind === "sse") {
      this._dropConnection(null, false); // the stream carries the old token: resume with it
      this._connect();
    }
  }

  _issuedAt() {
    return this._token ? issuedAt(this._token) : 0;
  }

  _expiresWithin(ms) {
    return this._tokenExp !== null && this._tokenExp - Date.now() < ms;
  }

  _refreshLead() {
    const lifetime = this._tokenExp !== null ? this._tokenExp - this._tokenIat : Infinity;
    return Math.min(this._opts.refreshLeadTime, lifetime / 4);
  }

  _scheduleRefresh() {
    clearTimeout(this._timers.refresh);
    if (this._tokenExp === null || !this._canRenew()) return;
    // At least a second apart, whatever the token's lifetime: never a refresh loop.
    const delay = Math.max(1000, this._tokenExp - this._refreshLead() - Date.now());
    this._timers.refresh = setTimeout(() => {
      this._renewToken().catch((err) => this._onRenewFailure(err));
    }, Math.min(delay, 2 ** 31 - 1));
  }

  _onRenewFailure(err) {
    if (err && SESSION_END_CODES.has(err.code)) {
      this._endSession(err);
      return;
    }
    // A network failure: try again soon, while the token still lasts.
    clearTimeout(this._timers.refresh);
    this._timers.refresh = setTimeout(() => {
      this._renewToken().catch((e) => this._onRenewFailure(e));
    }, 5000);
  }

  _canRenew() {
    return Boolean(this._tokenSource || this._refreshCookie || this._refreshToken);
  }

  // A fresh access token: from the token function, or by rotating the refresh token (the
  // cookie's, or the one the app gave) under a Web Lock, so that two tabs never spend the
  // same refresh token (that would revoke both).
  _renewToken(force = false) {
    if (!this._renewing) {
      this._renewing = this._renew(force).finally(() => {
        this._renewing = null;
      });
    }
    return this._renewing;
  }

  async _renew(force) {
    if (this._tokenSource) {
      const token = await this._tokenSource();
      if (typeof token !== "string" || !token) {
        throw new LiveSettingsError("session_expired", "no access token: sign in again");
      }
      this._setTokens(token);
      return;
    }
    if (!this._refreshCookie && !this._refreshToken) {
      if (this._tokenExp !== null && this._tokenExp <= Date.now()) {
        throw new LiveSettingsError("session_expired", "the session has expired: sign in again");
      }
      return;
    }
    const asked = this._token;
    const timeout = this._opts.requestTimeout;
    // Nothing to do once the lock is ours when another tab's pair arrived meanwhile, or
    // (unless forced) when the token is not about to expire.
    const needed = () =>
      !this._token ||
      (force ? this._token === asked : this._expiresWithin(this._refreshLead() + 1000));
    if (this._refreshCookie) {
      // Every tab gets its own access token from the cookie, one tab at a time.
      const body = await withLock(cookieLock(this.url), () =>
        needed() ? refreshRequest(this.url, {}, { cookie: true, timeout }) : null,
      );
      if (!body || this._closed) return;
      if (body.user_id !== this.userId) {
        throw new LiveSettingsError("signed_out", "another user signed in on this browser");
      }
      this._setTokens(body.access_token);
      return;
    }
    await withLock(`livesettings:refresh:${this.url}:${this.userId}`, async () => {
      if (!needed()) return;
      const body = await refreshRequest(
        this.url,
        { refresh_token: this._refreshToken },
        { cookie: false, timeout },
      );
      this._setTokens(body.access_token, body.refresh_token);
      // Before the lock is released: the next tab to hold it has most likely heard of it.
      this._broadcast({
        type: "tokens",
        access_token: body.access_token,
        refresh_token: body.refresh_token,
      });
      this._emit("tokens", {
        accessToken: body.access_token,
        refreshToken: body.refresh_token,
        expiresAt: body.expires_at ?? null,
        userId: this.userId,
      });
    });
  }

  // Another tab rotated the refresh token the app gave: take the newer pair.
  _onTokensMessage(message) {
    if (this._refreshCookie || this._tokenSource || !this._refreshToken || this._sessionEnded) {
      return;
    }
    const { access_token: access, refresh_token: refresh } = message;
    if (typeof access !== "string" || typeof refresh !== "string") return;
    if (decodeJwt(access)?.sub !== this.userId || issuedAt(access) < this._issuedAt()) return;
    this._setTokens(access, refresh);
  }

  // Cookie mode: another tab signed out, or signed in as someone else.
  _onUserStored() {
    const user = storedUser(this._store);
    if (user && user.user_id === this.userId) return;
    this._endSession(new LiveSettingsError("signed_out", "signed out in another tab"));
  }

  _endSession(error) {
    if (this._sessionEnded) return;
    this._sessionEnded = true;
    this._status.connection = Connection.ERROR;
    this._dropConnection(null, false);
    clearTimeout(this._timers.reconnect);
    clearTimeout(this._timers.refresh);
    if (this._refreshCookie && error.code === "session_expired") {
      // The cookie is spent or gone: the next page load asks for a sign-in at once.
      if (storedUser(this._store)?.user_id === this.userId) this._store.remove(USER_KEY);
    }
    this._reportError(error);
  }

  async _validToken() {
    // About to expire (within the refresh lead, at most 10 s): renew before using it.
    const soon = Math.min(10000, this._refreshLead());
    const fetchFirst = !this._token && (this._tokenSource || this._refreshCookie);
    if (fetchFirst || this._expiresWithin(soon)) await this._renewToken();
    if (!this._token) throw new LiveSettingsError("session_expired", "no access token");
    return this._token;
  }

  async _api(method, path, body, headers = {}) {
    const call = async () =>
      request(this.url + path, {
        method,
        body,
        headers,
        token: await this._validToken(),
        timeout: this._opts.requestTimeout,
      });
    try {
      return await call();
    } catch (err) {
      if (err.status !== 401 || !this._canRenew()) throw err;
      await this._renewToken(true);
      return call();
    }
  }

  // -- the connection ----------------------------------------------------------------------

  async _connect() {
    clearTimeout(this._timers.reconnect);
    if (this._closed || this._conn || this._connecting || this._sessionEnded) return;
    if (globalThis.navigator?.onLine === false) {
      this._setConnection(Connection.OFFLINE);
      this._scheduleReconnect();
      return;
    }
    if (
      this._mode === "sse" &&
      this._opts.transport === "auto" &&
      Date.now() - this._sseSince > 300000
    ) {
      this._mode = "ws"; // try WebSockets again now and then
      this._wsFailures = 0;
    }
    this._connecting = true;
    let token;
    try {
      token = await this._validToken();
    } catch (err) {
      this._connecting = false;
      if (SESSION_END_CODES.has(err.code)) this._endSession(err);
      else {
        this._setConnection(Connection.OFFLINE);
        this._scheduleReconnect();
      }
      return;
    }
    this._connecting = false;
    if (this._closed || this._conn || this._sessionEnded) return;
    if (this._mode === "sse") this._openSse(token);
    else this._openWs(token);
  }

  _newConn(kind) {
    this._connSeq += 1;
    const now = Date.now();
    return {
      kind,
      id: this._connSeq,
      opened: false,
      ready: false,
      synced: false,
      startedAt: now,
      lastRx: now,
      pingAt: null,
    };
  }

  _openWs(token) {
    const conn = this._newConn("ws");
    let ws;
    try {
      ws = new WebSocket(this.url.replace(/^http/, "ws") + "/v1/realtime");
    } catch {
      this._onClosed(conn, 1006, "cannot open a socket");
      return;
    }
    conn.ws = ws;
    this._conn = conn;
    ws.onopen = () => {
      if (conn !== this._conn) return;
      conn.opened = true;
      conn.lastRx = Date.now();
      // auth, subscribe and updates may follow each other without waiting (DESIGN §5).
      ws.send(JSON.stringify({ type: "auth", token: this._token ?? token, client_id: this.clientId }));
      ws.send(JSON.stringify({ type: "subscribe", since: this._hasCache ? this._confirmed.revision : null }));
      conn.ready = true;
      this._flush();
      this._refreshStatus();
    };
    ws.onmessage = (event) => {
      if (conn !== this._conn) return;
      conn.lastRx = Date.now();
      conn.pingAt = null;
      conn.answered = true;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (isObject(frame)) this._onFrame(frame, conn);
    };
    ws.onclose = (event) => this._onClosed(conn, event.code, event.reason);
    this._startHeartbeat(conn);
  }

  async _openSse(token) {
    const conn = this._newConn("sse");
    conn.ctrl = new AbortController();
    this._conn = conn;
    this._startHeartbeat(conn);
    const since = this._hasCache ? `?since=${this._confirmed.revision}` : "";
    let response;
    try {
      response = await fetch(this.url + "/v1/settings/events" + since, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        signal: conn.ctrl.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      this._onClosed(conn, 1006, "the event stream cannot be reached");
      return;
    }
    if (conn !== this._conn) return;
    if (response.status === 401) {
      this._onClosed(conn, 4001, "unauthorized");
      return;
    }
    if (!response.ok || !response.body) {
      this._onClosed(conn, 1011, `the event stream answered ${response.status}`);
      return;
    }
    conn.opened = true;
    conn.ready = true;
    conn.lastRx = Date.now();
    this._sseSince = this._sseSince || Date.now();
    this._flush();
    this._refreshStatus();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || conn !== this._conn) break;
        conn.lastRx = Date.now();
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (!data) continue;
          let frame;
          try {
            frame = JSON.parse(data);
          } catch {
            continue;
          }
          if (isObject(frame)) this._onFrame(frame, conn);
          if (conn !== this._conn) break;
        }
      }
    } catch {
      // aborted or the network went away: handled below
    }
    this._onClosed(conn, 1006, "the event stream ended");
  }

  _startHeartbeat(conn) {
    clearInterval(this._timers.heartbeat);
    const { heartbeatInterval, heartbeatTimeout } = this._opts;
    const tick = Math.max(50, Math.min(heartbeatInterval, heartbeatTimeout) / 4);
    this._timers.heartbeat = setInterval(() => {
      if (conn !== this._conn) {
        clearInterval(this._timers.heartbeat);
        return;
      }
      const now = Date.now();
      if (!conn.opened) {
        if (now - conn.startedAt > heartbeatTimeout) this._dropConnection("no answer from the server");
        return;
      }
      if (conn.kind === "sse") {
        if (now - conn.lastRx > SSE_KEEPALIVE + heartbeatTimeout) {
          this._dropConnection("the event stream went quiet");
        }
        return;
      }
      if (conn.pingAt !== null) {
        if (now - conn.pingAt >= heartbeatTimeout) this._dropConnection("no pong from the server");
      } else if (now - conn.lastRx >= heartbeatInterval) {
        conn.pingAt = now;
        try {
          conn.ws.send('{"type":"ping"}');
        } catch {
          this._dropConnection("the socket failed");
        }
      }
    }, tick);
  }

  // End the current connection now, without waiting for a closing handshake that a dead
  // network would never complete.
  _dropConnection(reason, reconnect = true) {
    const conn = this._conn;
    if (!conn) {
      if (reason && !this._closed) this._setConnection(Connection.OFFLINE);
      return;
    }
    if (conn.ws) {
      conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = null;
      try {
        conn.ws.close(1000, "bye");
      } catch {
        // already closed
      }
    }
    if (conn.ctrl) conn.ctrl.abort();
    this._onClosed(conn, 1006, reason ?? "", reconnect);
  }

  _onClosed(conn, code, reason, reconnect = true) {
    if (conn !== this._conn) return;
    this._conn = null;
    clearInterval(this._timers.heartbeat);
    for (const entry of [...this._own, ...this._secrets]) {
      if (entry.sentOn === conn.id && entry.acked == null) entry.sentOn = null;
    }
    this._httpQueue = [];
    for (const resolve of this._syncedWaiters.splice(0)) resolve(false);
    if (this._closed || !reconnect) {
      this._refreshStatus();
      return;
    }
    if (code === 4001) {
      this._authFailures += 1;
      if (this._authFailures > 2 || !this._canRenew()) {
        this._endSession(new LiveSettingsError("session_expired", "your session has ended: sign in again"));
        return;
      }
      this._renewToken(true)
        .then(() => this._connect())
        .catch((err) => {
          if (SESSION_END_CODES.has(err.code)) this._endSession(err);
          else this._scheduleReconnect();
        });
      return;
    }
    // A socket that never opened, or closed before the server said anything, counts
    // against WebSockets (a proxy may accept the upgrade and then drop it).
    if (conn.kind === "ws" && !conn.answered && this._opts.transport === "auto") {
      this._wsFailures += 1;
      if (this._wsFailures >= 2) this._maybeFallBack();
    }
    this._setConnection(
      this._status.connection === Connection.ERROR && this._sessionEnded
        ? Connection.ERROR
        : Connection.OFFLINE,
    );
    this._scheduleReconnect(code === 4008 ? 4 : 1);
  }

  // WebSockets fail while HTTP works (a proxy that drops upgrades): use the event stream.
  async _maybeFallBack() {
    try {
      const response = await fetch(this.url + "/healthz", { cache: "no-store", credentials: "omit" });
      if (response.ok && this._mode === "ws") {
        this._mode = "sse";
        this._sseSince = Date.now();
        this._attempt = 0;
        clearTimeout(this._timers.reconnect);
        this._connect();
      }
    } catch {
      // the server is down, not WebSockets: keep trying them
    }
  }

  _scheduleReconnect(factor = 1) {
    if (this._closed || this._sessionEnded) return;
    clearTimeout(this._timers.reconnect);
    const { reconnectDelay, maxReconnectDelay } = this._opts;
    const ceiling = Math.min(maxReconnectDelay, reconnectDelay * 2 ** this._attempt * factor);
    this._attempt = Math.min(this._attempt + 1, 30);
    // Half fixed, half random: spread the reconnects of many clients after a restart.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this._timers.reconnect = setTimeout(() => this._connect(), delay);
  }

  // -- frames ----------------------------------------------------------------------------

  _onFrame(frame, conn) {
    switch (frame.type) {
      case "auth_ok":
        break;
      case "snapshot":
        this._applySnapshot(frame.revision, frame.settings, "server");
        break;
      case "change":
        this._applyChange(frame, conn);
        break;
      case "synced":
        conn.synced = true;
        if (conn.kind === "ws") this._wsFailures = 0;
        this._attempt = 0;
        this._authFailures = 0;
        this._recordSync();
        this._saveState();
        this._setConnection(Connection.ONLINE);
        for (const resolve of this._syncedWaiters.splice(0)) resolve(true);
        this._readyResolve(true);
        this._flush();
        break;
      case "ack":
        this._onAck(frame);
        break;
      case "error":
        this._onErrorFrame(frame, conn);
        break;
      default:
        break; // pong, and frame types of later versions
    }
  }

  _applySnapshot(revision, settings, source, onlyNewer = false) {
    if (!Number.isInteger(revision) || !isObject(settings)) return;
    if (onlyNewer && this._hasCache && revision < this._confirmed.revision) return;
    this._confirmed = { revision, settings: normalise(settings) };
    this._hasCache = true;
    this._saveState();
    this._changed(source);
  }

  _applyChange(frame, conn) {
    const revision = frame.revision;
    if (!Number.isInteger(revision) || !isObject(frame.patch)) return;
    if (revision <= this._confirmed.revision) return; // already have it
    if (revision !== this._confirmed.revision + 1) {
      // A gap should not happen; resubscribe from what we hold rather than guess.
      if (conn.kind === "ws" && conn.ready) {
        conn.ws.send(JSON.stringify({ type: "subscribe", since: this._confirmed.revision }));
      } else {
        this._dropConnection(null, false);
        this._connect();
      }
      return;
    }
    this._confirmed = {
      revision,
      settings: normalise(applyPatch(this._confirmed.settings, frame.patch)),
    };
    this._hasCache = true;
    if (typeof frame.mutation_id === "string") this._markSeen(frame.mutation_id);
    const mine = frame.client_id === this.clientId;
    for (const conflict of Array.isArray(frame.conflicts) ? frame.conflicts : []) {
      if (!isObject(conflict) || conflict.lost_by !== this.clientId || mine) continue;
      // Our earlier value was overwritten by a newer concurrent edit of another client.
      this._emit("conflict", {
        path: conflict.path,
        mine: conflict.kept === "partial" ? undefined : conflict.theirs,
        winner: conflict.kept === "partial" ? null : conflict.yours,
        lost: true,
        kept: "theirs",
        revision,
        mutationId: frame.mutation_id ?? null,
      });
    }
    this._recordSync();
    this._saveState();
    this._changed(mine ? "ack" : "server");
  }

  _markSeen(id) {
    this._seen.add(id);
    if (this._seen.size > SEEN_LIMIT) this._seen.delete(this._seen.values().next().value);
  }

  _findEntry(id) {
    return this._own.find((e) => e.id === id) ?? this._secrets.find((e) => e.id === id) ?? null;
  }

  _onAck(frame) {
    const entry = this._findEntry(frame.mutation_id);
    if (!entry) return;
    entry.acked = Number.isInteger(frame.revision) ? frame.revision : this._confirmed.revision;
    this._recordSync();
    for (const conflict of Array.isArray(frame.conflicts) ? frame.conflicts : []) {
      if (!isObject(conflict)) continue;
      const lost = conflict.kept === "theirs";
      this._emit("conflict", {
        path: conflict.path,
        mine: conflict.yours,
        winner: lost ? conflict.theirs : conflict.yours,
        lost,
        kept: conflict.kept,
        revision: entry.acked,
        mutationId: entry.id,
      });
    }
    this._persistOwn();
    this._broadcastOwn();
    this._changed("ack");
  }

  _onErrorFrame(frame, conn) {
    const error = new LiveSettingsError(
      String(frame.code ?? "error"),
      String(frame.message ?? "the server refused a frame"),
      { details: frame.details ?? null, mutationId: frame.mutation_id ?? null },
    );
    const entry = frame.mutation_id ? this._findEntry(frame.mutation_id) : null;
    if (entry) {
      if (error.code === "rate_limited" || TRANSIENT_CODES.has(error.code)) {
        const wait = Number(error.details?.retry_after ?? 1) * 1000;
        entry.sentOn = null;
        entry.retryAt = Date.now() + (Number.isFinite(wait) ? wait : 1000);
        setTimeout(() => this._flush(), entry.retryAt - Date.now() + 10);
        this._refreshStatus();
        return;
      }
      if (AUTH_CODES.has(error.code)) {
        entry.sentOn = null; // resent once the socket is authorised again
        return;
      }
      this._reject(entry, error);
      return;
    }
    if (AUTH_CODES.has(error.code)) {
      // The close 4001 that follows renews the token; SSE streams just end.
      if (conn.kind === "sse" && error.code === "token_expired") {
        this._renewToken().catch((err) => this._onRenewFailure(err));
      }
      return;
    }
    // An answer about an edit that is no longer pending here (already dropped) is no state.
    if (SECRET_CODES.has(error.code)) return;
    this._reportError(error, { edit: Boolean(frame.mutation_id) });
  }

  // The server refused an edit for what it says: drop it (never pending forever), and send
  // again whatever else the same edit held, without the refused path.
  _reject(entry, error) {
    this._own = this._own.filter((e) => e !== entry);
    this._secrets = this._secrets.filter((e) => e !== entry);
    if (!entry.secret && error.path) {
      const rest = removePath(entry.patch, parsePath(error.path));
      if (Object.keys(rest).length && JSON.stringify(rest) !== JSON.stringify(entry.patch)) {
        this._own.push({ ...storedEntry(entry), id: randomId("m"), patch: rest, sealed: true });
        this._own.sort((a, b) => a.created - b.created || a.seq - b.seq);
      }
    }
    this._persistOwn();
    this._broadcastOwn();
    error.mutationId = entry.id;
    this._reportError(error, { edit: true });
    this._changed("rejected");
    this._flush();
  }

  _flush() {
    const conn = this._conn;
    if (!conn || !conn.ready || this._closed) return;
    const now = Date.now();
    const due = [...this._secrets, ...this._own]
      .filter((e) => e.sealed && e.acked == null && e.sentOn == null && !(e.retryAt > now))
      .sort((a, b) => a.created - b.created || a.seq - b.seq);
    for (const entry of due) {
      entry.sentOn = conn.id;
      if (conn.kind === "ws") {
        try {
          conn.ws.send(
            JSON.stringify({
              type: "update",
              mutation_id: entry.id,
              base_revision: entry.base,
              patch: entry.patch,
              edited_at: entry.at,
            }),
          );
        } catch {
          entry.sentOn = null;
        }
      } else {
        this._httpQueue.push(entry);
      }
    }
    if (conn.kind === "sse") this._drainHttp(conn);
    this._refreshStatus();
  }

  // SSE mode: writes go over HTTP, one at a time to keep this client's order.
  async _drainHttp(conn) {
    if (this._httpBusy) return;
    this._httpBusy = true;
    try {
      while (this._httpQueue.length && conn === this._conn) {
        const entry = this._httpQueue.shift();
        if (entry.acked != null || !this._findEntry(entry.id)) continue;
        let body;
        try {
          body = await this._api("PATCH", "/v1/settings", entry.patch, {
            "Idempotency-Key": entry.id,
            "X-Client-Id": this.clientId,
            "X-Base-Revision": String(entry.base),
            "X-Edited-At": String(entry.at),
          });
        } catch (err) {
          if (err.code === "offline" || err.status >= 500 || err.status === 401) {
            for (const e of [entry, ...this._httpQueue.splice(0)]) e.sentOn = null;
            entry.retryAt = Date.now() + 1000;
            setTimeout(() => this._flush(), 1010);
            break;
          }
          this._onErrorFrame(
            {
              type: "error",
              mutation_id: entry.id,
              code: err.code,
              message: err.message,
              details: err.details,
            },
            conn,
          );
          continue;
        }
        this._onAck({ mutation_id: entry.id, revision: body.revision, conflicts: body.conflicts });
      }
    } finally {
      this._httpBusy = false;
    }
  }
}

function storedEntry(entry) {
  return {
    id: entry.id,
    base: entry.base,
    patch: entry.patch,
    at: entry.at,
    created: entry.created,
    seq: entry.seq,
    sealed: entry.sealed,
    acked: entry.acked ?? null,
  };
}

function validEntry(entry) {
  return (
    isObject(entry) &&
    typeof entry.id === "string" &&
    Number.isInteger(entry.base) &&
    isObject(entry.patch) &&
    !Object.hasOwn(entry.patch, "api_keys") &&
    Number.isFinite(entry.at) &&
    Number.isFinite(entry.created)
  );
}
