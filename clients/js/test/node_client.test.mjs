// LiveSettings in a Node backend against a real server: the `ws` WebSocket, the SSE fallback,
// service tokens, the seed's methods with a userId, and a process that exits after close().

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";

import WebSocket from "ws";
import { LiveSettings, LiveSettingsError } from "livesettings";

import { SECRET, SERVICE_TOKEN, URL, USERS, getAs, marker, waitFor } from "./helpers.mjs";

const { dot, eve } = USERS;
const clients = [];
after(() => clients.forEach((client) => client.close()));

function client(options) {
  const made = new LiveSettings({ url: URL, autoSaveDelay: null, ...options });
  clients.push(made);
  return made;
}

test("a change made by another client reaches a Node client on ws, and one on SSE", async () => {
  const viaWs = client({ token: dot.token, WebSocket });
  const viaSse = client({ token: dot.token }); // no WebSocket in Node 20: the event stream
  await Promise.all([viaWs.ready, viaSse.ready]);
  assert.equal(viaWs.status.transport, "ws");
  assert.equal(viaSse.status.transport, "sse");
  assert.equal(viaWs.status.connection, "online");

  const toSse = marker("to-sse");
  viaWs.set("/preferences/mark", toSse);
  assert.equal(await viaWs.saveNow(), true);
  await waitFor(() => viaSse.settings.preferences.mark === toSse, "the change on SSE");

  const toWs = marker("to-ws");
  const changes = [];
  viaWs.on("change", (detail) => changes.push(detail));
  viaSse.set("/preferences/mark", toWs);
  await viaSse.saveNow();
  await waitFor(() => viaWs.settings.preferences.mark === toWs, "the change on ws");
  assert.equal(changes.at(-1).source, "server");
  assert.equal((await getAs(dot)).preferences.mark, toWs);
});

test("secrets reach another Node client masked, never in plaintext", async () => {
  const writer = client({ token: dot.token, WebSocket });
  const reader = client({ token: dot.token });
  await Promise.all([writer.ready, reader.ready]);
  const keys = [];
  reader.onApiKeysUpdate((apiKeys) => keys.push(apiKeys));
  writer.update({ api_keys: { openai: SECRET } });
  await writer.saveNow();
  const got = await waitFor(() => keys.find((k) => k.openai?.last4 === "wxyz"), "the masked key");
  assert.equal(got.openai.set, true);
  assert.ok(!JSON.stringify([keys, reader.settings, writer.settings]).includes(SECRET));
});

test("the seed's methods take the client's own userId and refuse any other", async () => {
  const ls = client({ token: eve.token, WebSocket });
  await ls.ready;
  const seen = [];
  const cleanup = ls.subscribeToSettingsChanges(eve.user_id, (settings) => seen.push(settings));
  assert.throws(
    () => ls.subscribeToSettingsChanges(dot.user_id, () => {}),
    (err) =>
      err instanceof LiveSettingsError &&
      err.code === "forbidden" &&
      err.message.includes(dot.user_id),
  );
  const write = ls.updateSettingsRealtime(dot.user_id, { theme: "dark" });
  await assert.rejects(write, { code: "forbidden" });
  await assert.rejects(ls.getLatestSettings(dot.user_id), { code: "forbidden" });

  const mark = marker("seed");
  assert.equal(await ls.updateSettingsRealtime(eve.user_id, { preferences: { mark } }), true);
  assert.equal((await ls.getLatestSettings(eve.user_id)).preferences.mark, mark);
  assert.equal(seen.at(-1).preferences.mark, mark);
  cleanup();
  // Today's forms still work.
  const other = marker("today");
  assert.equal(await ls.updateSettingsRealtime({ preferences: { mark: other } }), true);
  assert.equal((await ls.getLatestSettings()).preferences.mark, other);
  assert.equal(seen.at(-1).preferences.mark, mark, "cleanup stopped the callback");
});

test("with a service token a LiveSettings follows and edits the user it names", async () => {
  const ls = client({ token: SERVICE_TOKEN, userId: eve.user_id, WebSocket });
  await ls.ready;
  const mark = marker("svc-client");
  await ls.updateSettingsRealtime(eve.user_id, { preferences: { mark } });
  assert.equal((await getAs(eve)).preferences.mark, mark);

  const viaSse = client({ token: SERVICE_TOKEN, userId: eve.user_id });
  await viaSse.ready;
  assert.equal(viaSse.settings.preferences.mark, mark);
  assert.equal(viaSse.status.transport, "sse");
  await assert.rejects(viaSse.history(), { code: "forbidden" });
});

test("a Node process exits by itself once its clients and services are closed", async () => {
  const script = fileURLToPath(new globalThis.URL("./fixtures/exits.mjs", import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  // A hang guard, not a speed limit: a process kept alive by a timer never exits at all.
  const guard = setTimeout(() => child.kill("SIGKILL"), 60000);
  const [code, signal] = await new Promise((resolve) => {
    child.on("exit", (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
  });
  clearTimeout(guard);
  assert.equal(signal, null, `the process was still running after close():\n${output}`);
  assert.equal(code, 0, output);
  assert.match(output, /closed everything/);
});

test("two clients writing the same value at once are told no conflict; different values are", async () => {
  const a = client({ token: eve.token, WebSocket });
  const b = client({ token: eve.token, WebSocket });
  await Promise.all([a.ready, b.ready]);
  const told = [];
  a.on("conflict", (detail) => told.push(detail));
  b.on("conflict", (detail) => told.push(detail));

  const same = marker("same");
  a.set(`/preferences/${same}`, "equal");
  b.set(`/preferences/${same}`, "equal");
  await Promise.all([a.saveNow(), b.saveNow()]);

  const differ = marker("differ");
  a.set(`/preferences/${differ}`, "from-a");
  b.set(`/preferences/${differ}`, "from-b");
  await Promise.all([a.saveNow(), b.saveNow()]);
  await waitFor(() => told.some((c) => c.path === `/preferences/${differ}`), "the real conflict");
  assert.deepEqual(
    told.filter((c) => c.path === `/preferences/${same}`),
    [],
    "a conflict between equal values was told",
  );
});
