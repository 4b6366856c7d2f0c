// The operator dashboard at /admin: sign-in (the settings page's session code), live charts
// of GET /v1/admin/stats every second, the nodes, users and teams with their actions, and the
// audit lines. No inline script or style (CSP); no build step.

import { AdminApi } from "./admin_api.js";
import { Charts } from "./admin_charts.js";
import { renderAudit, renderNodes, renderTeams, renderUsers } from "./admin_tables.js";

const STATS_EVERY_MS = 1000;
const AUDIT_EVERY_MS = 5000;
const SEARCH_LIMIT = 50;
const SESSION_ENDED = new Set(["session_expired", "signed_out", "unauthorized", "invalid_token"]);

const $ = (id) => document.getElementById(id);
const api = new AdminApi();

let charts = null;
let running = false; // the dashboard is shown and polling
let statsTimer = null;
let auditTimer = null;
let lastNow = null; // the server's clock of the last stats answer

// -- views ------------------------------------------------------------------------------------

function showSignIn(message = "") {
  stopDashboard();
  $("dashboard").hidden = true;
  $("denied").hidden = true;
  $("session-bar").hidden = true;
  $("signin").hidden = false;
  if (message) $("signin-message").textContent = message;
  $("username").focus();
}

function showDenied() {
  stopDashboard();
  $("signin").hidden = true;
  $("dashboard").hidden = true;
  $("denied").hidden = false;
  $("session-bar").hidden = false;
  $("signed-in-as").textContent = api.username;
  $("denied-message").textContent =
    `${api.username} is not an admin: the server refused the dashboard's data (403).`;
}

function showDashboard() {
  $("signin").hidden = true;
  $("denied").hidden = true;
  $("dashboard").hidden = false;
  $("session-bar").hidden = false;
  $("signed-in-as").textContent = api.username;
  if (!charts) {
    charts = new Charts($("charts"));
    // Read-only for the console and the browser tests: each chart's uPlot data.
    globalThis.__adminCharts = Object.freeze({ snapshot: () => charts?.snapshot() ?? {} });
  }
  if (running) return;
  running = true;
  pollStats();
  pollAudit();
  search($("search").value);
}

function stopDashboard() {
  running = false;
  clearTimeout(statsTimer);
  clearTimeout(auditTimer);
  if (charts) charts.destroy();
  charts = null;
}

/** An API failure: back to the sign-in when the session ended, "not an admin" on 403. */
function onApiError(err, where) {
  if (err.status === 403) {
    showDenied();
    return true;
  }
  if (err.status === 401 || SESSION_ENDED.has(err.code)) {
    showSignIn("Your session has ended: sign in again.");
    return true;
  }
  if (where) where.textContent = err.code === "offline" ? "The server cannot be reached." : err.message;
  return false;
}

// -- polling ------------------------------------------------------------------------------------

async function pollStats() {
  if (!running) return;
  const since = charts.series.since;
  try {
    const stats = await api.get(since === null ? "/v1/admin/stats" : `/v1/admin/stats?since=${since}`);
    if (!running) return;
    lastNow = stats.now ?? null;
    charts.update(stats);
    renderNodes($("nodes-body"), stats);
    $("charts-node").textContent =
      `Node ${stats.node_id} (version ${stats.version}), one point a second.`;
    $("stats-status").textContent = "";
  } catch (err) {
    if (onApiError(err, $("stats-status"))) return;
  }
  if (running) statsTimer = setTimeout(pollStats, STATS_EVERY_MS);
}

async function pollAudit() {
  if (!running) return;
  await loadAudit();
  if (running) auditTimer = setTimeout(pollAudit, AUDIT_EVERY_MS);
}

async function loadAudit() {
  try {
    const body = await api.get("/v1/admin/audit");
    if (!running) return;
    renderAudit($("audit-body"), Array.isArray(body.lines) ? body.lines : []);
    $("audit-error").textContent = "";
  } catch (err) {
    onApiError(err, $("audit-error"));
  }
}

// -- users and teams ------------------------------------------------------------------------------

async function search(query) {
  const q = encodeURIComponent(query.trim());
  $("people-error").textContent = "";
  try {
    const [users, teams] = await Promise.all([
      api.get(`/v1/admin/users?q=${q}&limit=${SEARCH_LIMIT}`),
      api.get(`/v1/admin/teams?q=${q}&limit=${SEARCH_LIMIT}`),
    ]);
    if (!running) return;
    const userRows = Array.isArray(users.users) ? users.users : [];
    const teamRows = Array.isArray(teams.teams) ? teams.teams : [];
    renderUsers($("users-body"), userRows, onUserAction, toMs(lastNow));
    renderTeams($("teams-body"), teamRows);
    $("users-count").textContent = `(${userRows.length}${userRows.length === SEARCH_LIMIT ? "+" : ""})`;
    $("teams-count").textContent = `(${teamRows.length}${teamRows.length === SEARCH_LIMIT ? "+" : ""})`;
  } catch (err) {
    onApiError(err, $("people-error"));
  }
}

function toMs(seconds) {
  return typeof seconds === "number" ? seconds * 1000 : Date.now();
}

/** Ask in the page's <dialog>; resolves true only for Confirm. */
function confirmAction(title, text) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

async function onUserAction(kind, user) {
  const name = user.username ?? user.user_id;
  const id = encodeURIComponent(user.user_id);
  const confirmed =
    kind === "revoke"
      ? await confirmAction(
          "Revoke sessions",
          `Sign ${name} out everywhere? Their refresh tokens and access tokens stop working and ` +
            "their open connections close. They can sign in again.",
        )
      : await confirmAction(
          "Remove user",
          `Remove ${name} for good? Their settings, secrets, change history, team memberships ` +
            "and sessions are deleted. This cannot be undone.",
        );
  if (!confirmed) {
    $("people-message").textContent = "Nothing was changed.";
    return;
  }
  try {
    if (kind === "revoke") {
      await api.post(`/v1/admin/users/${id}/revoke`);
      $("people-message").textContent = `The sessions of ${name} are revoked.`;
    } else {
      await api.delete(`/v1/admin/users/${id}`);
      $("people-message").textContent = `${name} is removed.`;
    }
  } catch (err) {
    onApiError(err, $("people-error"));
    return;
  }
  await Promise.all([search($("search").value), loadAudit()]);
}

// -- wiring --------------------------------------------------------------------------------------

function wire() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      $("signin-error").textContent = "Enter a username and a password.";
      return;
    }
    $("signin-error").textContent = "";
    $("signin-submit").disabled = true;
    try {
      await api.signIn(username, password);
      $("password").value = "";
      showDashboard();
    } catch (err) {
      $("signin-error").textContent =
        err.code === "offline" ? "The server cannot be reached: try again when it is up." : err.message;
    } finally {
      $("signin-submit").disabled = false;
    }
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("people-message").textContent = "";
    search($("search").value);
  });
  const signOut = async () => {
    stopDashboard();
    await api.signOut();
    showSignIn("You are signed out.");
  };
  $("sign-out").addEventListener("click", signOut);
  $("denied-sign-out").addEventListener("click", signOut);
}

async function boot() {
  wire();
  // Signed in on this browser already (here or on the settings page): the refresh cookie
  // gives this tab its own access token.
  if (await api.resume()) showDashboard();
  else showSignIn();
}

boot();
