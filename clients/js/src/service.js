// The seed's service names (DESIGN §10): `subscribeToSettingsChanges(userId, callback)`,
// `updateSettingsRealtime(userId, settings)` and `getLatestSettings(userId)`.
//
// - On a `LiveSettings` (SeedMethods, copied onto the class) they act for the client's own
//   user; the `userId` may be left out.
// - `createRealtimeSettingsService({url, token})` is the seed's `realtimeSettingsService` for a
//   backend: with a service token (claim `role: "service"`) it follows any number of users
//   over one WebSocket (one SSE stream per user without WebSockets), holds each one's settings,
//   resumes from the last revision after a reconnect, and writes over HTTP. With a user token
//   it reaches that user only. Its connection lives while something is subscribed, so a Node
//   process exits once every subscription is cleaned up, or after `close()`.

import { AUTH_CODES, LiveSettingsError } from "./errors.js";
import { requestWithToken } from "./http.js";
import { baseUrl, decodeJwt } from "./session.js";
import { FeedMethods } from "./service_feeds.js";
import { applyPatch, copy, isObject } from "./state.js";
import { randomId } from "./storage.js";
import { webSocketClass } from "./transports.js";

const SERVICE_DEFAULTS = Object.freeze({
  transport: "auto", // "auto" (WebSocket, else SSE), "websocket" or "sse"
  requestTimeout: 15000,
  heartbeatInterval: 15000, // idle time after which a ping is sent
  heartbeatTimeout: 10000, // no pong (or SSE keepalive) for this long: reconnect
  reconnectDelay: 500, // doubles up to maxReconnectDelay, with jitter
  maxReconnectDelay: 30000,
  refreshLeadTime: 60000, // a token function is called again this long before expiry
});

function forbidden(sub, userId) {
  return new LiveSettingsError(
    "forbidden",
    `a user token reaches only its own user's settings: this token is for user "${sub}", ` +
      `not "${userId}" (use a service token to reach any user)`,
    { status: 403 },
  );
}

function checkUserId(userId) {
  if (typeof userId !== "string" || !userId || userId.length > 128) {
    throw new LiveSettingsError("invalid_user_id", "userId must be a non-empty string");
  }
}

/** The seed's names on `LiveSettings`, which copies them onto its prototype. */
export class SeedMethods {
  // `userId` (the seed's first argument) must be this client's own user.
  _checkOwnUser(userId) {
    if (userId !== this.userId) {
      throw new LiveSettingsError(
        "forbidden",
        `this client follows user "${this.userId}", not "${userId}": ` +
          "use createRealtimeSettingsService with a service token to reach other users",
      );
    }
  }

  _ownUserOnly(what) {
    if (this._forUser) {
      throw new LiveSettingsError("forbidden", `${what} needs the user's own token`);
    }
  }

  /**
   * Call `callback(settings, detail)` on every change; returns the cleanup function. The seed's
   * form `subscribeToSettingsChanges(userId, callback)` is accepted for the own user.
   */
  subscribeToSettingsChanges(userId, callback) {
    if (typeof userId === "function") [userId, callback] = [this.userId, userId];
    this._checkOwnUser(userId);
    return this.on("change", (detail) => callback(detail.settings, detail));
  }

  /** Call `callback(apiKeys)` when the masked api_keys change; returns the cleanup function. */
  onApiKeysUpdate(callback) {
    return this.on("apiKeysChange", (detail) => callback(detail.apiKeys));
  }

  /**
   * Apply `settings` (a merge patch) and save at once; resolves when saved. The seed's form
   * `updateSettingsRealtime(userId, settings)` is accepted for the own user.
   */
  async updateSettingsRealtime(userId, settings) {
    if (typeof userId === "string") this._checkOwnUser(userId);
    else settings = userId;
    this.update(settings);
    return this.saveNow();
  }

  /** The latest settings: live ones when online, else a fresh read, else the cached ones. */
  async getLatestSettings(userId) {
    if (userId !== undefined) this._checkOwnUser(userId);
    if (this._status.connection === "online") return this.settings;
    try {
      return await this.refresh();
    } catch {
      return this.settings;
    }
  }
}

/**
 * The seed's `realtimeSettingsService` for backends. Events (`on(type, cb)` or
 * `addEventListener`, data in `event.detail`): `error` {code, message, userId} for what has no
 * caller to reject (a refused subscription, a token that cannot be renewed, a callback that
 * threw).
 */
export class RealtimeSettingsService extends EventTarget {
  constructor(options = {}) {
    super();
    const opts = { ...SERVICE_DEFAULTS, ...options };
    this._opts = opts;
    this.url = baseUrl(opts.url);
    if (!this.url) throw new LiveSettingsError("invalid_options", "the service needs a url");
    if (typeof opts.token === "function") {
      this._tokenSource = opts.token;
      this._token = null;
    } else if (typeof opts.token === "string" && opts.token) {
      this._tokenSource = null;
      this._token = opts.token;
    } else {
      throw new LiveSettingsError("invalid_options", "the service needs a token (or a function)");
    }
    this._claims = this._token ? decodeJwt(this._token) : null;
    this.clientId = opts.clientId ?? randomId("svc");
    this._WebSocket = webSocketClass(opts.WebSocket);
    this._mode = opts.transport === "sse" || !this._WebSocket ? "sse" : "ws";
    this._docs = new Map(); // userId -> {userId, revision, settings, synced, listeners, …}
    this._conn = null;
    this._connecting = false;
    this._attempt = 0;
    this._wsFailures = 0;
    this._closed = false;
    this._renewing = null;
    this._timers = { reconnect: null, heartbeat: null, refresh: null };
    this._scheduleRenewal();
  }

  /** Listen to an event; returns the function that stops listening. */
  on(type, callback) {
    const handler = (event) => callback(event.detail);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /** "ws" or "sse": how changes arrive. */
  get transport() {
    return this._mode;
  }

  /**
   * Call `callback(settings, {userId, revision})` with the user's whole settings (secrets
   * masked, as the server sends them): once with the current settings when the subscription
   * is in sync, then after each change (after a reconnect: once, if anything changed while
   * away). Returns the cleanup function.
   */
  subscribeToSettingsChanges(userId, callback) {
    if (this._closed) throw new LiveSettingsError("closed", "this service is closed");
    checkUserId(userId);
    if (typeof callback !== "function") {
      throw new LiveSettingsError("invalid_options", "subscribeToSettingsChanges needs a callback");
    }
    if (this._claims) this._checkAccess(userId);
    let doc = this._docs.get(userId);
    const listener = { callback };
    if (!doc) {
      doc = { userId, revision: 0, settings: null, synced: false };
      doc.listeners = new Set();
      this._docs.set(userId, doc);
      this._follow(doc);
    } else if (doc.synced) {
      queueMicrotask(() => this._deliver(doc)); // the current settings, to this listener only
    }
    doc.listeners.add(listener);
    return () => {
      doc.listeners.delete(listener);
      if (!doc.listeners.size && this._docs.get(userId) === doc) this._unfollow(doc);
    };
  }

  /**
   * Merge `settings` (a merge patch) into the user's settings; resolves with the server's
   * answer `{revision, settings, conflicts}` (settings masked).
   */
  async updateSettingsRealtime(userId, settings) {
    await this._access(userId);
    if (!isObject(settings)) throw new LiveSettingsError("invalid", "a patch must be an object");
    const body = await this._api("PATCH", this._path(userId), settings, {
      "Idempotency-Key": randomId("m"),
      "X-Client-Id": this.clientId,
    });
    this._hold(userId, body);
    return body;
  }

  /** The user's whole settings (secrets masked), read from the server. */
  async getLatestSettings(userId) {
    await this._access(userId);
    const body = await this._api("GET", this._path(userId));
    this._hold(userId, body);
    return body.settings;
  }

  /** Stop every subscription, timer and connection. */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const doc of this._docs.values()) this._stopDoc(doc);
    this._docs.clear();
    this._stopAll();
  }

  // -- users and tokens ----------------------------------------------------------------------

  get _isService() {
    return this._claims?.role === "service";
  }

  _checkAccess(userId) {
    const sub = this._claims?.sub;
    if (!this._isService && userId !== sub) throw forbidden(sub, userId);
  }

  async _access(userId) {
    if (this._closed) throw new LiveSettingsError("closed", "this service is closed");
    checkUserId(userId);
    if (!this._claims) await this._validToken();
    this._checkAccess(userId);
  }

  _path(userId) {
    return this._isService ? `/v1/users/${encodeURIComponent(userId)}/settings` : "/v1/settings";
  }

  _setToken(token) {
    if (typeof token !== "string" || !token) {
      throw new LiveSettingsError("session_expired", "the token function returned no token");
    }
    this._token = token;
    this._claims = decodeJwt(token);
    this._scheduleRenewal();
    this._tokenChanged();
  }

  _expiry() {
    const exp = this._claims?.exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  }

  _lead() {
    const exp = this._expiry();
    const iat = Number.isFinite(this._claims?.iat) ? this._claims.iat * 1000 : Date.now();
    return exp === null ? 0 : Math.min(this._opts.refreshLeadTime, (exp - iat) / 4);
  }

  // A token function is called again before the token expires, while anything is followed.
  _scheduleRenewal() {
    clearTimeout(this._timers.refresh);
    const exp = this._expiry();
    if (!this._tokenSource || exp === null || !this._docs.size || this._closed) return;
    const delay = Math.max(1000, exp - this._lead() - Date.now());
    this._timers.refresh = setTimeout(() => {
      this._renew().catch((err) => this._report(err));
    }, Math.min(delay, 2 ** 31 - 1));
  }

  _renew() {
    if (!this._tokenSource) {
      return Promise.reject(
        new LiveSettingsError("session_expired", "the token was refused and cannot be renewed"),
      );
    }
    this._renewing ??= Promise.resolve()
      .then(() => this._tokenSource())
      .then((token) => this._setToken(token))
      .finally(() => {
        this._renewing = null;
      });
    return this._renewing;
  }

  async _validToken() {
    const exp = this._expiry();
    const stale = exp !== null && exp - Date.now() < Math.min(10000, this._lead());
    if (this._tokenSource && (!this._token || stale)) await this._renew();
    return this._token;
  }

  _api(method, path, body, headers = {}) {
    const init = { method, body, headers, timeout: this._opts.requestTimeout };
    return requestWithToken(this.url + path, init, {
      token: () => this._validToken(),
      canRenew: () => Boolean(this._tokenSource),
      renew: () => this._renew(),
    });
  }


  // -- held settings --------------------------------------------------------------------

  _onFrame(frame, doc) {
    if (frame.type === "error") {
      const error = new LiveSettingsError(String(frame.code), String(frame.message ?? ""), {
        details: frame.details ?? null,
      });
      if (!AUTH_CODES.has(error.code)) this._report(error, doc?.userId ?? null);
      return; // an auth error closes the connection (4001): handled there
    }
    if (!doc || !this._docs.has(doc.userId)) return;
    if (frame.type === "snapshot" && isObject(frame.settings)) {
      doc.revision = frame.revision;
      doc.settings = frame.settings;
    } else if (frame.type === "change" && isObject(frame.patch)) {
      if (frame.revision <= doc.revision) return; // already held
      if (doc.settings === null || frame.revision !== doc.revision + 1) {
        this._resync(doc); // a gap should not happen: resubscribe from what is held
        return;
      }
      doc.revision = frame.revision;
      doc.settings = applyPatch(doc.settings, frame.patch);
      if (doc.synced) this._deliver(doc);
    } else if (frame.type === "synced") {
      doc.synced = true;
      this._attempt = 0;
      this._deliver(doc);
    }
  }

  // A newer whole document read or written over HTTP: hold it, and the change frames up to
  // its revision are then skipped as already held.
  _hold(userId, body) {
    const doc = this._docs.get(userId);
    if (!doc || !doc.synced || !isObject(body?.settings) || !(body.revision > doc.revision)) return;
    doc.revision = body.revision;
    doc.settings = copy(body.settings);
    this._deliver(doc);
  }

  // Each listener is called when the settings differ from what it was last given.
  _deliver(doc) {
    if (doc.settings === null || !doc.synced) return;
    const text = JSON.stringify(doc.settings);
    for (const listener of [...doc.listeners]) {
      if (listener.seen !== text && doc.listeners.has(listener)) this._call(doc, listener, text);
    }
  }

  _call(doc, listener, text) {
    listener.seen = text;
    try {
      listener.callback(copy(doc.settings), { userId: doc.userId, revision: doc.revision });
    } catch (err) {
      this._report(err, doc.userId);
    }
  }

  _report(err, userId = null) {
    const code = typeof err?.code === "string" ? err.code : "error";
    const message = String(err?.message ?? err);
    this.dispatchEvent(new CustomEvent("error", { detail: { code, message, userId, error: err } }));
  }

  // With a token function, the user is known only once the first token arrived.
  _dropForbidden() {
    for (const doc of [...this._docs.values()]) {
      try {
        this._checkAccess(doc.userId);
      } catch (err) {
        this._docs.delete(doc.userId);
        this._stopDoc(doc);
        this._report(err, doc.userId);
      }
    }
    if (!this._docs.size) this._stopAll();
  }
}

const FEED = Object.getOwnPropertyDescriptors(FeedMethods.prototype);
delete FEED.constructor;
for (const descriptor of Object.values(FEED)) descriptor.enumerable = false;
Object.defineProperties(RealtimeSettingsService.prototype, FEED);

/** The seed's `realtimeSettingsService`: see `RealtimeSettingsService`. */
export function createRealtimeSettingsService(options) {
  return new RealtimeSettingsService(options);
}
