// How a RealtimeSettingsService receives changes: one WebSocket carrying a subscription per
// user (DESIGN §5.2: `subscribe` frames with `user_id`), or one SSE stream per user
// (`/v1/settings/events?user_id=`), with heartbeats and reconnects that resume from the last
// revision held. Timers run only while something is followed.

import { LiveSettingsError } from "./errors.js";
import { parseFrame, readEventStream } from "./http.js";

const SSE_KEEPALIVE = 15000;

/** The feed methods of `RealtimeSettingsService`, which copies them onto its prototype. */
export class FeedMethods {
  _follow(doc) {
    this._scheduleRenewal();
    this._startHeartbeat();
    if (this._mode === "sse") this._openStream(doc);
    else if (this._conn?.ready) this._subscribe(doc);
    else this._connect();
  }

  _unfollow(doc) {
    this._docs.delete(doc.userId);
    this._stopDoc(doc);
    if (this._conn?.ready) this._send({ type: "unsubscribe", user_id: doc.userId });
    if (!this._docs.size) this._stopAll();
  }

  _stopDoc(doc) {
    clearTimeout(doc.retry);
    doc.listeners.clear();
    const stream = doc.stream;
    doc.stream = null;
    stream?.ctrl.abort();
  }

  // Nothing followed (or closed): no socket, no timer keeps the process alive.
  _stopAll() {
    for (const [name, timer] of Object.entries(this._timers)) {
      clearTimeout(timer);
      clearInterval(timer);
      this._timers[name] = null;
    }
    const conn = this._conn;
    this._conn = null;
    if (conn) this._closeSocket(conn.ws, 1000);
  }

  _send(frame) {
    try {
      this._conn.ws.send(JSON.stringify(frame));
    } catch {
      this._dropConnection();
    }
  }

  _subscribe(doc) {
    doc.synced = false;
    const since = doc.settings === null ? null : doc.revision;
    this._send({ type: "subscribe", user_id: doc.userId, since });
  }

  _resync(doc) {
    if (this._mode === "sse") {
      doc.stream?.ctrl.abort(); // the stream's end reopens it from the revision held
    } else if (this._conn?.ready) {
      this._subscribe(doc);
    }
  }

  // A new token: the socket is authorised again in place; streams reopen with it.
  _tokenChanged() {
    if (this._conn?.ready) {
      this._send({ type: "auth", token: this._token, client_id: this.clientId });
    }
    if (this._mode === "sse") for (const doc of this._docs.values()) doc.stream?.ctrl.abort();
  }

  // -- the WebSocket ------------------------------------------------------------------------

  async _connect() {
    clearTimeout(this._timers.reconnect);
    if (this._closed || this._conn || this._connecting || !this._docs.size) return;
    if (this._mode === "sse") {
      for (const doc of this._docs.values()) this._openStream(doc);
      return;
    }
    this._connecting = true;
    let token;
    try {
      token = await this._validToken();
    } catch (err) {
      this._connecting = false;
      this._report(err);
      this._scheduleReconnect();
      return;
    }
    this._connecting = false;
    this._dropForbidden();
    if (this._closed || this._conn || !this._docs.size) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url.replace(/^http/, "ws") + "/v1/realtime");
    } catch (err) {
      this._report(err);
      this._scheduleReconnect();
      return;
    }
    const conn = { ws, ready: false, answered: false, lastRx: Date.now(), pingAt: null };
    this._conn = conn;
    ws.onopen = () => {
      if (conn !== this._conn) return;
      conn.ready = true;
      conn.lastRx = Date.now();
      // auth and the subscriptions may follow each other without waiting (DESIGN §5).
      this._send({ type: "auth", token, client_id: this.clientId });
      for (const doc of this._docs.values()) this._subscribe(doc);
    };
    ws.onmessage = (event) => {
      if (conn !== this._conn) return;
      conn.lastRx = Date.now();
      conn.pingAt = null;
      conn.answered = true;
      const frame = parseFrame(String(event.data));
      if (!frame) return;
      const userId = typeof frame.user_id === "string" ? frame.user_id : this._claims?.sub;
      this._onFrame(frame, this._docs.get(userId) ?? null);
    };
    ws.onclose = (event) => this._onWsClosed(conn, event.code);
    ws.onerror = () => {}; // the close event follows
  }

  _closeSocket(ws, code) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // the `ws` package throws an error event nobody listens to
    try {
      if (code !== 1000 && typeof ws.terminate === "function") ws.terminate(); // `ws`: no wait
      else ws.close(1000, "bye");
    } catch {
      // already closed
    }
  }

  // End the socket now, without waiting for a closing handshake a dead network never ends.
  _dropConnection() {
    const conn = this._conn;
    if (!conn) return;
    this._closeSocket(conn.ws, 1006);
    this._onWsClosed(conn, 1006);
  }

  _onWsClosed(conn, code) {
    if (conn !== this._conn) return;
    this._conn = null;
    for (const doc of this._docs.values()) doc.synced = false;
    if (this._closed || !this._docs.size) return;
    if (code === 4001) {
      // A fresh token, then a reconnect with backoff (a token refused again is no loop).
      this._renew()
        .then(() => this._scheduleReconnect())
        .catch((err) => this._report(err)); // a fixed token that expired: nothing to retry
      return;
    }
    if (!conn.answered && this._opts.transport === "auto") {
      this._wsFailures += 1;
      if (this._wsFailures >= 2) this._mode = "sse"; // a proxy that drops upgrades
    }
    this._scheduleReconnect(code === 4008 ? 4 : 1);
  }

  _backoff(factor = 1) {
    const { reconnectDelay, maxReconnectDelay } = this._opts;
    const ceiling = Math.min(maxReconnectDelay, reconnectDelay * 2 ** this._attempt * factor);
    this._attempt = Math.min(this._attempt + 1, 30);
    return ceiling / 2 + Math.random() * (ceiling / 2); // spread many clients' reconnects
  }

  _scheduleReconnect(factor = 1) {
    if (this._closed || !this._docs.size) return;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = setTimeout(() => this._connect(), this._backoff(factor));
  }

  // One timer for the socket's pings and the streams' keepalives.
  _startHeartbeat() {
    if (this._timers.heartbeat) return;
    const { heartbeatInterval, heartbeatTimeout } = this._opts;
    const tick = Math.max(50, Math.min(heartbeatInterval, heartbeatTimeout) / 4);
    this._timers.heartbeat = setInterval(() => {
      const now = Date.now();
      for (const doc of this._docs.values()) {
        const stream = doc.stream;
        if (stream?.open && now - stream.lastRx > SSE_KEEPALIVE + heartbeatTimeout) {
          stream.ctrl.abort();
        }
      }
      const conn = this._conn;
      if (!conn) return;
      if (!conn.ready) {
        if (now - conn.lastRx > heartbeatTimeout) this._dropConnection();
      } else if (conn.pingAt !== null) {
        if (now - conn.pingAt >= heartbeatTimeout) this._dropConnection();
      } else if (now - conn.lastRx >= heartbeatInterval) {
        conn.pingAt = now;
        this._send({ type: "ping" });
      }
    }, tick);
  }

  // -- SSE: one stream per user -------------------------------------------------------------

  async _openStream(doc) {
    if (this._closed || doc.stream || this._docs.get(doc.userId) !== doc) return;
    const stream = { ctrl: new AbortController(), open: false, lastRx: Date.now() };
    doc.stream = stream;
    let status = 0;
    try {
      const token = await this._validToken();
      this._dropForbidden();
      if (doc.stream !== stream) return;
      const query = new URLSearchParams({ user_id: doc.userId });
      if (doc.settings !== null) query.set("since", String(doc.revision));
      const response = await fetch(`${this.url}/v1/settings/events?${query}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
        signal: stream.ctrl.signal,
        cache: "no-store",
        credentials: "omit",
      });
      status = response.status;
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new LiveSettingsError(`http_${status}`, `the event stream answered ${status}`);
      }
      stream.open = true;
      await this._readStream(response.body, stream, doc);
    } catch (err) {
      if (err?.code && !String(err.code).startsWith("http_") && !stream.ctrl.signal.aborted) {
        this._report(err, doc.userId);
      }
    }
    if (doc.stream !== stream) return; // stopped, or replaced
    doc.stream = null;
    doc.synced = false;
    if (this._closed || this._docs.get(doc.userId) !== doc) return;
    const again = () => this._openStream(doc);
    if (status === 401 && this._tokenSource) {
      const retry = () => {
        if (!this._closed && this._docs.get(doc.userId) === doc) {
          doc.retry = setTimeout(again, this._backoff());
        }
      };
      this._renew().then(retry, (err) => this._report(err, doc.userId));
    } else if (status === 401 || status === 403) {
      this._report(new LiveSettingsError("forbidden", "the event stream was refused"), doc.userId);
    } else {
      doc.retry = setTimeout(again, this._backoff());
    }
  }

  _readStream(body, stream, doc) {
    return readEventStream(body, {
      onFrame: (frame) => this._onFrame(frame, doc),
      onChunk: () => {
        stream.lastRx = Date.now();
      },
      current: () => doc.stream === stream,
    });
  }
}
