// The HTTP transport of the clients: a JSON request with a timeout, the server's error body
// turned into a LiveSettingsError (`offline` when the server cannot be reached), a request
// that renews its token once on a 401, and the reading of the SSE event stream.

import { LiveSettingsError } from "./errors.js";
import { isObject } from "./state.js";

async function readError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const error = body && isObject(body.error) ? body.error : null;
  const code = error && typeof error.code === "string" ? error.code : `http_${response.status}`;
  const message =
    error && typeof error.message === "string"
      ? error.message
      : `the server answered ${response.status} ${response.statusText}`.trim();
  return new LiveSettingsError(code, message, {
    status: response.status,
    details: error ? (error.details ?? null) : null,
  });
}

export async function request(
  url,
  { method = "GET", token = null, body, headers = {}, timeout = 15000, credentials = "omit" },
) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const all = { Accept: "application/json", ...headers };
  if (token) all.Authorization = `Bearer ${token}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
      credentials, // "same-origin" only for the refresh cookie (Path=/v1/auth)
    });
  } catch (err) {
    throw new LiveSettingsError("offline", "the server cannot be reached", {
      details: { reason: String(err && err.name) },
    });
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) throw await readError(response);
  if (response.status === 204) return null;
  return response.json();
}

/**
 * `request` with the token `auth.token()` gives; a 401 renews it once (`auth.renew()`, when
 * `auth.canRenew()`) and the request is made again.
 */
export async function requestWithToken(url, init, auth) {
  const call = async () => request(url, { ...init, token: await auth.token() });
  try {
    return await call();
  } catch (err) {
    if (err.status !== 401 || !auth.canRenew()) throw err;
    await auth.renew();
    return call();
  }
}

/** A frame of the server (a JSON object), or null for anything else. */
export function parseFrame(text) {
  try {
    const frame = JSON.parse(text);
    return isObject(frame) ? frame : null;
  } catch {
    return null;
  }
}

/**
 * Reads an event stream's body: `onFrame(frame)` for each event whose `data` is a frame,
 * `onChunk()` for every chunk received (a sign of life), until the body ends or `current()`
 * says the stream was stopped or replaced. A failed read (an abort, the network) throws.
 */
export async function readEventStream(body, { onFrame, onChunk, current }) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || !current()) return;
      onChunk();
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        buffer = buffer.slice(end + 2);
        const frame = data ? parseFrame(data) : null;
        if (frame) onFrame(frame);
        if (!current()) return;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
