// The seed's hooks: useModelSettings, useSettingsSync and useRealtimeSettings, plus
// useSyncStatus. They read the client of the nearest <LiveSettingsProvider>.

import {
  useCallback,
  useEffect,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from "react";
import { diffPatch } from "livesettings";
import { useLiveSettings } from "./context.js";
import { isRemoteSource, storeOf } from "./store.js";

const CONFLICTS_KEPT = 20;
// Callbacks are stored before any event can call them; on a server (React 18 warns about
// layout effects there) nothing is called at all.
const useCallbackEffect = typeof document === "undefined" ? useEffect : useLayoutEffect;

/** The client's status object, re-rendering on each change of it. */
export function useSyncStatus() {
  const store = storeOf(useLiveSettings());
  return useSyncExternalStore(store.subscribe, store.getStatus, store.getStatus);
}

/**
 * `{settings, updateSettings}`: the settings as shown (confirmed ones with pending edits on
 * top) and the function that edits them at once, optimistically. `updateSettings(patch)`
 * takes a merge patch (`{theme: "dark"}`, `{ai_providers: {openai: {model: "gpt-4o"}}}`, a new
 * API key as `{api_keys: {openai: "sk-…"}}`); `updateSettings(prev => next)` takes a function
 * of the current settings whose result is diffed into a merge patch. It throws the client's
 * LiveSettingsError when the edit cannot be made (an unknown field, a key while offline).
 */
export function useModelSettings() {
  const client = useLiveSettings();
  const store = storeOf(client);
  const settings = useSyncExternalStore(store.subscribe, store.getSettings, store.getSettings);
  const updateSettings = useCallback(
    (change) => {
      const patch =
        typeof change === "function"
          ? patchFromFunction(client.settings, change)
          : withoutUnchanged(client.settings, change);
      if (patch && Object.keys(patch).length) client.update(patch);
    },
    [client],
  );
  return { settings, updateSettings };
}

function patchFromFunction(current, fn) {
  const next = fn(JSON.parse(JSON.stringify(current)));
  if (next === undefined || next === null) return null;
  return withoutUnchanged(current, diffPatch(current, next));
}

// A merge patch without what would change nothing: whole-object updates
// (`{...settings, theme}`) then carry only what changed, and masked keys are never sent back.
function withoutUnchanged(current, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const result = {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === "api_keys" && value !== null && typeof value === "object") {
      const keys = {};
      for (const [name, secret] of Object.entries(value)) {
        if (secret === null || typeof secret === "string") keys[name] = secret;
      }
      if (Object.keys(keys).length) result.api_keys = keys;
    } else if (!same(current[key], value)) {
      result[key] = value;
    }
  }
  return result;
}

const same = (a, b) => a !== undefined && JSON.stringify(a) === JSON.stringify(b);

/** A message as a sentence: a capital letter at the start and a full stop at the end. */
export function asSentence(message) {
  const text = String(message ?? "").trim();
  if (!text) return null;
  const first = text[0].toUpperCase() + text.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

/**
 * Saving and its state: `{isSyncing, hasUnsavedChanges, syncError, lastSyncTime,
 * syncSettings, forceSyncFromDatabase, conflicts, dismissConflict}`. With `autoSave` (the
 * default) edits are sent `autoSaveDelay` ms after the last one; without it only
 * `syncSettings()` sends them. `settings` and `updateSettings` are the seed's arguments: the
 * client holds the settings, so they are accepted and not needed.
 */
export function useSettingsSync(settings, updateSettings, options = {}) {
  const { autoSave = true, autoSaveDelay = 1500, onConflict } = options ?? {};
  const client = useLiveSettings();
  const status = useSyncStatus();
  const [conflicts, setConflicts] = useState([]);
  const [editError, setEditError] = useState(null);
  const [actionError, setActionError] = useState(null);
  const onConflictRef = useRef(onConflict);
  useCallbackEffect(() => {
    onConflictRef.current = onConflict;
  });

  useEffect(() => {
    const before = client.autoSaveDelay;
    client.autoSaveDelay = autoSave ? autoSaveDelay : null;
    return () => {
      client.autoSaveDelay = before;
    };
  }, [client, autoSave, autoSaveDelay]);

  useEffect(() => {
    let counter = 0;
    const offConflict = client.on("conflict", (detail) => {
      counter += 1;
      const conflict = { ...detail, id: `${detail.mutationId ?? "c"}:${detail.path}:${counter}` };
      setConflicts((list) => [...list, conflict].slice(-CONFLICTS_KEPT));
      if (typeof onConflictRef.current === "function") onConflictRef.current(conflict);
    });
    const offError = client.on("error", (detail) => {
      // A refused edit is no state of the client (status.error stays); it is shown until
      // the next edit is saved.
      if (detail.mutationId || detail.path) setEditError(detail.message);
    });
    const offChange = client.on("change", (detail) => {
      if (detail.source === "ack") setEditError(null);
    });
    return () => {
      offConflict();
      offError();
      offChange();
    };
  }, [client]);

  const dismissConflict = useCallback((which) => {
    const id = typeof which === "object" && which !== null ? which.id : which;
    setConflicts((list) => list.filter((c) => c.id !== id));
  }, []);

  const syncSettings = useCallback(() => {
    setActionError(null);
    return client.saveNow();
  }, [client]);

  const forceSyncFromDatabase = useCallback(async () => {
    setActionError(null);
    try {
      return await client.refresh();
    } catch (error) {
      setActionError(error?.message ?? "the settings could not be reloaded");
      return null;
    }
  }, [client]);

  const lastSyncTime = useMemo(
    () => (status.lastSyncAt ? new Date(status.lastSyncAt) : null),
    [status.lastSyncAt],
  );
  return {
    isSyncing: status.syncing,
    hasUnsavedChanges: status.unsaved > 0,
    syncError: asSentence(status.error ?? actionError ?? editError),
    lastSyncTime,
    syncSettings,
    forceSyncFromDatabase,
    conflicts,
    dismissConflict,
  };
}

/**
 * Calls `onSettingsUpdate(settings)` on every change made elsewhere (another tab, device or
 * backend; a reload from the server) and `onApiKeysUpdate(apiKeys)` whenever the masked API
 * keys change. The callbacks are read through a ref: new functions on each render do not
 * subscribe again. Returns the cleanup function, which stops both for good; unmounting does
 * the same.
 */
export function useRealtimeSettings(options = {}) {
  const client = useLiveSettings();
  const callbacks = useRef(options ?? {});
  useCallbackEffect(() => {
    callbacks.current = options ?? {};
  });
  const stopped = useRef(false);
  const off = useRef(null);

  useEffect(() => {
    if (stopped.current) return undefined;
    const offChange = client.on("change", (detail) => {
      const fn = callbacks.current.onSettingsUpdate;
      if (isRemoteSource(detail.source) && typeof fn === "function") fn(detail.settings);
    });
    const offKeys = client.on("apiKeysChange", (detail) => {
      const fn = callbacks.current.onApiKeysUpdate;
      if (typeof fn === "function") fn(detail.apiKeys);
    });
    const stop = () => {
      offChange();
      offKeys();
    };
    off.current = stop;
    return () => {
      stop();
      if (off.current === stop) off.current = null;
    };
  }, [client]);

  return useCallback(() => {
    stopped.current = true;
    if (off.current) off.current();
    off.current = null;
  }, []);
}
