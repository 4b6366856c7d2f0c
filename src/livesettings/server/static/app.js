// The settings page: sign-in, the settings form, the status indicator and the change history,
// built on the browser client in livesettings.js. No inline script or style (CSP).

import {
  Connection,
  LiveSettings,
  LiveSettingsError,
  USER_KEY,
  diffPatch,
  parsePath,
} from "./livesettings.js";
import {
  PROVIDERS,
  controlId,
  describePatch,
  fieldLabel,
  formatValue,
  providerName,
  relativeTime,
} from "./labels.js";
import { $, element } from "./dom.js";
import { DocSwitcher } from "./doc_switcher.js";


const SCHEMA_KEY = "livesettings:schema";
const DEFAULT_TEMPERATURE = 1;
const MAX_TOKENS_LIMIT = 10_000_000;

let client = null; // the client of the document shown: personal, or a team's
let session = null; // the signed-in session: each document's client is made from it
let documents = null; // the document switcher, team actions and members (doc_switcher.js)
let stopListening = [];
let fieldErrors = new Map(); // control id -> message (the control keeps what was typed)
let schema = null;
let preferencesDirty = false;
let historyTimer = null;
let historyRequest = 0; // the latest history request: an older answer arriving later is stale

// Short timings for tests and demos: /?autoSaveDelay=200&heartbeatTimeout=1500&transport=sse
function clientOptions() {
  const params = new URLSearchParams(location.search);
  const options = {};
  for (const name of [
    "autoSaveDelay",
    "heartbeatInterval",
    "heartbeatTimeout",
    "reconnectDelay",
    "maxReconnectDelay",
  ]) {
    const text = params.get(name);
    if (text === null) continue;
    if (name === "autoSaveDelay" && text === "off") options.autoSaveDelay = null;
    else if (/^\d{1,7}$/.test(text)) options[name] = Number(text);
  }
  const transport = params.get("transport");
  if (["auto", "websocket", "sse"].includes(transport)) options.transport = transport;
  return options;
}

// -- labels and values -------------------------------------------------------------------

function currentProvider(settings) {
  const chosen = settings.ai_providers.default;
  return typeof chosen === "string" && chosen ? chosen : "openai";
}

// -- field errors ------------------------------------------------------------------------

function errorTarget(pointer) {
  const [field, a] = parsePath(pointer ?? "");
  if (field === "api_keys") return a && $(`key-${a}-error`) ? `key-${a}` : "key-custom";
  return controlId(pointer);
}

function showFieldError(id, message) {
  fieldErrors.set(id, message);
  const slot = $(`${id}-error`);
  if (slot) slot.textContent = message;
  const control = $(id) ?? $(`${id}-json`) ?? $(`${id}-value`);
  if (control) control.setAttribute("aria-invalid", "true");
}

function clearFieldError(id) {
  if (!fieldErrors.has(id)) return;
  fieldErrors.delete(id);
  const slot = $(`${id}-error`);
  if (slot) slot.textContent = "";
  const control = $(id) ?? $(`${id}-json`) ?? $(`${id}-value`);
  if (control) control.removeAttribute("aria-invalid");
}

function addNotice(kind, text) {
  const notices = $("notices");
  const dismiss = element("button", { type: "button", class: "quiet", text: "Dismiss" });
  const item = element("div", { class: `notice notice-${kind}` }, element("p", { text }), dismiss);
  dismiss.addEventListener("click", () => item.remove());
  notices.append(item);
  while (notices.children.length > 4) notices.firstElementChild.remove();
}

// -- rendering ---------------------------------------------------------------------------

// Never overwrite what the user is typing, nor a value the server refused (it stays to fix).
function setControl(id, value) {
  const control = $(id);
  if (!control || document.activeElement === control || fieldErrors.has(id)) return;
  if (control.type === "checkbox") control.checked = Boolean(value);
  else if (control.value !== value) control.value = value;
}

function render(settings) {
  document.documentElement.dataset.theme = settings.theme;
  setControl("theme", settings.theme);
  setControl("language", settings.language);

  const provider = currentProvider(settings);
  renderProviderOptions(settings);
  setControl("provider", provider);
  const config = settings.ai_providers[provider];
  const conf = config && typeof config === "object" ? config : {};
  setControl("model", typeof conf.model === "string" ? conf.model : "");
  const temperature = typeof conf.temperature === "number" ? conf.temperature : DEFAULT_TEMPERATURE;
  setControl("temperature", String(temperature));
  if (document.activeElement !== $("temperature")) {
    $("temperature-value").textContent = temperature.toFixed(1);
  }
  setControl("max-tokens", Number.isInteger(conf.max_tokens) ? String(conf.max_tokens) : "");
  $("model-hint").textContent = `For ${providerName(provider)}, e.g. ${
    { openai: "gpt-4o", anthropic: "claude-sonnet-4", google: "gemini-2.5-pro", mistral: "mistral-large", ollama: "llama3.1" }[provider] ?? "the model name"
  }.`;

  renderKeys(settings.api_keys);
  renderPreferences(settings.preferences);
}

function renderProviderOptions(settings) {
  const select = $("provider");
  const ids = PROVIDERS.map(([id]) => id);
  for (const [name, value] of Object.entries(settings.ai_providers)) {
    if (name !== "default" && value && typeof value === "object" && !ids.includes(name)) ids.push(name);
  }
  const chosen = settings.ai_providers.default;
  if (typeof chosen === "string" && chosen && !ids.includes(chosen)) ids.push(chosen);
  const current = Array.from(select.options, (o) => o.value);
  if (current.join("\n") === ids.join("\n")) return;
  const keep = select.value;
  select.replaceChildren(...ids.map((id) => element("option", { value: id, text: providerName(id) })));
  if (keep) select.value = keep;
}

function renderKeys(keys) {
  const rows = $("key-rows");
  const names = PROVIDERS.map(([id]) => id);
  for (const name of Object.keys(keys)) if (!names.includes(name)) names.push(name);
  for (const name of names) {
    let row = rows.querySelector(`[data-key="${CSS.escape(name)}"]`);
    if (!row) {
      row = keyRow(name);
      rows.append(row);
    }
    const secret = keys[name];
    const state = row.querySelector(".key-state");
    const remove = row.querySelector("[data-action=remove]");
    if (secret && secret.set) {
      const parts = [secret.last4 ? `Set · ends in ${secret.last4}` : "Set"];
      if (secret.pending) parts.push("saving…");
      else if (secret.updated_at) parts.push(`updated ${relativeTime(Date.parse(secret.updated_at))}`);
      state.textContent = parts.join(" · ");
      state.dataset.set = "true";
      remove.disabled = false;
    } else {
      state.textContent = "Not set";
      state.dataset.set = "false";
      remove.disabled = true;
    }
  }
  for (const row of Array.from(rows.children)) {
    const name = row.dataset.key;
    if (!names.includes(name)) row.remove();
  }
}

function keyRow(name) {
  const id = `key-${name}`;
  const label = `${providerName(name)} API key`;
  const input = element("input", {
    id,
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": `${id}-state ${id}-error`,
  });
  const save = element("button", { type: "submit", "aria-label": `Save key for ${providerName(name)}`, text: "Save key" });
  const remove = element("button", {
    type: "button",
    class: "quiet",
    "data-action": "remove",
    "aria-label": `Remove key for ${providerName(name)}`,
    text: "Remove",
  });
  const form = element(
    "form",
    { class: "key-row", "data-key": name, novalidate: true },
    element("div", { class: "key-head" },
      element("label", { for: id, text: label }),
      element("span", { id: `${id}-state`, class: "key-state", text: "Not set" })),
    element("div", { class: "key-input" }, input, save, remove),
    element("p", { id: `${id}-error`, class: "field-error", "aria-live": "polite" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value;
    input.value = ""; // the key leaves the page at once: never kept in the DOM
    if (!value) {
      showFieldError(id, "Type or paste the key first.");
      return;
    }
    clearFieldError(id);
    setSecret(id, name, value);
  });
  input.addEventListener("input", () => clearFieldError(id));
  remove.addEventListener("click", () => {
    clearFieldError(id);
    setSecret(id, name, null);
  });
  return form;
}

function setSecret(errorId, name, value) {
  if (!client) return;
  try {
    client.set(["api_keys", name], value);
  } catch (err) {
    showFieldError(errorId, err instanceof LiveSettingsError ? err.message : String(err));
  }
}

// -- preferences ---------------------------------------------------------------------------

function renderPreferences(preferences) {
  if (schema && schema.type === "object" && schema.properties) {
    renderSchemaForm(preferences);
    return;
  }
  $("preferences-schema-form").hidden = true;
  $("preferences-json-form").hidden = false;
  const area = $("preferences-json");
  if (document.activeElement !== area && !preferencesDirty && !fieldErrors.has("preferences")) {
    area.value = JSON.stringify(preferences, null, 2);
  }
}

function schemaControl(name, prop) {
  const id = `pref-${name}`;
  const title = typeof prop.title === "string" ? prop.title : name;
  let control;
  if (Array.isArray(prop.enum)) {
    const options = prop.enum.map((v) => element("option", { value: JSON.stringify(v), text: String(v) }));
    if (!("default" in prop)) options.unshift(element("option", { value: "null", text: "Not set" }));
    control = element("select", { id }, ...options);
  } else if (prop.type === "boolean") {
    control = element("input", { id, type: "checkbox" });
  } else if (prop.type === "integer" || prop.type === "number") {
    control = element("input", {
      id,
      type: "number",
      step: prop.type === "integer" ? "1" : "any",
      min: prop.minimum,
      max: prop.maximum,
    });
  } else if (prop.type === "string") {
    control = element("input", { id, maxlength: prop.maxLength, autocomplete: "off" });
  } else {
    control = element("textarea", { id, rows: "3", spellcheck: "false" });
  }
  control.dataset.pref = name;
  control.setAttribute("aria-describedby", "preferences-error");
  const field = element("div", { class: prop.type === "boolean" ? "field field-check" : "field" },
    element("label", { for: id, text: title }), control);
  if (typeof prop.description === "string") field.append(element("p", { class: "hint", text: prop.description }));
  const commit = () => {
    let value;
    if (control.type === "checkbox") value = control.checked;
    else if (control.tagName === "SELECT") value = JSON.parse(control.value);
    else if (control.type === "number") {
      if (control.value === "") value = null;
      else {
        value = Number(control.value);
        if (!Number.isFinite(value)) return showFieldError("preferences", `${title}: enter a number`);
      }
    } else if (control.tagName === "TEXTAREA") {
      try {
        value = control.value.trim() === "" ? null : JSON.parse(control.value);
      } catch {
        return showFieldError("preferences", `${title}: this is not valid JSON`);
      }
    } else value = control.value === "" ? null : control.value;
    clearFieldError("preferences");
    client?.set(["preferences", name], value);
  };
  control.addEventListener("change", commit);
  return field;
}

function renderSchemaForm(preferences) {
  const form = $("preferences-schema-form");
  $("preferences-json-form").hidden = true;
  form.hidden = false;
  if (!form.childElementCount) {
    for (const [name, prop] of Object.entries(schema.properties)) {
      if (prop && typeof prop === "object") form.append(schemaControl(name, prop));
    }
  }
  for (const control of form.querySelectorAll("[data-pref]")) {
    if (document.activeElement === control) continue;
    // The schema's default where the value is absent (the server fills them in on reads).
    const name = control.dataset.pref;
    const value = name in preferences ? preferences[name] : schema.properties[name]?.default;
    if (control.type === "checkbox") control.checked = Boolean(value);
    else if (control.tagName === "SELECT") control.value = JSON.stringify(value ?? null);
    else if (control.tagName === "TEXTAREA") control.value = value === undefined ? "" : JSON.stringify(value, null, 2);
    else control.value = value === undefined || value === null ? "" : String(value);
  }
}

async function loadSchema() {
  try {
    const response = await fetch("/v1/schema", { cache: "no-store" });
    if (!response.ok) return;
    const body = await response.json();
    const loaded = body && typeof body.schema === "object" ? body.schema : null;
    // Loaded again on every reconnect: rebuild the form only when the schema changed, else a
    // control being typed into would be replaced under the user's fingers.
    if (JSON.stringify(loaded) === JSON.stringify(schema)) return;
    schema = loaded;
    localStorage.setItem(SCHEMA_KEY, JSON.stringify(schema));
    $("preferences-schema-form").replaceChildren();
    if (client) renderPreferences(client.settings.preferences);
  } catch {
    // offline: the cached schema (if any) is used
  }
}

// -- status ------------------------------------------------------------------------------

function statusWords(status) {
  const changes = (n) => `${n} unsaved change${n === 1 ? "" : "s"}`;
  if (status.connection === Connection.ERROR) return ["error", `Error: ${status.error ?? "cannot connect"}`];
  if (status.connection === Connection.OFFLINE) {
    return ["offline", status.unsaved ? `Offline — ${changes(status.unsaved)}` : "Offline"];
  }
  if (status.connection === Connection.CONNECTING) return ["syncing", "Connecting…"];
  if (status.syncing) return ["syncing", "Syncing…"];
  if (status.error) return ["error", `Error: ${status.error}`];
  if (status.unsaved) return ["unsaved", `Unsaved changes (${status.unsaved})`];
  return ["synced", "Synced"];
}

function renderStatus(status) {
  const [state, words] = statusWords(status);
  const button = $("status");
  button.dataset.state = state;
  $("status-text").textContent = words;
  button.title = words;
  const live = $("status-live");
  if (live.textContent !== words) live.textContent = words;
  renderPanel(status);
}

function renderPanel(status = client?.status) {
  if (!status) return;
  const connection = {
    online: status.transport === "sse" ? "Online (event stream)" : "Online",
    offline: "Offline",
    connecting: "Connecting",
    error: "Error",
  }[status.connection];
  $("panel-connection").textContent = connection;
  $("panel-last-sync").textContent = status.lastSyncAt
    ? `${relativeTime(status.lastSyncAt)} (${new Date(status.lastSyncAt).toLocaleTimeString()})`
    : "never";
  $("panel-unsaved").textContent = String(status.unsaved);
  $("panel-errors").textContent = String(status.errorCount);
  $("panel-rate").textContent = `${status.syncsPerMinute} per minute`;
  $("panel-revision").textContent = String(status.revision);
}

// -- history -----------------------------------------------------------------------------


function scheduleHistory() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(loadHistory, 600);
}

async function loadHistory() {
  if (!client) return;
  const list = $("history-list");
  const message = $("history-message");
  if (client.status.connection !== Connection.ONLINE) {
    message.textContent = "Recent changes are shown when you are online.";
    return;
  }
  const current = client;
  const request = ++historyRequest;
  let changes;
  try {
    changes = await current.history({ limit: 10 });
  } catch (err) {
    if (request === historyRequest && current === client) {
      message.textContent = `Recent changes cannot be loaded: ${err.message}`;
    }
    return;
  }
  // A slow answer to an earlier request must not replace a newer list (nor another user's).
  if (request !== historyRequest || current !== client) return;
  message.textContent = changes.length ? "" : "No changes yet.";
  list.replaceChildren(
    ...changes.map((change) => {
      const revert = element("button", {
        type: "button",
        class: "quiet",
        "aria-label": `Revert to revision ${change.revision}`,
        text: "Revert to this",
      });
      revert.disabled = change.revision === client.revision;
      revert.addEventListener("click", () => revertTo(change.revision));
      return element(
        "li",
        { "data-revision": change.revision },
        element("div", { class: "history-text" },
          element("span", { class: "history-what", text: describePatch(change.patch) }),
          element("span", {
            class: "hint",
            text: `Revision ${change.revision} · ${relativeTime(change.committed_at)} · ${
              change.mine ? "this browser" : "another device or app"
            }`,
          })),
        revert,
      );
    }),
  );
}

async function revertTo(revision) {
  try {
    const result = await client.revert(revision);
    addNotice("info", `Settings reverted to revision ${revision} (now revision ${result.revision}).`);
  } catch (err) {
    addNotice("error", `Revert failed: ${err.message}`);
  }
}

// -- client events -------------------------------------------------------------------------

function onConflict(conflict) {
  // A conflict that changed nothing visible (both sides wrote the same value) is not news.
  if (!conflict.lost || JSON.stringify(conflict.mine) === JSON.stringify(conflict.winner)) return;
  const label = fieldLabel(conflict.path);
  const mine = conflict.mine === undefined ? "" : ` (${formatValue(conflict.path, conflict.mine)})`;
  addNotice(
    "conflict",
    `Conflict: your change to ${label}${mine} lost to a change made at the same time elsewhere. ` +
      `${label} is now ${formatValue(conflict.path, conflict.winner)}.`,
  );
}

function onClientError(error) {
  if (documents.onError(error)) return; // removed from the team shown: back to Personal
  if (error.code === "session_expired" || error.code === "signed_out") {
    const unsaved = client ? client.status.unsaved : 0;
    stop();
    showSignIn(
      error.code === "signed_out"
        ? "You were signed out."
        : `Your session has ended: sign in again.${
            unsaved ? ` Your ${unsaved} unsaved change${unsaved === 1 ? " is" : "s are"} kept on this device.` : ""
          }`,
    );
    return;
  }
  const target = errorTarget(error.path);
  if (target) showFieldError(target, error.message);
  else addNotice("error", error.message);
}

// -- wiring ------------------------------------------------------------------------------

function edit(fn) {
  if (!client) return;
  try {
    fn(client);
  } catch (err) {
    addNotice("error", err.message);
  }
}

function wireForm() {
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  $("theme").addEventListener("change", (event) => {
    clearFieldError("theme");
    edit((c) => c.set("theme", event.target.value));
  });
  $("language").addEventListener("input", () => clearFieldError("language"));
  $("language").addEventListener("change", (event) => {
    const tag = event.target.value.trim();
    if (!tag) {
      showFieldError("language", "Enter a language tag such as en or pt-BR.");
      return;
    }
    if (!/^[A-Za-z0-9-]{1,35}$/.test(tag)) {
      showFieldError("language", "A language tag has only letters, digits and hyphens, such as pt-BR.");
      return;
    }
    clearFieldError("language");
    edit((c) => c.set("language", tag));
  });
  $("provider").addEventListener("change", (event) => {
    clearFieldError("provider");
    edit((c) => c.set("/ai_providers/default", event.target.value));
  });
  const providerEdit = (key, value) =>
    edit((c) => {
      const settings = c.settings;
      const provider = currentProvider(settings);
      const patch = { [provider]: { [key]: value } };
      if (settings.ai_providers.default === undefined) patch.default = provider;
      c.update({ ai_providers: patch });
    });
  $("model").addEventListener("input", (event) => {
    clearFieldError("model");
    providerEdit("model", event.target.value === "" ? null : event.target.value);
  });
  $("temperature").addEventListener("input", (event) => {
    const value = Math.round(Number(event.target.value) * 10) / 10;
    $("temperature-value").textContent = value.toFixed(1);
    clearFieldError("temperature");
    providerEdit("temperature", value);
  });
  $("max-tokens").addEventListener("input", (event) => {
    const text = event.target.value.trim();
    if (text === "") {
      clearFieldError("max-tokens");
      providerEdit("max_tokens", null);
      return;
    }
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1 || value > MAX_TOKENS_LIMIT) {
      showFieldError("max-tokens", `Enter a whole number from 1 to ${MAX_TOKENS_LIMIT.toLocaleString("en")}.`);
      return;
    }
    clearFieldError("max-tokens");
    providerEdit("max_tokens", value);
  });

  $("key-custom-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("key-custom-name").value.trim();
    const value = $("key-custom-value").value;
    $("key-custom-value").value = "";
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      showFieldError("key-custom", "Name the service with letters, digits, dots, dashes or underscores.");
      return;
    }
    if (!value) {
      showFieldError("key-custom", "Type or paste the key first.");
      return;
    }
    clearFieldError("key-custom");
    $("key-custom-name").value = "";
    setSecret("key-custom", name, value);
  });

  const area = $("preferences-json");
  area.addEventListener("input", () => {
    preferencesDirty = true;
    clearFieldError("preferences");
  });
  $("preferences-json-form").addEventListener("submit", (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(area.value);
    } catch (err) {
      showFieldError("preferences", `This is not valid JSON: ${err.message}`);
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      showFieldError("preferences", "Preferences must be a JSON object, such as {\"density\": \"compact\"}.");
      return;
    }
    clearFieldError("preferences");
    const patch = diffPatch(client.settings.preferences, parsed);
    preferencesDirty = false;
    if (Object.keys(patch).length) edit((c) => c.update({ preferences: patch }));
    renderPreferences(client.settings.preferences);
  });
  $("preferences-reset").addEventListener("click", () => {
    preferencesDirty = false;
    clearFieldError("preferences");
    area.value = JSON.stringify(client?.settings.preferences ?? {}, null, 2);
  });

  $("save-now").addEventListener("click", () => client?.saveNow());
  $("refresh").addEventListener("click", async () => {
    if (!client) return;
    try {
      await client.refresh();
      scheduleHistory();
    } catch (err) {
      addNotice("error", `Refresh failed: ${err.message}`);
    }
  });
  $("status").addEventListener("click", () => {
    const panel = $("status-panel");
    panel.hidden = !panel.hidden;
    $("status").setAttribute("aria-expanded", String(!panel.hidden));
    renderPanel();
  });
  $("sign-out").addEventListener("click", async () => {
    if (!client) return;
    const leaving = client;
    stop();
    const pending = leaving.status.unsaved;
    await leaving.signOut();
    if (!pending) leaving.forgetCache({ all: true });
    documents.forgetOthers(session, leaving.doc);
    showSignIn("You are signed out.");
  });
}

function wireSignIn() {
  let mode = "signin";
  $("signup").addEventListener("click", () => {
    mode = "signup";
    $("signin-form").requestSubmit();
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const signup = mode === "signup";
    mode = "signin";
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      $("signin-error").textContent = "Enter a username and a password.";
      return;
    }
    $("signin-error").textContent = "";
    for (const id of ["signin-submit", "signup"]) $(id).disabled = true;
    try {
      // Cookie mode: the refresh token is an HttpOnly cookie, the access token stays in memory.
      const session = signup
        ? await LiveSettings.signUp({ username, password, cookie: true })
        : await LiveSettings.signIn({ username, password, cookie: true });
      $("password").value = "";
      start(session);
    } catch (err) {
      $("signin-error").textContent =
        err.code === "offline" ? "The server cannot be reached: sign in when you are online." : err.message;
    } finally {
      for (const id of ["signin-submit", "signup"]) $(id).disabled = false;
    }
  });
}

function showSignIn(message = "") {
  $("settings").hidden = true;
  $("session-bar").hidden = true;
  $("status-panel").hidden = true;
  $("signin").hidden = false;
  $("signin-message").textContent = message;
  $("username").focus();
}

function stop() {
  for (const off of stopListening) off();
  stopListening = [];
  if (client) client.close();
  client = null;
  clearTimeout(historyTimer);
  fieldErrors = new Map();
  for (const slot of document.querySelectorAll(".field-error")) slot.textContent = "";
  $("notices").replaceChildren();
  $("history-list").replaceChildren();
  documents.detach();
}

/** Show `doc` ("team:<id>"; null: the user's own settings) for the signed-in `newSession`. */
function start(newSession, doc = null) {
  stop();
  session = newSession;
  // Another document: no control keeps what was typed for the previous one.
  const focused = document.activeElement;
  if (focused && focused !== $("doc-select") && $("settings").contains(focused)) focused.blur();
  preferencesDirty = false;
  try {
    const options = doc ? { ...clientOptions(), doc } : clientOptions();
    client = LiveSettings.fromSession({ ...session, cookie: true }, options);
  } catch (err) {
    LiveSettings.clearSession();
    showSignIn(err.message);
    return;
  }
  globalThis.livesettings = client; // for the console and the browser tests
  $("signin").hidden = true;
  $("settings").hidden = false;
  $("session-bar").hidden = false;
  $("panel-user").textContent = session.username ?? session.user_id;
  render(client.settings);
  renderStatus(client.status);
  let lastConnection = client.status.connection;
  let lastRevision = client.revision;
  stopListening = [
    client.on("change", (detail) => render(detail.settings)),
    client.on("status", (status) => {
      renderStatus(status);
      if (status.connection !== lastConnection && status.connection === Connection.ONLINE) {
        scheduleHistory();
        loadSchema();
      } else if (status.revision !== lastRevision) {
        scheduleHistory();
      }
      lastConnection = status.connection;
      lastRevision = status.revision;
    }),
    client.on("conflict", onConflict),
    client.on("error", onClientError),
    ...documents.attach(client),
  ];
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {
    // no offline reloads, the page works the same otherwise
  });
}

function boot() {
  try {
    const cached = JSON.parse(localStorage.getItem(SCHEMA_KEY) ?? "null");
    schema = cached && typeof cached === "object" ? cached : null;
  } catch {
    schema = null;
  }
  wireForm();
  wireSignIn();
  documents = new DocSwitcher({ open: (doc) => start(session, doc), notice: addNotice });
  // No token is ever stored: remove what older versions kept, and end a sign-out that could
  // not reach the server.
  LiveSettings.forgetStoredTokens();
  LiveSettings.finishPendingLogout().catch(() => {});
  // A sign-in in another tab is followed here (a sign-out ends the client itself).
  addEventListener("storage", (event) => {
    if (event.key !== USER_KEY) return;
    const user = LiveSettings.signedInUser();
    if (user && (!client || user.user_id !== client.userId)) start(user);
  });
  setInterval(() => renderPanel(), 15000);
  // The user signed in here last: the cached settings at once (also offline); the client
  // gets this tab's access token from the refresh cookie, or asks for a sign-in.
  const user = LiveSettings.signedInUser();
  if (user) start(user, documents.initialDoc(user.user_id));
  else showSignIn();
  registerServiceWorker();
}

boot();
