// Team documents (DESIGN §11) with the npm package against a real server: `doc` on
// LiveSettings over the `ws` WebSocket and over SSE, roles refused by the server, a removed
// member, the team methods and the effective settings.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import WebSocket from "ws";
import { LiveSettings, LiveSettingsError, canWrite } from "livesettings";

import { SECRET, URL, USERS, getAs, marker, patchAs, waitFor } from "./helpers.mjs";

const { hal, ida, jon, kim, lou, max } = USERS;
const clients = [];
after(() => clients.forEach((client) => client.close()));

function client(user, options = {}) {
  const made = new LiveSettings({ url: URL, token: user.token, autoSaveDelay: null, ...options });
  clients.push(made);
  return made;
}

/** Events of `type` told by `ls`, as they come. */
function record(ls, type) {
  const seen = [];
  ls.on(type, (detail) => seen.push(detail));
  return seen;
}

/** A team owned by `owner`, with `members` ({user, role}) added by username. */
async function makeTeam(owner, members = []) {
  const ls = client(owner);
  const team = await ls.createTeam(marker("team"));
  assert.equal(team.role, "owner");
  for (const { user, role } of members) {
    await ls.setMember(team.team_id, { username: user.username, role });
  }
  return { team, doc: `team:${team.team_id}`, owner: ls };
}

/** A write of a team's document over HTTP by one of its members. */
async function patchTeam(user, teamId, patch) {
  const response = await fetch(`${URL}/v1/teams/${teamId}/settings`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${user.token}`, "Content-Type": "application/json" },
    body: JSON.stringify(patch),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

test("two members follow a team document live, one on ws and one on SSE", async () => {
  const { team, doc, owner } = await makeTeam(hal, [{ user: ida, role: "member" }]);
  const members = await owner.listMembers(team.team_id);
  assert.deepEqual(
    members.map((m) => [m.user_id, m.role]).sort(),
    [[hal.user_id, "owner"], [ida.user_id, "member"]].sort(),
  );
  const viaWs = client(hal, { doc, WebSocket });
  const viaSse = client(ida, { doc });
  assert.equal(viaWs.doc, doc);
  assert.equal(owner.doc, null);
  assert.equal(owner.role, null);
  assert.deepEqual(await Promise.all([viaWs.ready, viaSse.ready]), [true, true]);
  assert.equal(viaWs.status.transport, "ws");
  assert.equal(viaSse.status.transport, "sse");
  await waitFor(() => viaWs.role === "owner" && viaSse.role === "member", "the roles");

  const toSse = marker("to-sse");
  viaWs.set("/preferences/mark", toSse);
  assert.equal(await viaWs.saveNow(), true);
  await waitFor(() => viaSse.settings.preferences.mark === toSse, "the change on SSE");
  const toWs = marker("to-ws");
  viaSse.update({ theme: "dark", preferences: { mark: toWs } });
  assert.equal(await viaSse.saveNow(), true);
  await waitFor(() => viaWs.settings.preferences.mark === toWs, "the change on ws");
  assert.equal(viaWs.settings.theme, "dark");
  // The team's document, not the users' own: their personal settings hold nothing of it.
  for (const user of [hal, ida]) {
    assert.notEqual((await getAs(user)).preferences.mark, toWs);
  }
  const history = await viaWs.history({ limit: 5 });
  assert.equal(history[0].patch.preferences.mark, toWs);
});

test("the cache and queues of a team document never mix with the user's own", async () => {
  const { doc } = await makeTeam(hal);
  const memory = new Map();
  const storage = {
    getItem: (key) => (memory.has(key) ? memory.get(key) : null),
    setItem: (key, value) => memory.set(key, String(value)),
    removeItem: (key) => memory.delete(key),
    key: (i) => [...memory.keys()][i] ?? null,
    get length() {
      return memory.size;
    },
  };
  const mine = marker("personal");
  const theirs = marker("team");
  await patchAs(hal, { preferences: { cached: mine } });
  const personal = client(hal, { WebSocket, storage });
  const team = client(hal, { WebSocket, storage, doc });
  await Promise.all([personal.ready, team.ready]);
  team.set("/preferences/cached", theirs);
  await team.saveNow();
  // Cached once the server's change confirms it (the ack comes first).
  const cached = ([key, value]) => key.endsWith(":state") && value.includes(theirs);
  await waitFor(() => [...memory.entries()].some(cached), "the team's cached state");
  assert.equal(personal.settings.preferences.cached, mine);
  personal.close();
  team.close();
  // Read back from the cache alone (no server reached yet): each its own document.
  const again = client(hal, { WebSocket, storage, url: "http://127.0.0.1:9" });
  const againTeam = client(hal, { WebSocket, storage, doc, url: "http://127.0.0.1:9" });
  assert.equal(again.settings.preferences.cached, mine);
  assert.equal(againTeam.settings.preferences.cached, theirs);
  const teamKeys = [...memory.keys()].filter((key) => key.includes(doc));
  assert.ok(teamKeys.length >= 2, JSON.stringify([...memory.keys()]));
  again.forgetCache({ all: true });
  assert.ok(teamKeys.every((key) => memory.has(key)), "forgetting one document forgot another");
});

test("a member cannot write api_keys, a viewer cannot write: forbidden, with the path", async () => {
  const { team, doc, owner } = await makeTeam(hal, [
    { user: ida, role: "member" },
    { user: jon, role: "viewer" },
  ]);
  assert.deepEqual(canWrite("member", "/api_keys/openai"), {
    ok: false,
    reason: canWrite("member", "api_keys").reason,
  });
  assert.equal(canWrite("member", "/theme").ok, true);
  assert.equal(canWrite("viewer", "/theme").ok, false);
  assert.equal(canWrite("admin", "/api_keys/openai").ok, true);
  assert.equal(canWrite(null, "/api_keys/openai").ok, true);

  const member = client(ida, { doc, WebSocket });
  const viewer = client(jon, { doc }); // SSE: its writes go over HTTP
  await Promise.all([member.ready, viewer.ready]);
  const memberErrors = record(member, "error");
  const viewerErrors = record(viewer, "error");
  member.update({ api_keys: { openai: SECRET } });
  await member.saveNow();
  await waitFor(() => memberErrors.length, "the member's refusal");
  assert.equal(memberErrors[0].code, "forbidden");
  assert.equal(memberErrors[0].path, "/api_keys/openai");
  assert.equal(member.status.connection, "online"); // one refused edit ends nothing

  viewer.set("/theme", "dark");
  await viewer.saveNow();
  await waitFor(() => viewerErrors.length, "the viewer's refusal");
  assert.equal(viewerErrors[0].code, "forbidden");
  assert.equal(viewerErrors[0].path, "/theme");
  assert.equal(viewer.status.unsaved, 0);
  assert.equal(viewer.settings.theme, "light"); // the refused edit is dropped

  const settings = await owner.effectiveSettings(team.team_id);
  assert.equal(settings.team_id, team.team_id);
  const body = await (
    await fetch(`${URL}/v1/teams/${team.team_id}/settings`, {
      headers: { Authorization: `Bearer ${hal.token}` },
    })
  ).json();
  assert.deepEqual(body.settings.api_keys, {});
  assert.equal(body.settings.theme, "light");
  assert.ok(!JSON.stringify([memberErrors, member.settings]).includes(SECRET));
});

test("a non-member gets not_found on ws, on SSE and from the team methods", async () => {
  const { team, doc } = await makeTeam(hal);
  for (const options of [{ WebSocket }, {}]) {
    const outsider = client(kim, { doc, ...options });
    const errors = record(outsider, "error");
    assert.equal(await outsider.ready, false);
    assert.equal(errors[0].code, "not_found");
    assert.equal(outsider.status.connection, "error");
    assert.ok(outsider.status.error);
    assert.equal(outsider.role, null);
  }
  const own = client(kim);
  await assert.rejects(own.listMembers(team.team_id), { code: "not_found", status: 404 });
  await assert.rejects(own.effectiveSettings(team.team_id), { code: "not_found" });
  await assert.rejects(own.leaveTeam(team.team_id), { code: "not_found" });
  assert.ok(!(await own.listTeams()).some((t) => t.team_id === team.team_id));
});

test("a removed member is told, gets forbidden and stops receiving, on ws and on SSE", async () => {
  const { team, doc, owner } = await makeTeam(hal, [{ user: lou, role: "member" }]);
  const viaWs = client(lou, { doc, WebSocket });
  const viaSse = client(lou, { doc });
  const watcher = client(hal, { doc, WebSocket });
  await Promise.all([viaWs.ready, viaSse.ready, watcher.ready]);
  await waitFor(() => viaWs.role === "member" && viaSse.role === "member", "the roles");
  const told = [record(viaWs, "membership"), record(viaSse, "membership")];
  const errors = [record(viaWs, "error"), record(viaSse, "error")];
  viaWs.set("/preferences/pending", "never sent"); // autoSaveDelay null: stays pending
  assert.equal(viaWs.status.unsaved, 1);

  // A demotion is told first, and the clients keep following.
  await owner.setMember(team.team_id, { userId: lou.user_id, role: "viewer" });
  await waitFor(() => viaWs.role === "viewer" && viaSse.role === "viewer", "the demotion");
  assert.deepEqual(told[0].at(-1), { doc, role: "viewer" });

  await owner.removeMember(team.team_id, lou.user_id);
  for (const [i, ls] of [viaWs, viaSse].entries()) {
    await waitFor(() => errors[i].length, "the forbidden error");
    assert.deepEqual(told[i].at(-1), { doc, role: null });
    assert.equal(errors[i][0].code, "forbidden");
    assert.equal(ls.role, null);
    assert.equal(ls.status.connection, "error");
    assert.ok(ls.status.error);
    assert.equal(ls.status.unsaved, 0);
    assert.equal(ls.status.transport, null);
  }
  assert.equal(viaWs.settings.preferences.pending, undefined); // the pending edit is dropped

  const after = marker("after");
  await patchTeam(hal, team.team_id, { preferences: { mark: after } });
  await waitFor(() => watcher.settings.preferences.mark === after, "the owner's copy");
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const ls of [viaWs, viaSse]) assert.notEqual(ls.settings.preferences.mark, after);
});

test("the last owner cannot leave; a member can, and the team goes with deleteTeam", async () => {
  const { team, owner } = await makeTeam(hal, [{ user: ida, role: "admin" }]);
  await assert.rejects(owner.leaveTeam(team.team_id), (err) => {
    assert.ok(err instanceof LiveSettingsError);
    assert.equal(err.code, "last_owner");
    assert.equal(err.status, 409);
    return true;
  });
  const admin = client(ida);
  const listed = await admin.listTeams();
  assert.ok(listed.some((t) => t.team_id === team.team_id && t.role === "admin"));
  await admin.leaveTeam(team.team_id);
  assert.ok(!(await admin.listTeams()).some((t) => t.team_id === team.team_id));
  await owner.deleteTeam(team.team_id);
  await assert.rejects(owner.listMembers(team.team_id), { code: "not_found" });
});

test("effective settings: the user's own value over the team's over the default", async () => {
  const { team, doc } = await makeTeam(max);
  await patchTeam(max, team.team_id, {
    theme: "dark",
    preferences: { a: "team", b: "team" },
  });
  await patchAs(max, { preferences: { b: "mine" } });
  const ls = client(max, { doc, WebSocket });
  await ls.ready;
  const effective = await ls.effectiveSettings();
  assert.equal(effective.team_id, team.team_id);
  assert.equal(effective.team_revision, ls.revision);
  assert.equal(effective.settings.theme, "dark");
  assert.equal(effective.settings.language, "en");
  assert.equal(effective.settings.preferences.a, "team");
  assert.equal(effective.settings.preferences.b, "mine");
  assert.throws(() => client(max).effectiveSettings(), { code: "invalid" });
  assert.throws(() => client(max, { doc: "personal" }), { code: "invalid_options" });
});
