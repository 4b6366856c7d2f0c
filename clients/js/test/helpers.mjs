// Shared by the node tests: the server and users that tests/clients/test_js_package.py made.
//
// LIVESETTINGS_TEST_URL      the server's origin
// LIVESETTINGS_TEST_SERVICE  a service token (claim role: "service")
// LIVESETTINGS_TEST_SHORT_SERVICE  one that expires 4 seconds after it was issued
// LIVESETTINGS_TEST_USERS    JSON {name: {user_id, token, username}}: signed-up users, a few
//                            per file

import assert from "node:assert/strict";

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run these tests through tests/clients/test_js_package.py`);
  return value;
}

export const URL = required("LIVESETTINGS_TEST_URL");
export const SERVICE_TOKEN = required("LIVESETTINGS_TEST_SERVICE");
/** The same service's token living 4 seconds: it must be renewed in time. */
export const SHORT_SERVICE_TOKEN = required("LIVESETTINGS_TEST_SHORT_SERVICE");
export const USERS = JSON.parse(required("LIVESETTINGS_TEST_USERS"));

/** A plaintext secret that must never come back from the server. */
export const SECRET = "sk-test-plaintext-0123456789wxyz";

/** Poll `predicate` until it returns something truthy; fail after `timeout` ms (a hang). */
export async function waitFor(predicate, what, timeout = 15000) {
  const started = Date.now();
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() - started > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A write by the user itself over HTTP, as another app of the user would make it. */
export async function patchAs(user, patch) {
  const response = await fetch(`${URL}/v1/settings`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${user.token}`, "Content-Type": "application/json" },
    body: JSON.stringify(patch),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** The user's settings, read with its own token. */
export async function getAs(user) {
  const response = await fetch(`${URL}/v1/settings`, {
    headers: { Authorization: `Bearer ${user.token}` },
  });
  assert.equal(response.status, 200);
  return (await response.json()).settings;
}

/** A value no other test writes: the marker a test waits for. */
export function marker(label) {
  return `${label}-${Math.random().toString(36).slice(2, 10)}`;
}
