// supabase-js's auth (GoTrue) against livesettings' /auth/v1: sign-up, sign-in, the user,
// refresh and sign-out, as the seed's app calls them.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { PASSWORD, claims, shutDown, signedUp } from "./helpers.mjs";
import { makeSupabase } from "./seed.mjs";

const opened = [];
function client() {
  const supabase = makeSupabase();
  opened.push(supabase);
  return supabase;
}

after(() => shutDown(...opened));

test("signUp makes a user and a session in GoTrue's shape", async () => {
  const { supabase, email, user } = await signedUp(client);
  assert.match(user.id, /^[0-9a-f-]{36}$/);
  assert.equal(user.email, email);
  assert.equal(user.aud, "authenticated");
  assert.equal(user.role, "authenticated");
  assert.equal(typeof user.app_metadata, "object");
  assert.equal(typeof user.user_metadata, "object");
  assert.ok(user.created_at);

  const { data } = await supabase.auth.getSession();
  const session = data.session;
  assert.equal(session.token_type, "bearer");
  assert.ok(session.refresh_token);
  assert.ok(session.expires_in > 0);
  assert.ok(Math.abs(session.expires_at - (Date.now() / 1000 + session.expires_in)) < 30);
  const token = claims(session.access_token);
  assert.equal(token.sub, user.id);
  assert.equal(token.role, "authenticated");
  assert.equal(token.aud, "authenticated");
});

test("signInWithPassword signs the user in on another client; getUser names it", async () => {
  const { email, user } = await signedUp(client);
  const other = client();
  const { data, error } = await other.auth.signInWithPassword({ email, password: PASSWORD });
  assert.equal(error, null, error?.message);
  assert.equal(data.user.id, user.id);
  assert.equal(data.session.user.email, email);
  assert.equal(claims(data.session.access_token).sub, user.id);

  const me = await other.auth.getUser();
  assert.equal(me.error, null, me.error?.message);
  assert.equal(me.data.user.id, user.id);
  assert.equal(me.data.user.email, email);
});

test("a wrong password is refused with GoTrue's 400 and no session", async () => {
  const { email } = await signedUp(client);
  const other = client();
  const { data, error } = await other.auth.signInWithPassword({ email, password: "wrong pass 1" });
  assert.ok(error, "a wrong password signed in");
  assert.equal(error.status, 400);
  assert.equal(data.session, null);
  assert.equal((await other.auth.getSession()).data.session, null);
});

test("an address taken already cannot sign up again", async () => {
  const { email } = await signedUp(client);
  const { data, error } = await client().auth.signUp({ email, password: PASSWORD });
  assert.ok(error, "the same email signed up twice");
  assert.ok(error.status >= 400 && error.status < 500, String(error.status));
  assert.equal(data.session, null);
});

test("refreshSession gives a new token pair for the same user", async () => {
  const { supabase, user } = await signedUp(client);
  const before = (await supabase.auth.getSession()).data.session;
  await new Promise((resolve) => setTimeout(resolve, 1100)); // a later `iat`
  const { data, error } = await supabase.auth.refreshSession();
  assert.equal(error, null, error?.message);
  assert.notEqual(data.session.access_token, before.access_token);
  assert.notEqual(data.session.refresh_token, before.refresh_token);
  assert.equal(claims(data.session.access_token).sub, user.id);
  assert.ok(claims(data.session.access_token).iat > claims(before.access_token).iat);
});

test("signOut ends the session: its refresh token no longer works", async () => {
  const { supabase } = await signedUp(client);
  const session = (await supabase.auth.getSession()).data.session;
  const { error } = await supabase.auth.signOut();
  assert.equal(error, null, error?.message);
  assert.equal((await supabase.auth.getSession()).data.session, null);

  const again = client();
  const refreshed = await again.auth.refreshSession({ refresh_token: session.refresh_token });
  assert.ok(refreshed.error, "a signed-out refresh token was refreshed");
  assert.equal(refreshed.data.session, null);
});
