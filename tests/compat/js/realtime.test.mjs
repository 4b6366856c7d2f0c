// supabase-js's realtime (`channel().on('postgres_changes', …).subscribe()`) against
// livesettings' /realtime/v1/websocket, over the vsn that COMPAT_VSN names: UPDATEs made by
// another client, by livesettings' own PATCH, token refresh, heartbeats, removeAllChannels,
// early joins, and the filters a user may not listen to.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Inbox,
  PASSWORD,
  SECRET,
  VSN,
  livesettingsToken,
  marker,
  patchSettings,
  shutDown,
  signedUp,
  sleep,
  waitFor,
} from "./helpers.mjs";
import { makeSupabase, realtimeSettingsService } from "./seed.mjs";

const COLUMNS = [
  "ai_providers",
  "api_keys",
  "created_at",
  "id",
  "language",
  "preferences",
  "theme",
  "updated_at",
  "user_id",
];

const opened = [];
function client(options) {
  const supabase = makeSupabase(options);
  opened.push(supabase);
  return supabase;
}

after(() => shutDown(...opened));

/** The user whose row every test watches, signed in on two devices: `a` listens, `b` writes. */
let user;
let email;
let a;
let b;

before(async () => {
  ({ supabase: a, email, user } = await signedUp(client));
  b = client();
  const signedIn = await b.auth.signInWithPassword({ email, password: PASSWORD });
  assert.equal(signedIn.error, null, signedIn.error?.message);
  const created = await b
    .from("user_preferences")
    .upsert({ user_id: user.id }, { onConflict: "user_id" });
  assert.equal(created.error, null, JSON.stringify(created.error));
});

/** The seed's subscription on `supabase`; resolves once the subscribe callback has a status. */
async function subscribe(supabase, userId) {
  const events = new Inbox();
  const statuses = new Inbox();
  const cleanup = realtimeSettingsService(supabase).subscribeToSettingsChanges(
    userId,
    (_row, payload) => events.push(payload),
    (status, err) => statuses.push({ status, err }),
  );
  const { status, err } = await statuses.take(() => true, "the subscribe callback");
  return { events, statuses, cleanup, status, err };
}

/** B writes a new marker into the watched row; the marker. */
async function writeMarker(label) {
  const value = marker(label);
  const { error } = await b
    .from("user_preferences")
    .update({ preferences: { marker: value } })
    .eq("user_id", user.id);
  assert.equal(error, null, JSON.stringify(error));
  return value;
}

const carrying = (value) => (payload) => payload.new?.preferences?.marker === value;

let watched; // a's channel, made by the first test
let second; // the events of a's second channel, made by the removeChannel test

test(`the channel speaks vsn ${VSN} and subscribes`, async () => {
  watched = await subscribe(a, user.id);
  assert.equal(watched.status, "SUBSCRIBED", String(watched.err));
  assert.equal(a.realtime.vsn, VSN);
  assert.ok(a.realtime.endpointURL().includes("/realtime/v1/websocket?"));
});

test("an UPDATE made by another client arrives as postgres_changes in Supabase's shape", async () => {
  const value = await writeMarker("rest");
  const payload = await watched.events.take(carrying(value), "the UPDATE");
  assert.equal(payload.eventType, "UPDATE");
  assert.equal(payload.schema, "public");
  assert.equal(payload.table, "user_preferences");
  assert.equal(payload.errors, null);
  assert.ok(!Number.isNaN(Date.parse(payload.commit_timestamp)), payload.commit_timestamp);
  assert.deepEqual(Object.keys(payload.new).sort(), COLUMNS);
  assert.equal(payload.new.user_id, user.id);
  // Without REPLICA IDENTITY FULL the real server's old record is the primary key alone.
  assert.deepEqual(Object.keys(payload.old), ["id"]);
  assert.equal(payload.old.id, payload.new.id);
});

test("an UPDATE made through livesettings' own PATCH /v1/settings arrives", async () => {
  const value = marker("patch");
  await patchSettings(await livesettingsToken(email), { preferences: { marker: value } });
  const payload = await watched.events.take(carrying(value), "the PATCH");
  assert.equal(payload.eventType, "UPDATE");
  assert.equal(payload.new.user_id, user.id);
});

test("a pushed record masks the api keys", async () => {
  const { error } = await b
    .from("user_preferences")
    .update({ api_keys: { openai: SECRET } })
    .eq("user_id", user.id);
  assert.equal(error, null, JSON.stringify(error));
  const payload = await watched.events.take(
    (p) => p.new?.api_keys?.openai?.set === true,
    "the api_keys UPDATE",
  );
  assert.equal(payload.new.api_keys.openai.last4, SECRET.slice(-4));
  assert.ok(!JSON.stringify(payload).includes(SECRET), "a plaintext secret was pushed");
});

test("refreshSession: realtime gets the new token and the channel keeps receiving", async () => {
  const old = (await a.auth.getSession()).data.session.access_token;
  await sleep(1100); // a later `iat`, so a different token
  const { data, error } = await a.auth.refreshSession();
  assert.equal(error, null, error?.message);
  const fresh = data.session.access_token;
  assert.notEqual(fresh, old);
  await waitFor(() => a.realtime.accessTokenValue === fresh, "setAuth with the new token");
  const value = await writeMarker("refreshed");
  await watched.events.take(carrying(value), "an UPDATE after the refresh");
  assert.equal(a.getChannels()[0].state, "joined");
});

test("a channel joined before sign-in (anon key) receives once the user signs in", async () => {
  const early = client();
  const channel = await subscribe(early, user.id);
  assert.equal(channel.status, "SUBSCRIBED", String(channel.err));
  const before = await writeMarker("before-sign-in");
  await watched.events.take(carrying(before), "the UPDATE on the signed-in device");
  await sleep(300);
  assert.ok(!channel.events.items.some(carrying(before)), "an anon channel received a row");

  const signedIn = await early.auth.signInWithPassword({ email, password: PASSWORD });
  assert.equal(signedIn.error, null, signedIn.error?.message);
  await waitFor(
    () => early.realtime.accessTokenValue === signedIn.data.session.access_token,
    "setAuth after sign-in",
  );
  const after = await writeMarker("after-sign-in");
  await channel.events.take(carrying(after), "the UPDATE after sign-in");
  channel.cleanup();
});

test("heartbeats are answered: no heartbeat timeout, the socket stays up", async () => {
  const beats = [];
  // A fast heartbeat (the default is 25 s): each must be answered before the next one.
  const fast = client({
    realtime: { heartbeatIntervalMs: 150, heartbeatCallback: (status) => beats.push(status) },
  });
  const signedIn = await fast.auth.signInWithPassword({ email, password: PASSWORD });
  assert.equal(signedIn.error, null, signedIn.error?.message);
  const channel = await subscribe(fast, user.id);
  assert.equal(channel.status, "SUBSCRIBED", String(channel.err));
  await waitFor(() => beats.filter((b) => b === "ok").length >= 4, "four answered heartbeats");
  assert.deepEqual(beats.filter((b) => b !== "sent" && b !== "ok"), [], beats.join(","));
  const value = await writeMarker("heartbeat");
  await channel.events.take(carrying(value), "an UPDATE after the heartbeats");
  channel.cleanup();
});

test("another user's filter is refused: the subscribe callback gets CHANNEL_ERROR", async () => {
  const { supabase: stranger } = await signedUp(client, "s");
  const channel = await subscribe(stranger, user.id);
  assert.equal(channel.status, "CHANNEL_ERROR");
  // A refused join, not a failed socket: the error's cause is the join reply's response.
  const cause = channel.err?.cause;
  assert.ok(cause && Object.getPrototypeOf(cause) === Object.prototype, String(channel.err));
  assert.ok(channel.err.message, "the refusal gives no reason");
  assert.ok(stranger.realtime.isConnected());
  const value = await writeMarker("private");
  await watched.events.take(carrying(value), "the UPDATE on the owner's channel");
  await sleep(300);
  assert.ok(!channel.events.items.some(carrying(value)), "a stranger received the row");
});

test("removeChannel leaves one channel on a socket that stays open", async () => {
  // A second channel on the same client keeps the socket up: what stops the removed
  // channel's events is the server's handling of phx_leave, not a closed socket.
  second = new Inbox();
  const statuses = new Inbox();
  a.channel(`second:${user.id}`)
    .on(
      "postgres_changes",
      {
        event: "UPDATE",
        schema: "public",
        table: "user_preferences",
        filter: `user_id=eq.${user.id}`,
      },
      (payload) => second.push(payload),
    )
    .subscribe((status) => statuses.push(status));
  assert.equal(await statuses.take(() => true, "the second channel's status"), "SUBSCRIBED");
  assert.equal(a.getChannels().length, 2);

  watched.cleanup();
  await waitFor(() => a.getChannels().length === 1, "the first channel removed");
  watched.events.items.length = 0;
  const value = await writeMarker("after-leave");
  await second.take(carrying(value), "the UPDATE on the channel still joined");
  await sleep(300);
  assert.ok(a.realtime.isConnected(), "the socket closed");
  assert.deepEqual(watched.events.items, [], "a removed channel still received");
});

test("removeAllChannels: every channel leaves and nothing more arrives", async () => {
  const other = client();
  const signedIn = await other.auth.signInWithPassword({ email, password: PASSWORD });
  assert.equal(signedIn.error, null, signedIn.error?.message);
  const witness = await subscribe(other, user.id);
  assert.equal(witness.status, "SUBSCRIBED", String(witness.err));

  const results = await a.removeAllChannels();
  assert.deepEqual(results, ["ok"]); // each leave answered by a phx_reply ok
  assert.equal(a.getChannels().length, 0);
  second.items.length = 0;

  const value = await writeMarker("after-removal");
  await witness.events.take(carrying(value), "the UPDATE on another client's channel");
  await sleep(300);
  assert.deepEqual(second.items, [], "a removed channel still received");
});
