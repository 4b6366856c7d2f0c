// The members panel of a team on the settings page (DESIGN §11): the members and their roles;
// admins and owners add a user by username with a role, change a member's role and remove a
// member. What the user's role may not do is disabled, with the reason shown.

import { $, element } from "./dom.js";

export const ROLE_NAMES = { owner: "owner", admin: "admin", member: "member", viewer: "viewer" };
const ROLES = ["owner", "admin", "member", "viewer"];
const MANAGE_REASON = "Only the team's admins and owners can add members, change roles or remove members.";
const OWNERS_REASON = "Only owners can make someone an owner, or change or remove an owner.";

/** Words for a failed team request; `what`: create, leave, delete, add, role or remove. */
export function teamErrorWords(err, what, username = "") {
  if (err?.code === "last_owner") {
    return what === "leave"
      ? "You are the team's last owner: make another member an owner first, or delete the team."
      : "A team keeps at least one owner: make another member an owner first.";
  }
  if (err?.code === "not_found") {
    return what === "add" && username
      ? `No user is named “${username}”. Check the spelling: usernames are exact.`
      : "This team or member no longer exists, or you are no longer a member of the team.";
  }
  if (err?.code === "offline") return "The server cannot be reached: try again when you are online.";
  if (err?.code === "forbidden") return `Your role does not allow this: ${err.message}`;
  if (err?.code === "limit_reached" || err?.code === "rate_limited") return `Not now: ${err.message}`;
  return err?.message ? String(err.message) : "Something went wrong; try again.";
}

function article(role) {
  return role === "admin" || role === "owner" ? "an" : "a";
}

function rank(role) {
  const index = ROLES.indexOf(role);
  return index < 0 ? ROLES.length : index;
}

export class MembersPanel {
  constructor() {
    this.client = null;
    this.team = null;
    this.members = [];
    this._request = 0;
    this._wire();
  }

  /** Show the members of `team` ({team_id, name, role}), as seen through `client`. */
  show(client, team) {
    this.client = client;
    this.team = { ...team };
    this.members = [];
    $("members-card").hidden = false;
    $("members-list").replaceChildren();
    $("members-error").textContent = "";
    $("members-message").textContent = "Loading the members…";
    this._renderControls();
    this.load();
  }

  /** The user's role in the team changed (or its name was learnt). */
  setTeam(team) {
    if (!this.team || team.team_id !== this.team.team_id) return;
    const changed = team.role !== this.team.role;
    this.team = { ...team };
    this._renderControls();
    this._render();
    if (changed) this.load();
  }

  hide() {
    this.client = null;
    this.team = null;
    this.members = [];
    this._request++;
    $("members-card").hidden = true;
    $("members-list").replaceChildren();
  }

  get manager() {
    return this.team?.role === "owner" || this.team?.role === "admin";
  }

  async load() {
    const { client, team } = this;
    if (!client || !team) return;
    const request = ++this._request;
    let members;
    try {
      members = await client.listMembers(team.team_id);
    } catch (err) {
      if (request !== this._request) return;
      $("members-message").textContent =
        err.code === "offline"
          ? "The members are shown when you are online."
          : `The members cannot be loaded: ${teamErrorWords(err, "list")}`;
      return;
    }
    if (request !== this._request) return;
    this._show(members);
  }

  _show(members) {
    this.members = [...members].sort(
      (a, b) =>
        rank(a.role) - rank(b.role) ||
        String(a.username ?? a.user_id).localeCompare(String(b.username ?? b.user_id)),
    );
    $("members-message").textContent = `${this.members.length} member${this.members.length === 1 ? "" : "s"}.`;
    this._render();
  }

  // -- rendering ------------------------------------------------------------------------------

  _renderControls() {
    const manager = this.manager;
    const owner = this.team?.role === "owner";
    $("member-add-fields").disabled = !manager;
    const note = $("members-note");
    note.textContent = !manager ? MANAGE_REASON : owner ? "" : OWNERS_REASON;
    note.hidden = !note.textContent;
    const select = $("member-add-role");
    for (const option of select.options) option.disabled = option.value === "owner" && !owner;
    if (select.selectedOptions[0]?.disabled) select.value = "member";
  }

  _render() {
    const list = $("members-list");
    if (!this.team) return;
    const me = this.client?.userId;
    const owner = this.team.role === "owner";
    list.replaceChildren(
      ...this.members.map((member) => {
        const name = String(member.username ?? member.user_id);
        const self = member.user_id === me;
        // Admins manage members below owner; owners manage everyone.
        const allowed = this.manager && (owner || member.role !== "owner");
        const reason = !this.manager ? MANAGE_REASON : allowed ? "" : OWNERS_REASON;
        const select = element(
          "select",
          { "aria-label": `Role of ${name}`, "data-user-id": member.user_id, title: reason || false },
          ...ROLES.map((role) =>
            element("option", {
              value: role,
              text: ROLE_NAMES[role],
              disabled: role === "owner" && !owner,
              selected: role === member.role,
            }),
          ),
        );
        select.value = member.role;
        select.disabled = !allowed;
        select.addEventListener("change", () => this._setRole(member, name, select.value));
        const remove = element("button", {
          type: "button",
          class: "quiet",
          "aria-label": `Remove ${name}`,
          text: "Remove",
          title: self ? "To leave the team, use “Leave team” above." : reason || false,
        });
        remove.disabled = !allowed || self;
        remove.addEventListener("click", () => this._remove(member, name));
        return element(
          "li",
          { class: "member", "data-user-id": member.user_id },
          element(
            "span",
            { class: "member-name" },
            element("span", { text: name }),
            self ? element("span", { class: "hint", text: " (you)" }) : null,
          ),
          element("span", { class: "member-actions" }, select, remove),
        );
      }),
    );
  }

  // -- actions --------------------------------------------------------------------------------

  _wire() {
    $("member-add-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this._add();
    });
    $("member-add-username").addEventListener("input", () => {
      $("member-add-error").textContent = "";
      $("member-add-username").removeAttribute("aria-invalid");
    });
  }

  async _add() {
    const { client, team } = this;
    if (!client || !team) return;
    const input = $("member-add-username");
    const username = input.value.trim();
    const role = $("member-add-role").value;
    const error = $("member-add-error");
    if (!username) {
      error.textContent = "Type the username of the person to add.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    const button = $("member-add");
    button.disabled = true;
    try {
      const members = await client.setMember(team.team_id, { username, role });
      if (this.client !== client) return;
      input.value = "";
      error.textContent = "";
      this._show(members);
      $("members-message").textContent = `${username} is now ${article(role)} ${ROLE_NAMES[role]} of the team.`;
    } catch (err) {
      if (this.client !== client) return;
      error.textContent = teamErrorWords(err, "add", username);
      input.setAttribute("aria-invalid", "true");
    } finally {
      button.disabled = false;
    }
  }

  async _setRole(member, name, role) {
    const { client, team } = this;
    if (!client || !team || role === member.role) return;
    $("members-error").textContent = "";
    try {
      const members = await client.setMember(team.team_id, { userId: member.user_id, role });
      if (this.client !== client) return;
      this._show(members);
      $("members-message").textContent = `${name} is now ${article(role)} ${ROLE_NAMES[role]}.`;
    } catch (err) {
      if (this.client !== client) return;
      $("members-error").textContent = `${name}: ${teamErrorWords(err, "role")}`;
      this._render(); // the select shows the role the member still has
    }
  }

  async _remove(member, name) {
    const { client, team } = this;
    if (!client || !team) return;
    $("members-error").textContent = "";
    try {
      await client.removeMember(team.team_id, member.user_id);
    } catch (err) {
      if (this.client === client) $("members-error").textContent = `${name}: ${teamErrorWords(err, "remove")}`;
      return;
    }
    if (this.client !== client) return;
    this._show(this.members.filter((m) => m.user_id !== member.user_id));
    $("members-message").textContent = `${name} was removed from the team.`;
  }
}
