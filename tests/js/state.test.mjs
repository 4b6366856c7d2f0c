// The browser client's pure state core against the shared vectors (spec/*.json), under node:
//   node --test tests/js/
// tests/test_patch_vectors.py runs it from the Python suite, with the paths of the installed
// package in LIVESETTINGS_CLIENT and LIVESETTINGS_SPEC.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

const root = new URL("../../src/livesettings/", import.meta.url);
const dir = (name, fallback) =>
  process.env[name] ? pathToFileURL(process.env[name] + "/") : new URL(fallback, root);
const CLIENT = dir("LIVESETTINGS_CLIENT", "server/client/");
const SPEC = dir("LIVESETTINGS_SPEC", "spec/");
const readSpec = (name) => JSON.parse(readFileSync(new URL(name, SPEC), "utf-8"));

const { applyPatch, maskLocally } = await import(new URL("state.js", CLIENT));
const errors = await import(new URL("errors.js", CLIENT));
const vectors = readSpec("patch_vectors.json");
const codes = readSpec("error_codes.json");

for (const { name, doc, patch, result } of vectors.apply_patch) {
  test(`applyPatch: ${name}`, () => {
    const before = JSON.stringify(doc);
    assert.deepEqual(applyPatch(doc, patch), result);
    assert.equal(JSON.stringify(doc), before, "the document was changed in place");
  });
}

test("maskLocally shows the last four characters of long secrets only", () => {
  for (const { secret, last4 } of vectors.mask) {
    const masked = maskLocally(secret);
    assert.equal(masked.set, true);
    assert.equal(masked.last4 ?? null, last4, JSON.stringify(secret));
  }
});

test("the code groups of errors.js are the spec's", () => {
  const groups = codes.browser_groups;
  assert.deepEqual([...errors.AUTH_CODES].sort(), [...groups.auth].sort());
  assert.deepEqual([...errors.SECRET_CODES].sort(), [...groups.secret].sort());
  assert.deepEqual([...errors.SESSION_END_CODES].sort(), [...groups.session_end].sort());
  assert.deepEqual([...errors.TRANSIENT_CODES].sort(), [...groups.transient].sort());
});
