// Server rendering of the components with a real client (closed before it connects):
// the indicator's first state, labelled controls, the provider's fallback.
// Run: node --test clients/react/test/
import assert from "node:assert/strict";
import { test } from "node:test";
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { LiveSettings } from "livesettings";
import {
  LiveSettingsProvider,
  RealtimeStatusIndicator,
  SettingsForm,
  useModelSettings,
} from "livesettings-react";

function Page() {
  const { settings, updateSettings } = useModelSettings();
  return h(SettingsForm, { settings, onChange: updateSettings, schema: null });
}

function render(tree) {
  const client = new LiveSettings({ url: "http://127.0.0.1:9", token: "t", userId: "u1" });
  try {
    return renderToString(h(LiveSettingsProvider, { client }, tree));
  } finally {
    client.close();
  }
}

test("the indicator starts as connecting, a status region with a state", () => {
  const html = render(h(RealtimeStatusIndicator));
  assert.match(html, /^<div role="status" aria-live="polite" data-state="syncing"/);
  assert.match(html, /<span data-part="label">Connecting…<\/span>/);
});

test("every control of the form has a label that names it", () => {
  const html = render(h(Page));
  const labelled = [...html.matchAll(/<label for="([^"]+)">([^<]+)<\/label>/g)];
  const names = labelled.map((m) => m[2]);
  for (const name of ["Theme", "Language", "AI provider", "Model", "OpenAI API key"]) {
    assert.ok(names.includes(name), `${name} in ${names}`);
  }
  assert.ok(names.includes("Preferences (JSON)"));
  for (const [, id, name] of labelled) {
    assert.ok(html.includes(`id="${id}"`), `the control of ${name}`);
  }
  const controls = [...html.matchAll(/<(?:input|select|textarea)[^>]*\bid="([^"]+)"/g)];
  const targets = new Set(labelled.map((m) => m[1]));
  for (const [, id] of controls) assert.ok(targets.has(id), `a label for #${id}`);
});

test("the provider renders its fallback until its client exists", () => {
  const options = { url: "http://127.0.0.1:9", token: "t", userId: "u1", fallback: "Loading" };
  const tree = h(LiveSettingsProvider, options, h(Page));
  assert.equal(renderToString(tree), "Loading");
});

test("the hooks need a provider", () => {
  assert.throws(() => renderToString(h(Page)), /inside a <LiveSettingsProvider>/);
});
