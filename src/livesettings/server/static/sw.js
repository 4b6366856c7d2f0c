// livesettings service worker, served at /sw.js so that its scope covers the page at /.
//
// It keeps the page and the browser client (the "shell") so that a reload works with no
// network. Network first: a fresh copy whenever the server answers, the cached one when it
// does not (or not within a few seconds: a dead network can leave a request hanging).
// API calls (/v1/...) are never intercepted nor cached: settings are cached by the client
// itself (without secrets), per user.

const CACHE = "livesettings-shell-v1";
const SHELL = [
  "/",
  "/static/app.js",
  "/static/labels.js",
  "/static/dom.js",
  "/static/doc_switcher.js",
  "/static/teams_panel.js",
  "/static/livesettings.js",
  // the modules livesettings.js re-exports from
  "/static/client.js",
  "/static/errors.js",
  "/static/http.js",
  "/static/session.js",
  "/static/state.js",
  "/static/storage.js",
  "/static/tabs.js",
  "/static/teams.js",
  "/static/transports.js",
  "/static/service.js",
  "/static/service_feeds.js",
  "/static/styles.css",
  "/static/icon.svg",
];
const NETWORK_TIMEOUT_MS = 4000;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "no-cache" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith("livesettings-") && name !== CACHE)
            .map((name) => caches.delete(name)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  let key = null;
  if (request.mode === "navigate" && url.pathname === "/") key = "/";
  else if (SHELL.includes(url.pathname) && url.pathname !== "/") key = url.pathname;
  if (key === null) return;
  event.respondWith(networkFirst(event, request, key));
});

async function networkFirst(event, request, key) {
  const cache = await caches.open(CACHE);
  // No RequestInit here: a navigation request cannot be copied with one (its mode would be
  // rewritten, or older engines throw), and a throw would serve the cached page forever.
  const network = fetch(request).then((response) => {
    if (response.ok && response.type === "basic") {
      const stored = cache.put(key, response.clone()).catch(() => {});
      // The worker may be stopped once it has answered: keep it until the copy is stored.
      // (After a timeout the page was answered already and waitUntil may throw.)
      try {
        event.waitUntil(stored);
      } catch {
        // the copy is stored all the same, if the worker lives long enough
      }
    }
    return response;
  });
  const timeout = new Promise((resolve) => {
    setTimeout(() => resolve(null), NETWORK_TIMEOUT_MS);
  });
  try {
    const response = await Promise.race([network, timeout]);
    if (response) return response;
  } catch {
    // offline or the server is down: the cached copy below
  }
  const cached = await cache.match(key, { ignoreSearch: true });
  if (cached) return cached;
  return network; // nothing cached: the network's own answer or failure
}
