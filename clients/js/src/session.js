// Tokens and the session of the browser client: JWT claims, the refresh cookie (one tab at a
// time, under a Web Lock), sign-in, and the renewal of a client's access token.

import { LiveSettingsError, SESSION_END_CODES } from "./errors.js";
import { request, requestWithToken } from "./http.js";
import { Connection, DEFAULT_OPTIONS, isObject } from "./state.js";
import {
  LOGOUT_PENDING_KEY,
  USER_KEY,
  forgetLegacyTokens,
  openStore,
  storedUser,
} from "./storage.js";

export const COOKIE_MODE = Object.freeze({ "X-Refresh-Cookie": "1" });

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

export function issuedAt(token) {
  const claims = decodeJwt(token);
  return Number(claims?.iat ?? claims?.exp ?? 0);
}

// Everything that reads or rotates the refresh cookie holds this lock, so that two tabs never
// send the same cookie (a refresh token presented twice revokes its whole family), and a tab
// always sends the cookie the previous holder's answer set.
export function cookieLock(base) {
  return `livesettings:refresh-cookie:${base}`;
}

export async function withLock(name, fn) {
  const locks = globalThis.navigator?.locks;
  return locks ? locks.request(name, fn) : fn();
}

export async function refreshRequest(base, body, { cookie, timeout }) {
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

export function baseUrl(url) {
  return String(url ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
}

// A sign-out made while the server could not be reached: the cookie still holds a live refresh
// token, so the logout is finished (with it) as soon as the server answers.
export async function finishLogout(base, store, timeout = 5000) {
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

export function sessionFromTokens(body, username, cookie = false) {
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

/** The static sign-in helpers of `LiveSettings`, which copies them onto itself. */
export class SessionStatics {
  /**
   * Sign in a built-in user; returns the session `{access_token, expires_at, user_id,
   * username}`. `cookie: true` (pages of the server's own origin) leaves the refresh token in
   * an HttpOnly cookie and remembers the user (not the tokens) for the next page load;
   * otherwise the session also holds `refresh_token`, which nothing here stores.
   */
  static async signIn({ url, username, password, cookie = false, storage } = {}) {
    return SessionStatics._auth("/v1/auth/token", { url, username, password, cookie, storage });
  }

  /** Create a built-in user and sign it in; the same options and result as `signIn`. */
  static async signUp({ url, username, password, cookie = false, storage } = {}) {
    return SessionStatics._auth("/v1/auth/signup", { url, username, password, cookie, storage });
  }

  static async _auth(path, { url, username, password, cookie, storage }) {
    const base = baseUrl(url);
    const store = openStore(storage);
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
    const store = openStore(storage);
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
    return storedUser(openStore(storage));
  }

  /** Finish a sign-out that could not reach the server; false while it still cannot. */
  static finishPendingLogout({ url, storage } = {}) {
    return finishLogout(baseUrl(url), openStore(storage));
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
    openStore(storage).remove(USER_KEY);
    forgetLegacyTokens();
  }
}

/** The token methods of `LiveSettings`, which copies them onto its prototype. */
export class TokenMethods {
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

  _api(method, path, body, headers = {}) {
    const init = { method, body, headers, timeout: this._opts.requestTimeout };
    return requestWithToken(this.url + path, init, {
      token: () => this._validToken(),
      canRenew: () => this._canRenew(),
      renew: () => this._renewToken(true),
    });
  }

}
