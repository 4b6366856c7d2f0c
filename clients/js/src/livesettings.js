// livesettings browser client: an ES module with no dependencies and no build step.
//
//   import { LiveSettings } from "/static/livesettings.js";
//   const ls = new LiveSettings({ url, token, refreshToken, autoSaveDelay: 1500 });
//   ls.addEventListener("change", (e) => render(e.detail.settings));
//   ls.set("/theme", "dark");
//
// What it keeps (DESIGN §2, §3, §5):
// - the confirmed settings and revision of the user, cached in localStorage, so that a reload
//   renders at once, also offline; the pending edits of each tab, also in localStorage, so that
//   they survive a reload and another tab can finish them (mutation ids keep them exactly once);
// - one socket per tab (WebSocket, or the SSE endpoint with HTTP writes when WebSockets cannot
//   connect), resubscribing with the cached revision after every reconnect;
// - secrets (api_keys/<name>) only in memory, only while online: never cached, queued or passed
//   to another tab;
// - tokens only in memory: never in localStorage, sessionStorage or IndexedDB. A page of the
//   server's own origin uses the cookie mode (`refreshCookie: true`, as the settings page does):
//   the refresh token is an HttpOnly, SameSite=Strict cookie scoped to /v1/auth that no script
//   can read, and each tab gets its own access token from it, one tab at a time (Web Lock).
//   With a `refreshToken` given by the app, the rotated pair stays in memory, is passed to the
//   other tabs of the user over BroadcastChannel, and is told by the `tokens` event.
//
// The client is a few modules around a pure state core, served as they are (no build step):
// errors.js (the error and its code groups), state.js (the document, merge patches, paths:
// no I/O), storage.js (localStorage, ids), http.js (requests), session.js (tokens, the refresh
// cookie, sign-in), tabs.js (other tabs: queues, BroadcastChannel, tab locks), transports.js
// (WebSocket, SSE and HTTP writes), teams.js (team documents, roles, the team methods),
// client.js (the LiveSettings class), and service.js with service_feeds.js (the seed's
// realtimeSettingsService for backends). This module is the entry point and re-exports what
// they offer. The same files are the npm package `livesettings`
// (clients/js), which also runs on Node >= 20 (pass the `ws` package's WebSocket, or SSE).

export { LiveSettings } from "./client.js";
export { LiveSettingsError } from "./errors.js";
export { decodeJwt } from "./session.js";
export {
  Connection,
  DEFAULT_OPTIONS,
  FIELDS,
  applyPatch,
  diffPatch,
  getAt,
  parsePath,
  toPointer,
} from "./state.js";
export { RealtimeSettingsService, createRealtimeSettingsService } from "./service.js";
export { SESSION_KEY, USER_KEY } from "./storage.js";
export { canWrite } from "./teams.js";
