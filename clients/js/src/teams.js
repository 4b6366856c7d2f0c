// Team documents (DESIGN §11): the document key `team:<team_id>`, what each role may write
// (`canWrite`), the team methods of `LiveSettings` (teams, members, effective settings: they
// act as the token's user), and what a client of a team document does with the server's
// `membership` frames and with the end of its document (the user was removed, or never was a
// member).

import { LiveSettingsError } from "./errors.js";
import { Connection, isObject, parsePath } from "./state.js";

/** The roles of a team, from the most to the least able. */
export const TEAM_ROLES = Object.freeze(["owner", "admin", "member", "viewer"]);

const TEAM_PREFIX = "team:";
const DOC_PATTERN = /^team:[0-9a-fA-F-]{1,64}$/;
// Answers about a team document as a whole (no mutation id) that end it for this client.
const DOC_END_CODES = new Set(["forbidden", "not_found"]);

/**
 * Whether `role` may write the field at `path` ("/api_keys/openai", "theme", an array):
 * `{ok: true}`, or `{ok: false, reason}` with a sentence for the user. Viewers write nothing,
 * members everything but `api_keys`, admins and owners everything. A null role (the user's
 * own document, or a role not known yet) may write everything: the server decides.
 */
export function canWrite(role, path = []) {
  if (role === null || role === undefined || role === "owner" || role === "admin") {
    return { ok: true };
  }
  if (role === "viewer") {
    return { ok: false, reason: "viewers of this team can read its settings, not change them" };
  }
  if (role === "member") {
    const field = parsePath(path)[0];
    if (field === "api_keys" || field === undefined) {
      return { ok: false, reason: "only the team's admins and owners can set its API keys" };
    }
    return { ok: true };
  }
  return { ok: false, reason: `the role ${JSON.stringify(role)} is not a team role` };
}

/**
 * The document key of a `doc` option: null for the user's own document, else `team:<id>`.
 * A team's document is followed by a member's token, never a service token's.
 */
export function documentKey(doc, claims = null) {
  if (doc === undefined || doc === null || doc === "") return null;
  if (typeof doc !== "string" || !DOC_PATTERN.test(doc)) {
    throw new LiveSettingsError("invalid_options", 'doc must be "team:<team_id>" (or null)');
  }
  if (claims?.role === "service") {
    throw new LiveSettingsError("invalid_options", "a team's document is followed by a member");
  }
  return doc.toLowerCase();
}

/** A team id, given as the id or as its document key `team:<id>`. */
function teamIdOf(teamId) {
  const text = typeof teamId === "string" ? teamId : "";
  const id = text.startsWith(TEAM_PREFIX) ? text.slice(TEAM_PREFIX.length) : text;
  if (!id || id.length > 64) {
    throw new LiveSettingsError("invalid", "a team id is a non-empty string");
  }
  return encodeURIComponent(id);
}

/** The team methods of `LiveSettings`, which copies them onto its prototype. */
export class TeamMethods {
  /** The caller's role in this client's team document once known; null otherwise. */
  get role() {
    return this._role ?? null;
  }

  /** The caller's teams, each with the caller's role: [{team_id, name, role, created_at}]. */
  async listTeams() {
    const body = await this._api("GET", "/v1/teams");
    const teams = Array.isArray(body?.teams) ? body.teams : [];
    if (this.doc !== null) {
      const mine = teams.find((t) => TEAM_PREFIX + t.team_id === this.doc);
      if (mine) this._setRole(mine.role);
    }
    return teams;
  }

  /** Create a team, of which the caller is the owner. */
  createTeam(name) {
    return this._api("POST", "/v1/teams", { name });
  }

  /** Delete a team, its document and its secrets (owners only). */
  async deleteTeam(teamId) {
    await this._api("DELETE", `/v1/teams/${teamIdOf(teamId)}`);
  }

  /** The team's members: [{user_id, role, username, added_at}]. */
  async listMembers(teamId) {
    const body = await this._api("GET", `/v1/teams/${teamIdOf(teamId)}/members`);
    return Array.isArray(body?.members) ? body.members : [];
  }

  /**
   * Add a member or change their role, named by `userId` or by `username` (a built-in
   * user's); resolves to the members as they are then.
   */
  async setMember(teamId, { userId, username, role } = {}) {
    const who = userId ?? username;
    if (typeof who !== "string" || !who) {
      throw new LiveSettingsError("invalid", "setMember needs a userId or a username");
    }
    const body = userId ? { role } : { username, role };
    const path = `/v1/teams/${teamIdOf(teamId)}/members/${encodeURIComponent(who)}`;
    const answer = await this._api("PUT", path, body);
    return Array.isArray(answer?.members) ? answer.members : [];
  }

  /** Remove a member (admins and owners; anyone may remove themselves). */
  async removeMember(teamId, userId) {
    if (typeof userId !== "string" || !userId) {
      throw new LiveSettingsError("invalid", "removeMember needs a userId");
    }
    const path = `/v1/teams/${teamIdOf(teamId)}/members/${encodeURIComponent(userId)}`;
    await this._api("DELETE", path);
  }

  /** Leave a team (the last owner cannot: 409 `last_owner`). */
  leaveTeam(teamId) {
    this._ownUserOnly("leaveTeam");
    return this.removeMember(teamId, this.userId);
  }

  /**
   * What the caller sees inside a team (this client's team when `teamId` is left out): their
   * own value over the team's over the default; {settings, team_id, team_revision, revision}.
   */
  effectiveSettings(teamId = this.doc) {
    if (teamId === null) {
      throw new LiveSettingsError("invalid", "effectiveSettings needs a team id");
    }
    return this._api("GET", `/v1/settings/effective?team=${teamIdOf(teamId)}`);
  }

  // -- this client's team document --------------------------------------------------------

  _setRole(role) {
    const next = TEAM_ROLES.includes(role) ? role : null;
    if (this.doc === null || (this._roleKnown && next === this._role)) return;
    this._roleKnown = true;
    this._role = next;
    this._emit("membership", { doc: this.doc, role: next });
  }

  // At each sync, learn the role: the server's frames tell only its changes, and one may have
  // been missed while offline.
  _learnRole() {
    if (this.doc === null || this._roleAsking) return;
    this._roleAsking = true;
    this.listTeams()
      .catch(() => {}) // known at the next sync
      .finally(() => {
        this._roleAsking = false;
      });
  }

  // The server tells every socket of the user about each of their teams: another team's
  // change is passed on (a list of teams may need reloading), this one's sets the role.
  _onMembership(frame) {
    if (typeof frame.doc !== "string" || !DOC_PATTERN.test(frame.doc)) return;
    if (frame.doc === this.doc) {
      this._setRole(frame.role);
      return;
    }
    const role = TEAM_ROLES.includes(frame.role) ? frame.role : null;
    this._emit("membership", { doc: frame.doc, role });
  }

  // An error about the team document as a whole: the user is not (or no longer) a member.
  _endsDocument(error, frame) {
    if (this.doc === null || frame.mutation_id || !DOC_END_CODES.has(error.code)) return false;
    this._endDocument(error);
    return true;
  }

  // The document is closed to this user: stop syncing it, drop the pending edits and the
  // cached copy (a former member keeps nothing of the team), and say why.
  _endDocument(error) {
    if (this._sessionEnded || this._closed) return;
    this._sessionEnded = true; // no reconnect, no token renewal: nothing more to sync
    this._status.connection = Connection.ERROR;
    this._dropConnection(null, false);
    for (const timer of ["reconnect", "refresh", "save"]) clearTimeout(this._timers[timer]);
    if (this._role !== null) this._setRole(null); // removed while this client was away, too
    this._own = [];
    this._secrets = [];
    this._foreign.clear();
    this._linger.clear();
    this._persistOwn();
    this._broadcastOwn();
    this.forgetCache({ all: true });
    this._reportError(error);
    this._changed("rejected");
    for (const waiter of this._waiters.splice(0)) waiter.resolve(false);
    this._readyResolve(false);
  }

  // SSE: the team's event stream answered 403 or 404 before it started.
  async _streamRefused(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // no JSON body: the status says enough
    }
    const error = isObject(body?.error) ? body.error : {};
    const code = response.status === 404 ? "not_found" : "forbidden";
    this._endDocument(
      new LiveSettingsError(code, String(error.message ?? `no access to ${this.doc}`), {
        status: response.status,
        details: { doc: this.doc },
      }),
    );
  }
}
