// The tables of the admin page: nodes, users, teams and the audit lines, built with DOM calls
// (never innerHTML: every value comes from the server and is shown as text).

/** A time the server sent (unix seconds or milliseconds, or an ISO string) as a Date, or null. */
export function toDate(value) {
  if (value == null || value === "") return null;
  if (typeof value === "number" && Number.isFinite(value)) {
    return new Date(value > 1e12 ? value : value * 1000);
  }
  const parsed = Date.parse(String(value));
  return Number.isNaN(parsed) ? null : new Date(parsed);
}

/** "2026-12-07 11:42:05" in the browser's time zone, or "—". */
export function formatTime(value) {
  const date = toDate(value);
  if (!date) return "—";
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** "4 s ago", "3 min ago", "2 h ago" between two times (`now` the server's, against skew). */
export function age(value, now = Date.now()) {
  const date = toDate(value);
  const reference = toDate(now) ?? new Date();
  if (!date) return "—";
  const seconds = Math.max(0, Math.round((reference - date) / 1000));
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function count(value) {
  return typeof value === "number" ? value.toLocaleString("en") : value == null ? "—" : String(value);
}

/** One row per node of `stats.nodes`: heartbeat age, version, connections, bus lag, stale. */
export function renderNodes(tbody, stats) {
  const nodes = Array.isArray(stats.nodes) ? stats.nodes : [];
  const rows = nodes.map((node) => {
    const tr = document.createElement("tr");
    tr.dataset.node = String(node.node_id);
    if (node.stale) tr.className = "stale";
    const name = cell(node.node_id, "mono");
    if (node.self) {
      const mark = document.createElement("span");
      mark.className = "badge";
      mark.textContent = "this node";
      name.append(" ", mark);
    }
    const state = cell(node.stale ? "stale" : "live", node.stale ? "state-bad" : "state-ok");
    tr.append(
      name,
      cell(node.version),
      cell(formatTime(node.started_at), "nowrap"),
      cell(age(node.heartbeat_at, stats.now)),
      cell(count(node.connections), "num"),
      cell(typeof node.bus_lag_ms === "number" ? `${Math.round(node.bus_lag_ms)} ms` : "—", "num"),
      state,
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/**
 * One row per user, with its Revoke sessions and Remove user buttons; `onAction(kind, user)`
 * is called on a click (kind "revoke" or "remove"). Shown: counts, last seen, revision.
 */
export function renderUsers(tbody, users, onAction, now = Date.now()) {
  const rows = users.map((user) => {
    const tr = document.createElement("tr");
    tr.dataset.userId = String(user.user_id);
    const name = cell(user.username ?? "(identity provider)");
    if (user.admin) {
      const mark = document.createElement("span");
      mark.className = "badge";
      mark.textContent = "admin";
      name.append(" ", mark);
    }
    const teams = Array.isArray(user.teams) ? user.teams.length : user.teams;
    const seen = user.connections > 0 ? "connected now" : user.last_seen ? age(user.last_seen, now) : "never";
    const actions = document.createElement("td");
    actions.className = "row-actions";
    for (const [kind, text] of [
      ["revoke", "Revoke sessions"],
      ["remove", "Remove user"],
    ]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = kind === "remove" ? "danger" : "";
      button.dataset.action = kind;
      // The visible words first: the accessible name is "Revoke sessions of alice".
      const who = document.createElement("span");
      who.className = "visually-hidden";
      who.textContent = ` of ${user.username ?? user.user_id}`;
      button.append(text, who);
      button.addEventListener("click", () => onAction(kind, user));
      actions.append(button);
    }
    tr.append(
      name,
      cell(user.user_id, "mono"),
      cell(count(teams), "num"),
      cell(count(user.connections), "num"),
      cell(count(user.revision), "num"),
      cell(seen, "nowrap"),
      cell(formatTime(user.updated_at), "nowrap"),
      cell(formatTime(user.created_at), "nowrap"),
      actions,
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/** One row per team: name, id, member count, revision, creation time. */
export function renderTeams(tbody, teams) {
  const rows = teams.map((team) => {
    const tr = document.createElement("tr");
    tr.dataset.teamId = String(team.team_id);
    const members = Array.isArray(team.members) ? team.members.length : team.members;
    tr.append(
      cell(team.name),
      cell(team.team_id, "mono"),
      cell(count(members), "num"),
      cell(count(team.revision), "num"),
      cell(formatTime(team.created_at), "nowrap"),
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/** The audit lines, newest first: time, event, and the line's other fields as key=value. */
export function renderAudit(tbody, lines) {
  const time = (line) => toDate(line.ts)?.getTime() ?? 0;
  // Newest first, whatever order the server keeps them in (a stable sort keeps equal times).
  const rows = [...lines].sort((a, b) => time(b) - time(a)).map((line) => {
    const tr = document.createElement("tr");
    const details = Object.entries(line)
      .filter(([key]) => key !== "ts" && key !== "event")
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join(" ");
    tr.append(cell(formatTime(line.ts), "nowrap"), cell(line.event), cell(details, "mono details"));
    return tr;
  });
  tbody.replaceChildren(...rows);
}
