// The provider: one LiveSettings client for the components below it.

import { createContext, createElement, useContext, useEffect, useRef, useState } from "react";
import { LiveSettings, LiveSettingsError, decodeJwt } from "livesettings";

/** The client of the nearest provider (null outside one). */
export const LiveSettingsContext = createContext(null);

/**
 * Provides a LiveSettings client to the hooks and components below it: the one given as
 * `client` (left open on unmount: its owner closes it), or one created from the options
 * (`url`, `token`, `refreshToken`, `userId`, `autoSaveDelay`, and any other LiveSettings
 * option such as `storage` or `transport`), closed on unmount.
 *
 * With a function `token` and no `userId`, the user is the `sub` of the first token the
 * function gives (the client is created once it has answered).
 *
 * `doc` ("team:<team_id>") makes the client follow that team's document instead of the user's
 * own (null or left out); the hooks below then read and edit the team's settings, and
 * `useRole()` gives the user's role in it.
 *
 * The created client is made again when `url`, `userId`, `refreshToken` or `doc` change, or
 * when a string `token` changes. A function `token` is read through a ref: a new function on each
 * render neither re-creates the client nor loses the latest one. Other options are read
 * when the client is created; `autoSaveDelay` is applied to the client when it changes.
 * `fallback` is rendered until the client exists (the first commit).
 */
export function LiveSettingsProvider(props) {
  const {
    client: given,
    children,
    fallback = null,
    url,
    token,
    refreshToken,
    userId,
    autoSaveDelay,
    doc = null,
    ...options
  } = props;
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const delayRef = useRef(autoSaveDelay);
  delayRef.current = autoSaveDelay;
  const [created, setCreated] = useState(null);
  const tokenKey = typeof token === "function" ? "(function)" : (token ?? null);

  useEffect(() => {
    if (given) return undefined;
    let client = null;
    let cancelled = false;
    const make = (knownUserId) => {
      const source = tokenRef.current;
      try {
        client = new LiveSettings({
          ...optionsRef.current,
          url,
          userId: knownUserId,
          refreshToken,
          doc,
          token: typeof source === "function" ? () => callToken(tokenRef.current) : source,
          ...(delayRef.current !== undefined ? { autoSaveDelay: delayRef.current } : {}),
        });
      } catch (error) {
        setCreated({ error });
        return;
      }
      setCreated({ client });
    };
    if (typeof tokenRef.current === "function" && !userId) {
      // The user is the `sub` of the first token the function gives.
      userOfToken(tokenRef.current).then(
        (sub) => cancelled || make(sub),
        (error) => cancelled || setCreated({ error }),
      );
    } else {
      make(userId);
    }
    return () => {
      cancelled = true;
      if (!client) return;
      const closing = client;
      closing.close();
      setCreated((current) => (current?.client === closing ? null : current));
    };
  }, [given, url, userId, refreshToken, tokenKey, doc]);

  const client = given ?? created?.client ?? null;
  const applied = useRef(autoSaveDelay);
  useEffect(() => {
    // Only a change of the prop: on mount the client has it already, and a useSettingsSync
    // below (whose effects run first) sets its own delay.
    if (!client || applied.current === autoSaveDelay) return;
    applied.current = autoSaveDelay;
    client.autoSaveDelay = autoSaveDelay === undefined ? 1500 : autoSaveDelay;
  }, [client, autoSaveDelay]);

  if (!given && created?.error) throw created.error; // to the nearest error boundary
  if (!client) return fallback;
  return createElement(LiveSettingsContext.Provider, { value: client }, children);
}

async function userOfToken(source) {
  const token = await callToken(source);
  const sub = typeof token === "string" ? decodeJwt(token)?.sub : null;
  if (!sub) {
    throw new LiveSettingsError(
      "invalid_options",
      "the token function gave no JWT with a `sub`: give the provider a `userId`",
    );
  }
  return sub;
}

function callToken(source) {
  if (typeof source === "function") return source();
  return Promise.resolve(source);
}

/** The LiveSettings client of the nearest `<LiveSettingsProvider>`; throws outside one. */
export function useLiveSettings() {
  const client = useContext(LiveSettingsContext);
  if (!client) {
    throw new Error("livesettings-react: use this hook inside a <LiveSettingsProvider>");
  }
  return client;
}
