// The HTTP transport of the browser client: a JSON request with a timeout, and the server's
// error body turned into a LiveSettingsError (`offline` when the server cannot be reached).

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
