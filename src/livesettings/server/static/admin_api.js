// The admin page's session and its calls to /v1/admin/…, on the browser client's own session
// code (session.js, http.js): the same sign-in as the settings page, the refresh token as the
// HttpOnly cookie (renewed one tab at a time under its Web Lock), the access token in memory
// only. No token is ever stored.

import { LiveSettingsError } from "./errors.js";
import { request, requestWithToken } from "./http.js";
import {
  COOKIE_MODE,
  SessionStatics,
  baseUrl,
  cookieLock,
  decodeJwt,
  refreshRequest,
  withLock,
} from "./session.js";
import { USER_KEY, openStore, storedUser } from "./storage.js";

const TIMEOUT_MS = 10000;
const RENEW_BEFORE_MS = 15000; // renew an access token this long before it expires…
const RENEW_BEFORE_SHARE = 0.25; // …or this share of its lifetime, when that is shorter

/** The signed-in admin (or not: the server answers 403 then) and the API calls of the page. */
export class AdminApi {
  constructor() {
    this.base = baseUrl();
    this.session = null; // {access_token, expires_at, user_id, username}
    this._renewing = null;
  }

  get signedIn() {
    return this.session !== null;
  }

  get username() {
    return this.session?.username ?? this.session?.user_id ?? "";
  }

  /** Sign in with the settings page's form fields; throws LiveSettingsError. */
  async signIn(username, password) {
    this.session = await SessionStatics.signIn({ username, password, cookie: true });
    return this.session;
  }

  /** The session the refresh cookie still holds (a sign-in on / or /admin), or null. */
  async resume() {
    if (!SessionStatics.signedInUser()) return null;
    try {
      this.session = await SessionStatics.resumeSession();
    } catch {
      this.session = null; // offline: the sign-in form says so when used
    }
    return this.session;
  }

  /** End the session on the server (the cookie is cleared) and forget the user here. */
  async signOut() {
    const session = this.session;
    this.session = null;
    if (!session) return;
    try {
      await request(this.base + "/v1/auth/logout", {
        method: "POST",
        token: session.access_token,
        headers: COOKIE_MODE,
        credentials: "same-origin",
        timeout: 5000,
      });
    } catch {
      // already ended, or offline: the cookie expires by itself
    }
    const store = openStore();
    if (storedUser(store)?.user_id === session.user_id) store.remove(USER_KEY);
  }

  get(path) {
    return this._call("GET", path);
  }

  post(path, body) {
    return this._call("POST", path, body);
  }

  delete(path) {
    return this._call("DELETE", path);
  }

  _call(method, path, body) {
    return requestWithToken(
      this.base + path,
      { method, body, timeout: TIMEOUT_MS },
      {
        token: () => this._token(),
        canRenew: () => this.session !== null,
        renew: () => this._renew(),
      },
    );
  }

  async _token() {
    if (!this.session) throw new LiveSettingsError("session_expired", "sign in again");
    const claims = decodeJwt(this.session.access_token) ?? {};
    const exp = Number(this.session.expires_at ?? claims.exp ?? 0);
    // A short-lived token is not renewed on every call: never before three quarters of it.
    const lifetime = Number.isFinite(claims.iat) && exp ? (exp - claims.iat) * 1000 : Infinity;
    const lead = Math.min(RENEW_BEFORE_MS, lifetime * RENEW_BEFORE_SHARE);
    if (exp && exp * 1000 - Date.now() < lead) await this._renew();
    return this.session.access_token;
  }

  // One renewal at a time, from the refresh cookie under the client's lock (a refresh token
  // presented twice would revoke its whole family, the settings page's tabs included).
  _renew() {
    if (!this._renewing) {
      const asked = this.session;
      this._renewing = withLock(cookieLock(this.base), () =>
        refreshRequest(this.base, {}, { cookie: true, timeout: TIMEOUT_MS }),
      )
        .then((body) => {
          if (this.session !== asked || !asked) return;
          if (body.user_id !== asked.user_id) {
            this.session = null;
            throw new LiveSettingsError("signed_out", "another user signed in on this browser");
          }
          this.session = { ...asked, access_token: body.access_token, expires_at: body.expires_at };
        })
        .catch((err) => {
          if (err.code === "session_expired") this.session = null;
          throw err;
        })
        .finally(() => {
          this._renewing = null;
        });
    }
    return this._renewing;
  }
}
