// createRealtimeSettingsService against a real server: a Node backend following users.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import WebSocket from "ws";
import { LiveSettingsError, createRealtimeSettingsService, decodeJwt } from "livesettings";

import {
  SECRET,
  SERVICE_TOKEN,
  SHORT_SERVICE_TOKEN,
  URL,
  USERS,
  getAs,
  marker,
  patchAs,
  waitFor,
} from "./helpers.mjs";

const { ann, ben, cat } = USERS;
const services = [];
after(() => services.forEach((service) => service.close()));

function open(options) {
  const service = createRealtimeSettingsService({ url: URL, ...options });
  services.push(service);
  return service;
}

function follow(service, userId) {
  const calls = [];
  const cleanup = service.subscribeToSettingsChanges(userId, (settings, detail) => {
    calls.push({ settings, detail });
  });
  const marked = (mark) => calls.find((c) => c.settings.preferences.mark === mark);
  return { calls, cleanup, marked, last: () => calls.at(-1)?.settings };
}

const forbidden = (pattern) => (err) =>
  err instanceof LiveSettingsError && err.code === "forbidden" && pattern.test(err.message);

test("a service token follows two users over one socket", async () => {
  const service = open({ token: SERVICE_TOKEN, WebSocket });
  assert.equal(service.transport, "ws");
  const a = follow(service, ann.user_id);
  const b = follow(service, ben.user_id);
  await waitFor(() => a.calls.length && b.calls.length, "the first settings of both users");
  assert.deepEqual(Object.keys(a.last()).sort(), [
    "ai_providers",
    "api_keys",
    "language",
    "preferences",
    "theme",
  ]);

  const markA = marker("ann");
  const markB = marker("ben");
  await patchAs(ann, { preferences: { mark: markA }, language: "de" });
  await patchAs(ben, { preferences: { mark: markB } });
  const gotA = await waitFor(() => a.marked(markA), "ann's write");
  const gotB = await waitFor(() => b.marked(markB), "ben's write");
  // The whole settings, each to its own user's callback only.
  assert.equal(gotA.settings.language, "de");
  assert.equal(gotA.detail.userId, ann.user_id);
  assert.equal(gotB.detail.userId, ben.user_id);
  assert.equal(a.marked(markB), undefined);
  assert.equal(b.marked(markA), undefined);
  assert.equal(gotA.settings.theme, (await getAs(ann)).theme);

  // A second callback for ann gets the current settings at once; cleaning up the first leaves it.
  const again = follow(service, ann.user_id);
  await waitFor(() => again.marked(markA), "the current settings for a second callback");
  a.cleanup();
  const second = marker("second");
  await patchAs(ann, { preferences: { mark: second } });
  await waitFor(() => again.marked(second), "ann's write to the remaining callback");
  assert.equal(a.marked(second), undefined);

  // After the last cleanup no call for ann; ben's later write (the same socket, committed
  // after ann's) still arrives.
  again.cleanup();
  const seen = again.calls.length;
  const late = marker("late");
  await patchAs(ann, { preferences: { mark: late } });
  await patchAs(ben, { preferences: { mark: late } });
  await waitFor(() => b.last()?.preferences.mark === late, "ben's later write");
  assert.equal(again.calls.length, seen);
  assert.equal((await service.getLatestSettings(ann.user_id)).preferences.mark, late);
});

test("the service writes and reads any user's settings; secrets come back masked", async () => {
  const service = open({ token: SERVICE_TOKEN, WebSocket });
  const c = follow(service, cat.user_id);
  await waitFor(() => c.calls.length, "cat's first settings");
  const mark = marker("svc");
  const result = await service.updateSettingsRealtime(cat.user_id, {
    preferences: { mark },
    api_keys: { openai: SECRET },
  });
  assert.ok(Number.isInteger(result.revision));
  assert.equal(result.settings.preferences.mark, mark);
  const latest = await service.getLatestSettings(cat.user_id);
  assert.equal(latest.preferences.mark, mark);
  assert.equal(latest.api_keys.openai.set, true);
  assert.equal(latest.api_keys.openai.last4, "wxyz");
  const stamp = latest.api_keys.openai.updated_at;
  const got = await waitFor(
    () => c.calls.find((x) => x.settings.api_keys.openai?.updated_at === stamp),
    "the masked key",
  );
  assert.deepEqual(got.settings.api_keys.openai, latest.api_keys.openai);
  assert.ok(!JSON.stringify([result, latest, c.calls]).includes(SECRET));
  assert.equal((await getAs(cat)).preferences.mark, mark);
});

test("it resumes after a reconnect from the last revision held", async () => {
  let calls = 0;
  const service = open({
    token: async () => {
      calls += 1;
      return SERVICE_TOKEN;
    },
    WebSocket,
  });
  const b = follow(service, ben.user_id);
  await waitFor(() => b.calls.length, "ben's first settings");
  const before = b.calls.at(-1).detail.revision;
  service._dropConnection(); // as a dead network would
  const mark = marker("gap");
  await patchAs(ben, { preferences: { mark } });
  const got = await waitFor(() => b.marked(mark), "the write");
  assert.ok(got.detail.revision > before);
  assert.ok(calls >= 1, "the token function was asked");
});

test("a token function is called again before its token expires", async () => {
  const tokens = [SHORT_SERVICE_TOKEN, SERVICE_TOKEN];
  let calls = 0;
  const service = open({ token: async () => tokens[Math.min(calls++, 1)], WebSocket });
  const c = follow(service, cat.user_id);
  await waitFor(() => c.calls.length, "cat's first settings");
  const expiry = decodeJwt(SHORT_SERVICE_TOKEN).exp * 1000;
  await waitFor(() => Date.now() > expiry + 1000, "the first token's expiry", 30000);
  const mark = marker("renewed");
  await patchAs(cat, { preferences: { mark } });
  await waitFor(() => c.last()?.preferences.mark === mark, "a change after the expiry");
  assert.ok(calls >= 2, `the token function was called ${calls} time(s)`);
});

test("a user token reaches only its own user", async () => {
  const service = open({ token: ann.token, WebSocket });
  assert.throws(
    () => service.subscribeToSettingsChanges(ben.user_id, () => {}),
    forbidden(/only its own user's settings/),
  );
  const write = service.updateSettingsRealtime(ben.user_id, { theme: "dark" });
  await assert.rejects(write, { code: "forbidden" });
  await assert.rejects(service.getLatestSettings(ben.user_id), { code: "forbidden" });
  // A token function: the user is known once it answered; the promise rejects all the same.
  const lazy = open({ token: async () => ann.token, WebSocket });
  await assert.rejects(lazy.getLatestSettings(ben.user_id), { code: "forbidden" });

  const a = follow(service, ann.user_id);
  const mark = marker("own");
  await service.updateSettingsRealtime(ann.user_id, { preferences: { mark } });
  await waitFor(() => a.last()?.preferences.mark === mark, "ann's own write");
  assert.equal((await service.getLatestSettings(ann.user_id)).preferences.mark, mark);
});

test("without a WebSocket the service follows users over SSE", async () => {
  const service = open({ token: SERVICE_TOKEN }); // Node 20 has no global WebSocket
  assert.equal(service.transport, "sse");
  const a = follow(service, ann.user_id);
  const b = follow(service, ben.user_id);
  await waitFor(() => a.calls.length && b.calls.length, "the first settings over SSE");
  const mark = marker("sse");
  await patchAs(ann, { preferences: { mark }, api_keys: { anthropic: SECRET } });
  const got = await waitFor(() => a.marked(mark), "ann's write");
  assert.equal(got.settings.api_keys.anthropic.last4, "wxyz");
  assert.ok(!JSON.stringify(a.calls).includes(SECRET));
  assert.equal(b.marked(mark), undefined);
});
