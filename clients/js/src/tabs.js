// Storage of one user's state and the other tabs of this browser: the cached settings, each
// tab's queue of pending edits, BroadcastChannel messages, tab locks and the adoption of the
// queues of tabs that are gone.

import { USER_KEY, randomId } from "./storage.js";
import { byCreation, isObject, storedEntry, validEntry } from "./state.js";

/**
 * True in a browser page, where other tabs of the same user may run. Elsewhere (Node, a
 * worker) the tab machinery stays off: Node's BroadcastChannel would link the clients of one
 * process to each other and keep the process alive.
 */
export function isBrowserPage() {
  return typeof globalThis.window === "object" && typeof globalThis.document === "object";
}

/** The storage and tab methods of `LiveSettings`, which copies them onto its prototype. */
export class TabMethods {
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
    if (this._tabs && !this._tabLocked && globalThis.navigator?.locks) return;
    const key = `${this._prefix}:queue:${this.tabId}`;
    if (!this._own.length) this._store.remove(key);
    else this._store.set(key, { tab: this.tabId, entries: this._own.map(storedEntry) });
  }

  _loadOtherQueues() {
    if (!this._tabs) return;
    const prefix = `${this._prefix}:queue:`;
    for (const key of this._store.keys(prefix)) {
      const tab = key.slice(prefix.length);
      const data = this._store.get(key);
      const entries = isObject(data) && Array.isArray(data.entries) ? data.entries : [];
      const valid = entries.filter(validEntry);
      if (valid.length && tab !== this.tabId) this._foreign.set(tab, valid);
    }
  }

  // One channel per user: tokens reach every client of the user, whatever its document; the
  // other messages name their document, and only the clients of that document heed them.
  _broadcast(message) {
    if (!this._channel || this._closed) return;
    try {
      this._channel.postMessage(this.doc ? { ...message, doc: this.doc } : message);
    } catch {
      // a closed channel: the other tabs read the queue from storage instead
    }
  }

  _broadcastOwn() {
    this._broadcast({ type: "queue", tab: this.tabId, entries: this._own.map(storedEntry) });
  }

  _onTabMessage(message) {
    if (!isObject(message) || this._closed) return;
    if (message.type !== "tokens" && (message.doc ?? null) !== this.doc) return;
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
      this._own.sort(byCreation);
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
    if (!this._tabs) return;
    if (typeof BroadcastChannel === "function") {
      this._channel = new BroadcastChannel(`${this._userPrefix}:tabs`);
      this._channel.onmessage = (event) => this._onTabMessage(event.data);
    }
    this._acquireTabLock().then((locked) => {
      if (this._closed) return;
      this._tabLocked = locked;
      this._persistOwn();
      this._adoptOrphans();
    });
    this._timers.adopt = setInterval(() => this._adoptOrphans(), 3000);
  }
}
