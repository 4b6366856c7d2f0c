// The account methods of the npm package against a real server: export (secrets masked),
// deletion refused with a wrong password, then deleted with the right one.

import assert from "node:assert/strict";
import { test } from "node:test";

import { LiveSettings } from "livesettings";

import { SECRET, URL, marker } from "./helpers.mjs";

test("a user exports the account, then deletes it with the password", async () => {
  const username = marker("gone").replace(/-/g, "_");
  const password = "correct horse 1";
  const session = await LiveSettings.signUp({ url: URL, username, password, storage: null });
  const ls = LiveSettings.fromSession(session, { url: URL, autoSaveDelay: null, storage: null });
  try {
    assert.equal(await ls.ready, true);
    ls.update({ theme: "dark", api_keys: { openai: SECRET } });
    assert.equal(await ls.saveNow(), true);

    const exported = await ls.exportAccount();
    assert.equal(exported.user.user_id, session.user_id);
    assert.equal(exported.user.username, username);
    assert.equal(exported.settings.theme, "dark");
    assert.equal(exported.settings.api_keys.openai.last4, SECRET.slice(-4));
    assert.ok(exported.changes.length >= 1 && exported.history_complete);
    assert.ok(!JSON.stringify(exported).includes(SECRET), "a plaintext secret in the export");

    await assert.rejects(ls.deleteAccount({ password: "not the password" }), {
      code: "wrong_password",
    });
    await ls.deleteAccount({ password });
  } finally {
    ls.close();
  }
  const after = await fetch(`${URL}/v1/settings`, {
    headers: { Authorization: `Bearer ${session.access_token}` },
  });
  assert.equal(after.status, 401);
  const signIn = LiveSettings.signIn({ url: URL, username, password, storage: null });
  await assert.rejects(signIn, { code: "invalid_credentials" });
});
