// Storage of the browser client: localStorage with JSON values (in memory when storage is
// disabled), the keys it uses, ids, and the removal of what older versions stored.

import { isObject } from "./state.js";

export const PREFIX = "livesettings:v1";

/** localStorage key of the signed-in user in cookie mode: `{user_id, username}`, no token. */
export const USER_KEY = "livesettings:user";

/** The key older versions kept the whole session (tokens included) under; removed on load. */
export const SESSION_KEY = "livesettings:session";
export const LOGOUT_PENDING_KEY = "livesettings:logout-pending";
const LEGACY_IDB = "livesettings"; // older versions' IndexedDB copy of the session

/**
 * The prefix of the keys of one user's document: `livesettings:v1:<user>` for their own,
 * `livesettings:v1/team:<id>:<user>` for a team's, so that no key (nor a prefix that lists or
 * forgets them, such as `forgetCache({all: true})`) of one document reaches another's.
 */
export function documentPrefix(userId, doc) {
  const user = encodeURIComponent(userId);
  return doc ? `${PREFIX}/${doc}:${user}` : `${PREFIX}:${user}`;
}

/** A random id such as "m-3f9a…" (mutation ids, client ids, tab ids). */
export function randomId(prefix) {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
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
export class Store {
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

/** The store over `storage`, or over this page's localStorage when it is not given. */
export function openStore(storage) {
  const chosen = storage === undefined ? defaultStorage() : storage;
  return new Store(chosen);
}

// Older versions kept the session, tokens included, in localStorage and IndexedDB.
let legacyCleared = false;

export function forgetLegacyTokens() {
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

/** Once per page: what older versions stored goes. */
export function forgetLegacyTokensOnce() {
  if (!legacyCleared) forgetLegacyTokens();
}

/** The signed-in user of cookie mode, `{user_id, username}`, or null. */
export function storedUser(store) {
  const user = store.get(USER_KEY);
  return isObject(user) && typeof user.user_id === "string" && user.user_id ? user : null;
}
