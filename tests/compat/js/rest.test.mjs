// supabase-js's `from('user_preferences')` (PostgREST) against livesettings' /rest/v1: the
// seed's reads and writes, PGRST116 on no row, masked secrets, the tokens PostgREST refuses.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  EXPIRED_TOKEN,
  ORIGIN,
  SECRET,
  SERVICE_TOKEN,
  URL,
  claims,
  livesettingsToken,
  shutDown,
  signedUp,
  sleep,
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
/** A random UUID no user has. */
const NOBODY = "00000000-0000-4000-8000-000000000000";

const opened = [];
function client(options) {
  const supabase = makeSupabase(options);
  opened.push(supabase);
  return supabase;
}

after(() => shutDown(...opened));

test("upsert (onConflict user_id) writes the row; select('*').eq().single() reads it", async () => {
  const { supabase, user } = await signedUp(client);
  const table = () => supabase.from("user_preferences");

  const created = await table().upsert(
    { user_id: user.id, theme: "dark", language: "fr", preferences: { fontSize: 14 } },
    { onConflict: "user_id" },
  );
  assert.equal(created.error, null, JSON.stringify(created.error));
  assert.equal(created.status, 201);

  const read = await table().select("*").eq("user_id", user.id).single();
  assert.equal(read.error, null, JSON.stringify(read.error));
  assert.equal(read.status, 200);
  assert.deepEqual(Object.keys(read.data).sort(), COLUMNS);
  assert.equal(read.data.user_id, user.id);
  assert.equal(read.data.theme, "dark");
  assert.equal(read.data.language, "fr");
  assert.deepEqual(read.data.preferences, { fontSize: 14 });
  assert.deepEqual(read.data.api_keys, {});
  assert.ok(!Number.isNaN(Date.parse(read.data.updated_at)), read.data.updated_at);
  assert.ok(!Number.isNaN(Date.parse(read.data.created_at)), read.data.created_at);

  // Upsert merges: the columns it names change, the others stay, the row keeps its id.
  const merged = await realtimeSettingsService(supabase).saveSettings(user.id, {
    theme: "system",
  });
  assert.equal(merged.theme, "system");
  assert.equal(merged.language, "fr");
  assert.equal(merged.id, read.data.id);

  // Without .single(): an array of the one row.
  const rows = await table().select("*").eq("user_id", user.id);
  assert.equal(rows.error, null, JSON.stringify(rows.error));
  assert.equal(rows.data.length, 1);
  assert.equal(rows.data[0].theme, "system");
});

test("select().single() of no row is PGRST116 (406); without single() an empty array", async () => {
  const { supabase, user } = await signedUp(client);
  const { user: other } = await signedUp(client, "o");
  await supabase.from("user_preferences").upsert({ user_id: user.id }, { onConflict: "user_id" });
  for (const id of [other.id, NOBODY]) {
    const single = await supabase.from("user_preferences").select("*").eq("user_id", id).single();
    assert.equal(single.data, null);
    assert.equal(single.status, 406, JSON.stringify(single));
    assert.equal(single.error?.code, "PGRST116", JSON.stringify(single.error));
    for (const field of ["details", "hint", "message"]) assert.ok(field in single.error, field);

    const many = await supabase.from("user_preferences").select("*").eq("user_id", id);
    assert.equal(many.error, null, JSON.stringify(many.error));
    assert.deepEqual(many.data, []);
  }
  // The seed's getLatestSettings treats PGRST116 as "no settings yet".
  assert.equal(await realtimeSettingsService(supabase).getLatestSettings(other.id), null);
});

test("update() is 204; the seed's update().select().single() returns the row", async () => {
  const { supabase, user } = await signedUp(client);
  const table = () => supabase.from("user_preferences");
  await table().upsert({ user_id: user.id, theme: "light" }, { onConflict: "user_id" });

  const plain = await table().update({ theme: "dark" }).eq("user_id", user.id);
  assert.equal(plain.error, null, JSON.stringify(plain.error));
  assert.equal(plain.status, 204);
  assert.equal(plain.data, null);

  const row = await realtimeSettingsService(supabase).updateSettingsRealtime(user.id, {
    language: "de",
    ai_providers: { default: "openai", openai: { model: "gpt-4o" } },
  });
  assert.equal(row.user_id, user.id);
  assert.equal(row.theme, "dark");
  assert.equal(row.language, "de");
  assert.deepEqual(row.ai_providers, { default: "openai", openai: { model: "gpt-4o" } });

  const none = await table().update({ theme: "dark" }).eq("user_id", NOBODY).select().single();
  assert.equal(none.error?.code, "PGRST116", JSON.stringify(none));
  assert.equal(none.status, 406);
});

test("REST writes are livesettings writes: GET /v1/settings shows them", async () => {
  const { supabase, email, user } = await signedUp(client);
  await supabase.from("user_preferences").upsert({ user_id: user.id }, { onConflict: "user_id" });
  await supabase
    .from("user_preferences")
    .update({ theme: "system", preferences: { sidebar: "left" } })
    .eq("user_id", user.id);
  const token = await livesettingsToken(email);
  const response = await fetch(`${URL}/v1/settings`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.settings.theme, "system");
  assert.deepEqual(body.settings.preferences, { sidebar: "left" });
  assert.ok(body.revision >= 1, JSON.stringify(body));
});

test("api_keys: a plaintext write is sealed, every read masks it", async () => {
  const { supabase, user } = await signedUp(client);
  const table = () => supabase.from("user_preferences");
  await table().upsert({ user_id: user.id }, { onConflict: "user_id" });
  const written = await table()
    .update({ api_keys: { openai: SECRET } })
    .eq("user_id", user.id)
    .select()
    .single();
  assert.equal(written.error, null, JSON.stringify(written.error));
  const read = await table().select("api_keys").eq("user_id", user.id).single();
  for (const row of [written.data, read.data]) {
    assert.equal(row.api_keys.openai.set, true);
    assert.equal(row.api_keys.openai.last4, SECRET.slice(-4));
    assert.ok(!JSON.stringify(row).includes(SECRET), "a plaintext secret was read back");
  }
  assert.deepEqual(Object.keys(read.data), ["api_keys"]);
});

test("select('theme,language') answers only those columns", async () => {
  const { supabase, user } = await signedUp(client);
  await supabase
    .from("user_preferences")
    .upsert({ user_id: user.id, theme: "dark" }, { onConflict: "user_id" });
  const { data, error } = await supabase
    .from("user_preferences")
    .select("theme,language")
    .eq("user_id", user.id)
    .single();
  assert.equal(error, null, JSON.stringify(error));
  assert.deepEqual(data, { theme: "dark", language: "en" });
});

test("a service token reaches any user's row", async () => {
  const { supabase, user } = await signedUp(client);
  await supabase
    .from("user_preferences")
    .upsert({ user_id: user.id, language: "ja" }, { onConflict: "user_id" });
  const service = client({
    global: { headers: { Authorization: `Bearer ${SERVICE_TOKEN}` } },
  });
  const { data, error } = await service
    .from("user_preferences")
    .select("*")
    .eq("user_id", user.id)
    .single();
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(data.language, "ja");
});

test("a bad JWT is PGRST301, an expired one PGRST303", async () => {
  const bad = client({ global: { headers: { Authorization: "Bearer not.a.jwt" } } });
  const one = await bad.from("user_preferences").select("*").eq("user_id", NOBODY);
  assert.equal(one.status, 401, JSON.stringify(one));
  assert.equal(one.error?.code, "PGRST301", JSON.stringify(one.error));

  const wait = claims(EXPIRED_TOKEN).exp * 1000 - Date.now() + 1100;
  if (wait > 0) await sleep(wait);
  const expired = client({ global: { headers: { Authorization: `Bearer ${EXPIRED_TOKEN}` } } });
  const two = await expired.from("user_preferences").select("*").eq("user_id", NOBODY);
  assert.equal(two.status, 401, JSON.stringify(two));
  assert.equal(two.error?.code, "PGRST303", JSON.stringify(two.error));
});

test("no apikey is refused; the anon key alone sees no row, as under RLS", async () => {
  const response = await fetch(`${URL}/rest/v1/user_preferences?select=*`);
  assert.equal(response.status, 401, await response.clone().text());
  const { supabase, user } = await signedUp(client);
  await supabase.from("user_preferences").upsert({ user_id: user.id }, { onConflict: "user_id" });
  const anon = client(); // signed out: the anon key is both apikey and bearer
  const { data, error, status } = await anon.from("user_preferences").select("*");
  assert.equal(error, null, JSON.stringify(error));
  assert.equal(status, 200);
  assert.deepEqual(data, []);
});

test("CORS lets a browser app send supabase-js's headers", async () => {
  const headers = [
    "apikey",
    "authorization",
    "x-client-info",
    "content-type",
    "prefer",
    "accept-profile",
    "content-profile",
    "x-supabase-api-version",
    "x-retry-count",
  ];
  for (const path of ["/rest/v1/user_preferences", "/auth/v1/token"]) {
    const response = await fetch(`${URL}${path}`, {
      method: "OPTIONS",
      headers: {
        Origin: ORIGIN,
        "Access-Control-Request-Method": path.startsWith("/rest") ? "PATCH" : "POST",
        "Access-Control-Request-Headers": headers.join(","),
      },
    });
    assert.ok(response.status === 200 || response.status === 204, `${path}: ${response.status}`);
    assert.equal(response.headers.get("access-control-allow-origin"), ORIGIN);
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const header of headers) {
      assert.ok(allowed === "*" || allowed.split(/\s*,\s*/).includes(header), `${path}: ${header}`);
    }
  }
});
