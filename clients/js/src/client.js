// The client class of the browser client: the public API, edits, the view and the status, and
// the frames of the server. Storage and tabs, tokens and transports are methods of their own
// modules, copied onto the class below.

import {
  AUTH_CODES,
  LiveSettingsError,
  SECRET_CODES,
  SESSION_END_CODES,
  TRANSIENT_CODES,
} from "./errors.js";
import { COOKIE_MODE, SessionStatics, TokenMethods, baseUrl, decodeJwt } from "./session.js";
import { request } from "./http.js";
import {
  Connection,
  DEFAULT_OPTIONS,
  FIELDS,
  applyPatch,
  byCreation,
  composePatches,
  copy,
  isObject,
  maskLocally,
  normalise,
  parsePath,
  patchAt,
  put,
  removePath,
  storedEntry,
  toPointer,
} from "./state.js";
import {
  LOGOUT_PENDING_KEY,
  USER_KEY,
  documentPrefix,
  forgetLegacyTokensOnce,
  openStore,
  randomId,
  storedUser,
} from "./storage.js";
import { SeedMethods } from "./service.js";
import { TabMethods, isBrowserPage } from "./tabs.js";
import { TeamMethods, documentKey } from "./teams.js";
import { TransportMethods, webSocketClass } from "./transports.js";

const SEEN_LIMIT = 2000;

/**
 * Live settings of one user: their own document, or (option `doc: "team:<id>"`) a team's
 * document they belong to, with its own cache and queues. Events (`CustomEvent`, data in `event.detail`):
 * - `change` {settings, revision, source}: the settings as shown changed (source: "local",
 *   "tab", "server", "refresh", "ack", "rejected", "adopted");
 * - `apiKeysChange` {apiKeys}: the masked api_keys changed;
 * - `status` (the status object, see `status`);
 * - `conflict` {path, mine, winner, lost, kept, revision, mutationId}: an edit of this
 *   browser lost (`lost: true`: the value `winner` was kept) or overwrote a concurrent one;
 * - `error` {code, message, path, mutationId, status}: a refused edit (it is dropped, the
 *   message names the field), `offline_secret`, `session_expired`, `signed_out`, …;
 * - `tokens` {accessToken, refreshToken, expiresAt, userId}: a `refreshToken` given by the app
 *   was rotated (the old one is spent). Nothing is stored: keep it yourself if you must;
 * - `membership` {doc, role}: the user's role in the team of `doc` changed (`role: null`:
 *   removed), or, for this client's team document, became known. Removed from this client's
 *   team, an `error` `forbidden` follows and the client stops syncing.
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
   * @param {string} [options.userId] needed when the token is not a JWT with `sub`; with a
   *   service token (claim `role: "service"`), the user whose settings this client follows
   * @param {number|null|false} [options.autoSaveDelay] debounce in ms; null/false: manual
   * @param {Function} [options.WebSocket] the WebSocket class where there is no global one
   *   (Node: the `ws` package's); with neither, the client uses the SSE event stream
   * @param {boolean} [options.tabs] share edits and tokens with the user's other tabs
   *   (BroadcastChannel, Web Locks); default: only in a browser page
   * @param {string|null} [options.doc] "team:<team_id>": follow that team's document (the
   *   user must be a member); default: the user's own
   */
  constructor(options = {}) {
    super();
    const opts = { ...DEFAULT_OPTIONS, ...options };
    this._opts = opts;
    this.url = baseUrl(opts.url);
    const page = isBrowserPage();
    this._tabs = opts.tabs ?? page;
    // Outside a browser page the default store is memory: a Node process's localStorage
    // would give every client of the same user one client id.
    this._store = openStore(opts.storage === undefined && !page ? null : opts.storage);
    if (opts.storage === undefined && page) forgetLegacyTokensOnce();
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
    const service = claims?.role === "service" && opts.userId && opts.userId !== claims.sub;
    this._forUser = service ? opts.userId : null; // a service token acting for this user
    this.doc = documentKey(opts.doc, claims); // "team:<id>", or null: the user's own document
    this._WebSocket = webSocketClass(opts.WebSocket);
    this.autoSaveDelay = opts.autoSaveDelay;
    this._userPrefix = documentPrefix(this.userId, null); // the tabs' channel: one per user
    this._prefix = documentPrefix(this.userId, this.doc); // the cache and queues: per document
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
    this._mode = opts.transport === "sse" || !this._WebSocket ? "sse" : "ws";
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
      conn.ws.send(this._frame({ type: "subscribe", since: null }));
      this._refreshStatus();
      let timer;
      const late = new Promise((r) => (timer = setTimeout(r, this._opts.requestTimeout)));
      await Promise.race([synced, late]);
      clearTimeout(timer); // a pending timer would keep a Node process alive
      return this.settings;
    }
    const body = await this._api("GET", this._settingsPath());
    this._applySnapshot(body.revision, body.settings, "refresh", true);
    return this.settings;
  }

  /** The last `limit` changes: [{revision, patch, mutation_id, client_id, committed_at, mine}]. */
  async history({ limit = 20 } = {}) {
    this._ownUserOnly("history");
    const since = Math.max(0, this._confirmed.revision - limit);
    const query = `?since=${since}&limit=${limit}`;
    const body = await this._api("GET", `${this._settingsPath()}/changes${query}`);
    return body.changes.map((c) => ({ ...c, mine: c.client_id === this.clientId })).reverse();
  }

  /** Restore the non-secret fields as they were at `revision`, as a new revision. */
  async revert(revision) {
    this._ownUserOnly("revert");
    const body = await this._api(
      "POST",
      `${this._settingsPath()}/revert`,
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

  /**
   * Delete the user's account: settings, secrets, change history, team memberships and every
   * session. `password` is a built-in user's; without it the access token must come from a
   * sign-in a few minutes ago (else the error `reauthentication_required`). Rejects with
   * `wrong_password`, or `last_owner` when the user alone owns a team (nothing is deleted).
   * Once deleted, this browser forgets the account's cached settings and pending edits, and
   * the client closes.
   */
  async deleteAccount({ password } = {}) {
    this._ownUserOnly("deleteAccount");
    const body = password === undefined || password === null ? undefined : { password };
    await this._api("DELETE", "/v1/account", body);
    this.close(); // first: closing stores the state, which is forgotten next
    this.forgetCache({ all: true });
    if (this._refreshCookie && storedUser(this._store)?.user_id === this.userId) {
      this._store.remove(USER_KEY);
    }
  }

  /**
   * Everything the account holds, secrets masked (data portability): {format, version,
   * exported_at, user, revision, settings, updated_at, changes, history_complete, teams}.
   */
  exportAccount() {
    this._ownUserOnly("exportAccount");
    return this._api("GET", "/v1/account/export");
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
      .sort(byCreation);
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

  // -- frames ----------------------------------------------------------------------------

  _onFrame(frame, conn) {
    const other = frame.doc != null && frame.doc !== this.doc && frame.type !== "membership";
    if (other) return; // about another document (a role in any team is told by every client)
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
        this._learnRole();
        break;
      case "ack":
        this._onAck(frame);
        break;
      case "error":
        this._onErrorFrame(frame, conn);
        break;
      case "membership":
        this._onMembership(frame);
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
        conn.ws.send(this._frame({ type: "subscribe", since: this._confirmed.revision }));
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
      if (sameValues(conflict)) continue;
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
      if (!isObject(conflict) || sameValues(conflict)) continue;
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
    if (this._endsDocument(error, frame)) return;
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
        this._own.sort(byCreation);
      }
    }
    this._persistOwn();
    this._broadcastOwn();
    error.mutationId = entry.id;
    this._reportError(error, { edit: true });
    this._changed("rejected");
    this._flush();
  }
}

// Both edits wrote the same value: nobody lost anything, so nothing is told. Secrets are
// compared by their masks only, which may match for different keys: those are always told.
function sameValues(conflict) {
  if (conflict.kept === "partial" || String(conflict.path).startsWith("/api_keys/")) return false;
  return JSON.stringify(conflict.yours) === JSON.stringify(conflict.theirs);
}

// Copy the methods of `sources` onto `target` as a class body would: not enumerable.
function mixin(target, sources, skip) {
  for (const source of sources) {
    for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(source))) {
      if (skip.includes(name)) continue;
      Object.defineProperty(target, name, { ...descriptor, enumerable: false });
    }
  }
}

const mixins = [SeedMethods, TabMethods, TeamMethods, TokenMethods, TransportMethods];
const methods = mixins.map((cls) => cls.prototype);
mixin(LiveSettings.prototype, methods, ["constructor"]);
mixin(LiveSettings, [SessionStatics], ["length", "name", "prototype"]);
