// <SettingsForm settings onChange />: a default form for a settings document, with labelled
// controls. It sends merge patches to `onChange` (useModelSettings' updateSettings fits).

import { createElement as h, useContext, useId, useState } from "react";
import { ApiKeysFieldset } from "./api-keys.js";
import { LiveSettingsContext } from "./context.js";
import { PreferencesFieldset, usePreferencesSchema } from "./preferences.js";

/** The AI providers the form offers: [id, name]. */
export const PROVIDERS = Object.freeze([
  ["openai", "OpenAI"],
  ["anthropic", "Anthropic"],
  ["google", "Google"],
  ["mistral", "Mistral"],
  ["ollama", "Ollama"],
]);

export const THEMES = Object.freeze([
  ["light", "Light"],
  ["dark", "Dark"],
  ["system", "System"],
]);

const row = { marginBottom: "0.5em" };

// The language is sent when the field loses focus or on Enter: "p" on the way to "pt-BR" is
// no language tag, and the server would refuse it.
function LanguageField({ id, value, onChange, disabled }) {
  const [draft, setDraft] = useState(null);
  const commit = () => {
    if (draft === null) return;
    setDraft(null);
    if (draft.trim() && draft.trim() !== value) onChange({ language: draft.trim() });
  };
  return h(
    "div",
    { style: row },
    h("label", { htmlFor: id }, "Language"),
    " ",
    h("input", {
      id,
      type: "text",
      value: draft ?? value ?? "",
      disabled,
      onChange: (event) => setDraft(event.target.value),
      onBlur: commit,
      onKeyDown: (event) => (event.key === "Enter" ? commit() : undefined),
    }),
  );
}

/**
 * Theme, language, the AI provider and its model, API keys (by their last four characters)
 * and preferences (fields from the operator's JSON Schema, or a JSON editor). `schema`:
 * the preferences schema; when left out it is fetched from the provider's server, `null`
 * means none. `providers`: [[id, name], …] offered (PROVIDERS by default).
 */
export function SettingsForm({
  settings,
  onChange,
  schema,
  providers = PROVIDERS,
  disabled = false,
  className,
  style,
}) {
  const id = useId().replace(/[^A-Za-z0-9_-]/g, "");
  const client = useContext(LiveSettingsContext);
  const loadedSchema = usePreferencesSchema(client?.url ?? null, schema);
  const doc = settings ?? {};
  const ai = doc.ai_providers && typeof doc.ai_providers === "object" ? doc.ai_providers : {};
  const known = new Map(providers);
  for (const [name, value] of Object.entries(ai)) {
    if (name !== "default" && value && typeof value === "object" && !known.has(name)) {
      known.set(name, name);
    }
  }
  const provider = typeof ai.default === "string" && ai.default ? ai.default : providers[0]?.[0];
  if (provider && !known.has(provider)) known.set(provider, provider);
  const model = ai[provider]?.model ?? "";
  const send = (patch) => onChange(patch);

  return h(
    "form",
    {
      className,
      style,
      "aria-label": "Settings",
      onSubmit: (event) => event.preventDefault(),
    },
    h(
      "div",
      { style: row },
      h("label", { htmlFor: `${id}-theme` }, "Theme"),
      " ",
      h(
        "select",
        {
          id: `${id}-theme`,
          value: doc.theme ?? "light",
          disabled,
          onChange: (event) => send({ theme: event.target.value }),
        },
        THEMES.map(([value, label]) => h("option", { key: value, value }, label)),
      ),
    ),
    h(LanguageField, { id: `${id}-language`, value: doc.language, onChange: send, disabled }),
    h(
      "div",
      { style: row },
      h("label", { htmlFor: `${id}-provider` }, "AI provider"),
      " ",
      h(
        "select",
        {
          id: `${id}-provider`,
          value: provider ?? "",
          disabled,
          onChange: (event) => send({ ai_providers: { default: event.target.value } }),
        },
        [...known].map(([value, label]) => h("option", { key: value, value }, label)),
      ),
    ),
    h(
      "div",
      { style: row },
      h("label", { htmlFor: `${id}-model` }, "Model"),
      " ",
      h("input", {
        id: `${id}-model`,
        type: "text",
        value: model,
        disabled: disabled || !provider,
        onChange: (event) =>
          send({ ai_providers: { [provider]: { model: event.target.value || null } } }),
      }),
    ),
    h(ApiKeysFieldset, {
      id,
      apiKeys: doc.api_keys,
      providers: [...known],
      onChange: send,
      disabled,
    }),
    h(PreferencesFieldset, {
      id,
      schema: loadedSchema,
      preferences: doc.preferences,
      onChange: send,
      disabled,
    }),
  );
}
