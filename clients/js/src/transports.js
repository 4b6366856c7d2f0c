// The connection of the browser client: a WebSocket, or the SSE event stream with writes over
// HTTP when WebSockets cannot connect; heartbeats, reconnects with backoff, and the sending of
// pending edits.

import { LiveSettingsError, SESSION_END_CODES } from "./errors.js";
import { parseFrame, readEventStream } from "./http.js";
import { Connection, byCreation } from "./state.js";

const SSE_KEEPALIVE = 15000;

/** The WebSocket class to use: the one given (the `ws` package's in Node), else the global. */
export function webSocketClass(given) {
  if (typeof given === "function") return given;
  return typeof globalThis.WebSocket === "function" ? globalThis.WebSocket : null;
}

/** The transport methods of `LiveSettings`, which copies them onto its prototype. */
export class TransportMethods {
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
      this._WebSocket &&
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
      ws = new this._WebSocket(this.url.replace(/^http/, "ws") + "/v1/realtime");
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
      const since = this._hasCache ? this._confirmed.revision : null;
      ws.send(this._frame({ type: "subscribe", since }));
      conn.ready = true;
      this._flush();
      this._refreshStatus();
    };
    ws.onmessage = (event) => {
      if (conn !== this._conn) return;
      conn.lastRx = Date.now();
      conn.pingAt = null;
      conn.answered = true;
      const frame = parseFrame(event.data);
      if (frame) this._onFrame(frame, conn);
    };
    ws.onclose = (event) => this._onClosed(conn, event.code, event.reason);
    ws.onerror = () => {}; // the close event follows (and the `ws` package throws unheard errors)
    this._startHeartbeat(conn);
  }

  async _openSse(token) {
    const conn = this._newConn("sse");
    conn.ctrl = new AbortController();
    this._conn = conn;
    this._startHeartbeat(conn);
    const query = new URLSearchParams();
    if (this._hasCache) query.set("since", String(this._confirmed.revision));
    if (this._forUser) query.set("user_id", this._forUser);
    const search = String(query) ? `?${query}` : "";
    const path = this.doc ? this._settingsPath() + "/events" : "/v1/settings/events";
    let response;
    try {
      response = await fetch(this.url + path + search, {
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
    if (this.doc && (response.status === 403 || response.status === 404)) {
      await this._streamRefused(response); // not (or no longer) a member of the team
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
    try {
      await readEventStream(response.body, {
        onFrame: (frame) => this._onFrame(frame, conn),
        onChunk: () => {
          conn.lastRx = Date.now();
        },
        current: () => conn === this._conn,
      });
    } catch {
      // aborted or the network went away: handled below
    }
    this._onClosed(conn, 1006, "the event stream ended");
  }

  // A service token acting for `userId` names the user in its frames and paths (DESIGN §4, §5);
  // a team's document is named by `doc` and by the team's routes (§11).
  _frame(frame) {
    if (this.doc) return JSON.stringify({ ...frame, doc: this.doc });
    return JSON.stringify(this._forUser ? { ...frame, user_id: this._forUser } : frame);
  }

  _settingsPath() {
    if (this.doc) return `/v1/teams/${encodeURIComponent(this.doc.slice(5))}/settings`;
    if (!this._forUser) return "/v1/settings";
    return `/v1/users/${encodeURIComponent(this._forUser)}/settings`;
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
      await response.body?.cancel(); // an unread body would hold the connection
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

  _flush() {
    const conn = this._conn;
    if (!conn || !conn.ready || this._closed) return;
    const now = Date.now();
    const due = [...this._secrets, ...this._own]
      .filter((e) => e.sealed && e.acked == null && e.sentOn == null && !(e.retryAt > now))
      .sort(byCreation);
    for (const entry of due) {
      entry.sentOn = conn.id;
      if (conn.kind === "ws") {
        try {
          conn.ws.send(
            this._frame({
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
          body = await this._api("PATCH", this._settingsPath(), entry.patch, {
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
