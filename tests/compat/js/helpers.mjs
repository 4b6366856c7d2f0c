// What tests/compat/test_supabase_js.py passes to these node tests, and their small helpers.
//
// COMPAT_URL            the server's origin (what a Supabase app calls its project URL)
// COMPAT_ANON_KEY       its anon key, from `livesettings token issue --anon`
// COMPAT_VSN            the realtime protocol version: "1.0.0" or "2.0.0"
// COMPAT_SERVICE_TOKEN  a service token (`token issue --service`)
// COMPAT_EXPIRED_TOKEN  a service token that expires one second after it was issued
// COMPAT_ORIGIN         an origin the server allows (ALLOWED_ORIGINS), as a browser app's

import assert from "node:assert/strict";

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run these tests through tests/compat/test_supabase_js.py`);
  return value;
}

export const URL = required("COMPAT_URL");
export const ANON_KEY = required("COMPAT_ANON_KEY");
export const VSN = required("COMPAT_VSN");
export const SERVICE_TOKEN = required("COMPAT_SERVICE_TOKEN");
export const EXPIRED_TOKEN = required("COMPAT_EXPIRED_TOKEN");
export const ORIGIN = required("COMPAT_ORIGIN");

export const PASSWORD = "correct horse 1";

/** A plaintext secret that must never come back from the server. */
export const SECRET = "sk-test-plaintext-0123456789wxyz";

/** A fresh address: GoTrue signs users up by email (the livesettings username). */
export function newEmail(prefix = "u") {
  return `${prefix}${Math.random().toString(36).slice(2, 12)}@example.com`;
}

/** A value no other test writes: the marker a test waits for. */
export function marker(label) {
  return `${label}-${Math.random().toString(36).slice(2, 10)}`;
}

/** The claims of a JWT, unverified. */
export function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `predicate` until it returns something truthy; fail after `timeout` ms. */
export async function waitFor(predicate, what, timeout = 8000) {
  const started = Date.now();
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() - started > timeout) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Events pushed to a callback, awaited one by one. */
export class Inbox {
  constructor() {
    this.items = [];
    this.push = (item) => this.items.push(item);
  }

  /** The first item (removed) for which `match` holds. */
  async take(match, what, timeout = 8000) {
    return waitFor(
      () => {
        const index = this.items.findIndex(match);
        return index >= 0 ? this.items.splice(index, 1)[0] : null;
      },
      what,
      timeout,
    );
  }
}

/** Sign a new user up through GoTrue's `signUp`; the signed-in client and the user. */
export async function signedUp(makeSupabase, prefix = "u") {
  const supabase = makeSupabase();
  const email = newEmail(prefix);
  const { data, error } = await supabase.auth.signUp({ email, password: PASSWORD });
  assert.equal(error, null, `signUp failed: ${error?.message}`);
  assert.ok(data.session, "signUp returned no session (email confirmation must be off)");
  return { supabase, email, user: data.user };
}

/** The user's livesettings token, from livesettings' own sign-in (`POST /v1/auth/token`). */
export async function livesettingsToken(email) {
  const response = await fetch(`${URL}/v1/auth/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: email, password: PASSWORD }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).access_token;
}

/** A write through livesettings' own API, as a livesettings client of the user makes it. */
export async function patchSettings(token, patch) {
  const response = await fetch(`${URL}/v1/settings`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(patch),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** Close every channel and socket and stop the refresh timer, so that node exits. */
export async function shutDown(...clients) {
  for (const supabase of clients) {
    await supabase.removeAllChannels();
    supabase.realtime.disconnect();
    await supabase.auth.stopAutoRefresh();
  }
}
