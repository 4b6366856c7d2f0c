// The document switcher of the settings page (DESIGN §11): "Personal" and each team of the
// user, the team actions (create, leave, delete), the members panel (teams_panel.js), and the
// controls the user's role in the team shown may not use, disabled with the reason.
//
// app.js shows one document at a time, with one client: switching closes it and opens the
// other document's client from the same session (`open(doc)`), then `attach` is called with
// the new client.

import { LiveSettings, canWrite } from "./livesettings.js";
import { $ } from "./dom.js";
import { MembersPanel, ROLE_NAMES, teamErrorWords } from "./teams_panel.js";

const TEAM_PREFIX = "team:";
const DOC_KEY = "livesettings:doc"; // sessionStorage: the document this tab shows, kept on reload
const DOC_PATTERN = /^team:[0-9a-fA-F-]{1,64}$/;
const MAX_NAME = 200;

/** A sentence from the client's reason ("viewers of this team can …" → "Viewers … ."). */
function sentence(reason, fallback) {
  const text = typeof reason === "string" && reason ? reason : fallback;
  const capital = text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function byName(a, b) {
  return a.name.localeCompare(b.name) || a.team_id.localeCompare(b.team_id);
}

export class DocSwitcher {
  /**
   * @param {object} hooks
   * @param {function(string|null): void} hooks.open show this document ("team:<id>"; null:
   *   the user's own), with a new client
   * @param {function(string, string): void} hooks.notice add a notice (kind, text)
   */
  constructor({ open, notice }) {
    this._open = open;
    this._notice = notice;
    this.client = null;
    this._userId = null;
    this.teams = []; // the user's teams: {team_id, name, role}
    this._leaving = null; // the document this page is leaving or deleting
    this._returning = false; // going back to Personal (after a removal) is under way
    this._listRequest = 0;
    this._listedAt = 0;
    this._lastConnection = null;
    this._confirmAction = null;
    this.members = new MembersPanel();
    this._wire();
  }

  /** The team shown, or null for the user's own settings. */
  get team() {
    const doc = this.client?.doc ?? null;
    if (doc === null) return null;
    return this.teams.find((t) => TEAM_PREFIX + t.team_id === doc) ?? null;
  }

  /** The user's role in the team shown; null for the user's own settings. */
  get role() {
    if (!this.client?.doc) return null;
    return this.team?.role ?? this.client.role ?? null;
  }

  /** The document this tab showed last for `userId` (a reload shows it again); null: Personal. */
  initialDoc(userId) {
    try {
      const kept = JSON.parse(sessionStorage.getItem(DOC_KEY) ?? "null");
      return kept?.user === userId && DOC_PATTERN.test(kept.doc ?? "") ? kept.doc : null;
    } catch {
      return null;
    }
  }

  /** A client was made for the document shown: returns the functions that stop listening. */
  attach(client) {
    try {
      sessionStorage.setItem(DOC_KEY, JSON.stringify({ user: client.userId, doc: client.doc }));
    } catch {
      // storage refused: a reload shows Personal
    }
    if (client.userId !== this._userId) {
      this._userId = client.userId; // another user signed in: nothing of the previous one
      this.teams = [];
      this._listedAt = 0;
    }
    this.client = client;
    this._returning = false;
    this._lastConnection = client.status.connection;
    $("doc-card").hidden = false;
    this._render();
    if (client.doc) this.members.show(client, this.team ?? this._placeholder(client.doc));
    if (client.status.connection === "online") this.refresh();
    return [
      client.on("membership", (event) => this._onMembership(event)),
      client.on("status", (status) => {
        // The list again at each (re)connection: the user may have been added elsewhere.
        if (status.connection === "online" && this._lastConnection !== "online") this.refresh();
        this._lastConnection = status.connection;
      }),
    ];
  }

  /** The client is closed (switching, or signing out). */
  detach() {
    this.client = null;
    this._hideConfirm();
    this.members.hide();
    $("doc-card").hidden = true;
    $("team-error").textContent = "";
    this._lock(false, false, "", "");
  }

  /**
   * An `error` event of the client: true when it ended the team document shown (the user
   * was removed, or the team deleted), which sends the page back to Personal.
   */
  onError(error) {
    const current = this.client?.doc ?? null;
    if (!current || error.path || error.mutationId) return false;
    if (error.code !== "forbidden" && error.code !== "not_found") return false;
    const doc = error.doc ?? error.details?.doc ?? current;
    if (doc !== current) return false;
    if (doc !== this._leaving) this._removed(doc);
    return true;
  }

  /**
   * Signing out: this browser forgets its copies of the user's other documents' settings too,
   * as the document shown forgets its own (their pending edits stay, sent at the next
   * sign-in). A client made and closed at once never connects.
   */
  forgetOthers(session, shown) {
    if (!session) return;
    const docs = [null, ...this.teams.map((t) => TEAM_PREFIX + t.team_id)];
    for (const doc of docs) {
      if (doc === (shown ?? null)) continue;
      try {
        const options = doc ? { doc, tabs: false } : { tabs: false };
        const other = LiveSettings.fromSession({ ...session, cookie: true }, options);
        other.close();
        other.forgetCache();
      } catch {
        // nothing kept for it
      }
    }
  }

  /** The user's teams from the server (the list is kept when it cannot be reached). */
  async refresh() {
    const client = this.client;
    if (!client) return;
    const request = ++this._listRequest;
    let teams;
    try {
      teams = await client.listTeams();
    } catch {
      return; // offline: the list as it was
    }
    if (request !== this._listRequest || client !== this.client) return;
    this._listedAt = Date.now();
    this.teams = teams
      .filter((t) => t && typeof t.team_id === "string")
      .map((t) => ({ team_id: t.team_id, name: String(t.name ?? t.team_id), role: t.role ?? null }))
      .sort(byName);
    const doc = client.doc;
    if (doc && doc !== this._leaving && !this.team) {
      this._removed(doc); // removed, or the team deleted, while this page was away
      return;
    }
    this._render();
    if (doc && this.team) this.members.setTeam(this.team);
  }

  // -- events -------------------------------------------------------------------------------

  _onMembership({ doc, role }) {
    if (!doc || doc === this._leaving) return;
    const team = this.teams.find((t) => TEAM_PREFIX + t.team_id === doc);
    if (role === null || role === undefined) {
      if (doc === this.client?.doc) this._removed(doc);
      return;
    }
    if (!team) {
      this.refresh();
      return;
    }
    const before = team.role;
    team.role = role;
    if (doc !== this.client?.doc) return;
    this._render();
    this.members.setTeam(team);
    if (before && before !== role) {
      this._notice("info", `Your role in the team “${team.name}” is now ${ROLE_NAMES[role] ?? role}.`);
    }
  }

  // The user is no longer a member of `doc`: back to their own settings, saying why.
  _removed(doc) {
    if (this._returning) return;
    this._returning = true;
    const team = this.teams.find((t) => TEAM_PREFIX + t.team_id === doc);
    const name = team ? `“${team.name}”` : "shown";
    this.teams = this.teams.filter((t) => t !== team);
    // Not inside the client's own event: it is closed by the switch.
    setTimeout(() => {
      if (this.client?.doc !== doc) return;
      this._close(doc);
      this._notice(
        "error",
        `You are no longer a member of the team ${name} (you were removed, or the team was ` +
          "deleted). Your own settings are shown.",
      );
    }, 0);
  }

  // Show the user's own settings instead of `doc`, which this browser keeps nothing of: a
  // former member keeps no copy of the team's settings nor its pending edits.
  _close(doc) {
    const left = this.client;
    this._open(null);
    if (left?.doc === doc) left.forgetCache({ all: true });
  }

  // -- rendering ------------------------------------------------------------------------------

  _placeholder(doc) {
    return { team_id: doc.slice(TEAM_PREFIX.length), name: "Team", role: this.client?.role ?? null };
  }

  _render() {
    const client = this.client;
    if (!client) return;
    const select = $("doc-select");
    const doc = client.doc ?? "";
    const teams = [...this.teams];
    if (doc && !this.team) teams.push(this._placeholder(doc));
    const wanted = [["", "Personal"], ...teams.map((t) => [TEAM_PREFIX + t.team_id, t.name])];
    const current = Array.from(select.options, (o) => [o.value, o.textContent]);
    if (JSON.stringify(current) !== JSON.stringify(wanted)) {
      select.replaceChildren(
        ...wanted.map(([value, text]) => {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = text;
          return option;
        }),
      );
    }
    select.value = doc;

    const role = this.role;
    const team = this.team;
    $("doc-role").textContent = doc
      ? `A team's shared settings. Your role: ${ROLE_NAMES[role] ?? "…"}.`
      : "Your own settings.";
    $("team-actions").hidden = !doc;
    $("team-delete").hidden = role !== "owner";
    $("team-leave").disabled = !team;
    $("team-delete").disabled = !team;

    const write = canWrite(role, "/theme");
    const keys = canWrite(role, "/api_keys");
    this._lock(
      !write.ok,
      !keys.ok,
      write.ok ? "" : sentence(write.reason, "you can read this team's settings, not change them"),
      keys.ok || !write.ok
        ? ""
        : sentence(keys.reason, "only admins and owners can change the team's API keys"),
    );
  }

  // Disable the settings (viewer) or the API keys (member), with the reason next to them.
  _lock(readOnly, keysLocked, readOnlyReason, keysReason) {
    $("doc-fields").disabled = readOnly;
    $("keys-fields").disabled = readOnly || keysLocked;
    for (const [id, text] of [
      ["doc-readonly", readOnlyReason],
      ["keys-readonly", readOnly ? readOnlyReason : keysReason],
    ]) {
      const note = $(id);
      note.textContent = text;
      note.hidden = !text;
    }
  }

  // -- actions --------------------------------------------------------------------------------

  _wire() {
    const select = $("doc-select");
    select.addEventListener("change", () => this._switch(select.value || null));
    // The list again when the user opens it (not more often than every few seconds).
    select.addEventListener("focus", () => {
      if (Date.now() - this._listedAt > 5000) this.refresh();
    });
    $("team-create-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this._create();
    });
    $("team-name").addEventListener("input", () => {
      $("team-create-error").textContent = "";
      $("team-name").removeAttribute("aria-invalid");
    });
    $("team-leave").addEventListener("click", () => {
      const team = this.team;
      if (!team) return;
      this._ask(
        `Leave the team “${team.name}”? You will no longer see its settings, unless an admin ` +
          "adds you again.",
        `Leave “${team.name}”`,
        () => this._leave(team, false),
      );
    });
    $("team-delete").addEventListener("click", () => {
      const team = this.team;
      if (!team) return;
      this._ask(
        `Delete the team “${team.name}” for all its members? Its settings and API keys are ` +
          "destroyed; this cannot be undone.",
        `Delete “${team.name}”`,
        () => this._leave(team, true),
      );
    });
    $("team-confirm-yes").addEventListener("click", () => {
      const action = this._confirmAction;
      this._hideConfirm();
      if (action) action();
    });
    $("team-confirm-no").addEventListener("click", () => {
      this._hideConfirm();
      $(this._confirmFrom ?? "doc-select")?.focus();
    });
  }

  _switch(doc) {
    if (!this.client || (this.client.doc ?? null) === doc) return;
    this._hideConfirm();
    this._open(doc);
  }

  _ask(text, yes, action) {
    this._confirmAction = action;
    this._confirmFrom = document.activeElement?.id || null;
    $("team-confirm-text").textContent = text;
    $("team-confirm-yes").textContent = yes;
    $("team-confirm").hidden = false;
    $("team-confirm-no").focus();
  }

  _hideConfirm() {
    this._confirmAction = null;
    $("team-confirm").hidden = true;
  }

  async _create() {
    const client = this.client;
    const input = $("team-name");
    const name = input.value.trim();
    const error = $("team-create-error");
    if (!client) return;
    if (!name || name.length > MAX_NAME) {
      error.textContent = name ? `A team's name has at most ${MAX_NAME} characters.` : "Name the team first.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    const button = $("team-create");
    button.disabled = true;
    let team;
    try {
      team = await client.createTeam(name);
    } catch (err) {
      error.textContent = teamErrorWords(err, "create");
      return;
    } finally {
      button.disabled = false;
    }
    input.value = "";
    error.textContent = "";
    this.teams = [...this.teams, { team_id: team.team_id, name: team.name, role: team.role ?? "owner" }]
      .sort(byName);
    if (this.client !== client) return; // switched meanwhile: the team is in the list
    this._open(TEAM_PREFIX + team.team_id);
    this._notice("info", `Team “${team.name}” created: you are its owner. Add its members below.`);
  }

  // Leave the team, or delete it (owners), then show the user's own settings.
  async _leave(team, remove) {
    const client = this.client;
    if (!client) return;
    const doc = TEAM_PREFIX + team.team_id;
    $("team-error").textContent = "";
    this._leaving = doc;
    try {
      if (remove) await client.deleteTeam(team.team_id);
      else await client.leaveTeam(team.team_id);
    } catch (err) {
      this._leaving = null;
      $("team-error").textContent = teamErrorWords(err, remove ? "delete" : "leave");
      return;
    }
    this.teams = this.teams.filter((t) => t.team_id !== team.team_id);
    if (this.client?.doc === doc) this._close(doc);
    this._leaving = null;
    this._notice(
      "info",
      remove
        ? `The team “${team.name}” is deleted, with its settings and API keys.`
        : `You left the team “${team.name}”.`,
    );
  }
}
