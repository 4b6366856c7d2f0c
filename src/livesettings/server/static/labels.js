// The words of the settings page: the label of each settings path and the words for a value,
// a time or a change. Pure functions (no DOM), used by app.js.

import { isObject, isSecretPath, parsePath, toPointer } from "./state.js";

export const PROVIDERS = [
  ["openai", "OpenAI"],
  ["anthropic", "Anthropic"],
  ["google", "Google"],
  ["mistral", "Mistral"],
  ["ollama", "Ollama"],
];
const PROVIDER_NAMES = new Map(PROVIDERS);

// The fields of the AI provider form: [label, id of the control].
const PROVIDER_FIELDS = {
  model: ["Model", "model"],
  temperature: ["Temperature", "temperature"],
  max_tokens: ["Max tokens", "max-tokens"],
};

// The top-level fields that are one control each: [label, id of the control].
const SIMPLE_FIELDS = { theme: ["Theme", "theme"], language: ["Language", "language"] };

export function providerName(id) {
  return PROVIDER_NAMES.get(id) ?? id;
}

/** The id of the form control that shows an error at `pointer` (api_keys: see app.js). */
export function controlId(pointer) {
  const [field, a, b] = parsePath(pointer ?? "");
  if (Object.hasOwn(SIMPLE_FIELDS, field)) return SIMPLE_FIELDS[field][1];
  if (field === "ai_providers") return a === "default" ? "provider" : (PROVIDER_FIELDS[b]?.[1] ?? "provider");
  if (field === "preferences") return "preferences";
  return null;
}

export function fieldLabel(pointer) {
  const path = parsePath(pointer);
  const [field, a, b] = path;
  if (Object.hasOwn(SIMPLE_FIELDS, field)) return SIMPLE_FIELDS[field][0];
  if (field === "ai_providers") {
    if (a === "default") return "Default provider";
    const name = Object.hasOwn(PROVIDER_FIELDS, b) ? PROVIDER_FIELDS[b][0] : null;
    if (a && name) return `${name} (${providerName(a)})`;
    return a ? `AI provider ${providerName(a)}` : "AI providers";
  }
  if (field === "api_keys") return a ? `${providerName(a)} API key` : "API keys";
  if (field === "preferences") {
    return path.length > 1 ? `Preference “${path.slice(1).join(".")}”` : "Preferences";
  }
  return pointer;
}

export function formatValue(pointer, value) {
  const [field] = parsePath(pointer);
  if (value === null || value === undefined) return "removed";
  if (field === "api_keys") {
    return value && value.last4 ? `a key ending in ${value.last4}` : "a new key";
  }
  if (field === "theme") return { light: "Light", dark: "Dark", system: "Same as the system" }[value] ?? String(value);
  if (typeof value === "string") return `“${value}”`;
  return JSON.stringify(value);
}

export function relativeTime(ms) {
  if (!ms) return "never";
  const seconds = Math.round((Date.now() - ms) / 1000);
  const format = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  if (Math.abs(seconds) < 60) return seconds < 5 ? "just now" : format.format(-seconds, "second");
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return format.format(-minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (hours < 48) return format.format(-hours, "hour");
  return new Date(ms).toLocaleString();
}

export function describePatch(patch) {
  const parts = [];
  const walk = (node, path) => {
    for (const [key, value] of Object.entries(node)) {
      const here = [...path, key];
      // A secret (api_keys/<name>) is one leaf, masked.
      if (isObject(value) && !isSecretPath(here) && Object.keys(value).length) {
        walk(value, here);
      } else {
        const pointer = toPointer(here);
        parts.push(`${fieldLabel(pointer)} → ${formatValue(pointer, value)}`);
      }
    }
  };
  walk(patch, []);
  return parts.length ? parts.join(", ") : "no visible change";
}
