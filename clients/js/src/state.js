// The pure state core of the browser client: the document's shape, merge patches (RFC 7386
// with the document's rules, DESIGN §2), paths and pending edits. No I/O, no clock, no
// randomness: tests/test_patch_vectors.py runs it under node against the same vectors as
// livesettings.document.

import { LiveSettingsError } from "./errors.js";

/** The top-level fields of a settings document. */
export const FIELDS = Object.freeze(["theme", "language", "preferences", "ai_providers", "api_keys"]);

export const DEFAULTS = Object.freeze({
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

export const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const copy = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
export const isSecretPath = (path) => path.length >= 2 && path[0] === "api_keys";

// Plain assignment of "__proto__" would change the object's prototype instead.
export function put(target, key, value) {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export function hasSet(patch) {
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
export function composePatches(a, b, path = []) {
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
export function removePath(patch, path) {
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

export function patchAt(path, value) {
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

export function normalise(settings) {
  const out = {};
  for (const field of FIELDS) {
    const value = isObject(settings) && Object.hasOwn(settings, field) ? settings[field] : null;
    out[field] = value === null || value === undefined ? copy(DEFAULTS[field]) : copy(value);
  }
  return out;
}

/** What a client may show of a secret before the server answers (DESIGN §2). */
export function maskLocally(secret) {
  const masked = { set: true, pending: true };
  if (secret.length >= 12) masked.last4 = secret.slice(-4);
  return masked;
}

/** The order pending edits apply in: creation time, then sequence. */
export const byCreation = (a, b) => a.created - b.created || a.seq - b.seq;

/** What of a pending edit is stored and passed to other tabs. */
export function storedEntry(entry) {
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

export function validEntry(entry) {
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
