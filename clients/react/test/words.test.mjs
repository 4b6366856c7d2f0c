// The words of the package: the indicator's state and label, sentences, masked keys.
// Run: node --test clients/react/test/
import assert from "node:assert/strict";
import { test } from "node:test";
import { asSentence, describeKey, describeStatus, STATE_COLOURS } from "livesettings-react";

const base = {
  connection: "online",
  syncing: false,
  unsaved: 0,
  lastSyncAt: 1,
  errorCount: 0,
  syncsPerMinute: 0,
  error: null,
  transport: "ws",
  revision: 3,
};

test("the indicator's state follows the status, offline and errors first", () => {
  const cases = [
    [{}, "synced", "Synced"],
    [{ unsaved: 2 }, "unsaved", "Unsaved changes"],
    [{ unsaved: 1, syncing: true }, "syncing", "Saving…"],
    [{ syncing: true }, "syncing", "Syncing…"],
    [{ connection: "connecting" }, "syncing", "Connecting…"],
    [{ connection: "offline" }, "offline", "Offline"],
    [{ connection: "offline", unsaved: 1 }, "offline", "Offline — 1 unsaved change"],
    [{ connection: "offline", unsaved: 3 }, "offline", "Offline — 3 unsaved changes"],
    [{ connection: "error", error: "session expired" }, "error", "Error: Session expired."],
    [{ error: "no server", unsaved: 1 }, "error", "Error: No server."],
  ];
  for (const [change, state, label] of cases) {
    const described = describeStatus({ ...base, ...change });
    assert.deepEqual(described, { state, label }, JSON.stringify(change));
    assert.ok(STATE_COLOURS[state]);
  }
});

test("messages become sentences", () => {
  assert.equal(asSentence("the server cannot be reached"), "The server cannot be reached.");
  assert.equal(asSentence("Done!"), "Done!");
  assert.equal(asSentence("/theme must be one of…"), "/theme must be one of…");
  assert.equal(asSentence(""), null);
  assert.equal(asSentence(null), null);
});

test("a masked key is described by its last four characters only", () => {
  const saved = { set: true, last4: "x9Qz", updated_at: "t" };
  assert.equal(describeKey(saved), "Saved key ending in x9Qz");
  assert.equal(describeKey({ set: true, updated_at: "t" }), "Saved key");
  const pending = { set: true, pending: true, last4: "abcd" };
  assert.equal(describeKey(pending), "Saved key ending in abcd (saving…)");
  assert.equal(describeKey(null), "Not set");
  assert.equal(describeKey(undefined), "Not set");
});
