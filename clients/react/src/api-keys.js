// The API keys of <SettingsForm>: each shown by its last four characters (never plaintext:
// the settings only hold masked objects), with a field to enter a new one.

import { createElement as h, useState } from "react";

/** Words for a masked key: "Saved key ending in x9Qz", "Saved key", "Not set". */
export function describeKey(masked) {
  if (!masked || typeof masked !== "object" || !masked.set) return "Not set";
  const pending = masked.pending ? " (saving…)" : "";
  return masked.last4 ? `Saved key ending in ${masked.last4}${pending}` : `Saved key${pending}`;
}

// Calls onChange and turns what it throws or rejects with into a message.
function attempt(onChange, patch, setError) {
  setError(null);
  try {
    const result = onChange(patch);
    if (result && typeof result.then === "function") {
      result.catch((error) => setError(error?.message ?? String(error)));
    }
    return true;
  } catch (error) {
    setError(error?.message ?? String(error));
    return false;
  }
}

function KeyRow({ id, name, title, masked, onChange, disabled }) {
  const [draft, setDraft] = useState("");
  const [error, setError] = useState(null);
  const inputId = `${id}-key-${name}`;
  const describedBy = `${inputId}-state`;
  const save = (event) => {
    event.preventDefault();
    if (!draft) return;
    attempt(onChange, { api_keys: { [name]: draft } }, setError);
    setDraft(""); // never kept on screen, saved or not
  };
  return h(
    "div",
    { "data-key": name, style: { marginBottom: "0.5em" } },
    h("label", { htmlFor: inputId }, `${title} API key`),
    " ",
    h("input", {
      id: inputId,
      type: "password",
      autoComplete: "off",
      value: draft,
      disabled,
      placeholder: masked?.last4 ? `••••${masked.last4}` : "",
      "aria-describedby": describedBy,
      onChange: (event) => setDraft(event.target.value),
      onKeyDown: (event) => (event.key === "Enter" ? save(event) : undefined),
    }),
    " ",
    h(
      "button",
      { type: "button", onClick: save, disabled: disabled || !draft },
      `Save key for ${title}`,
    ),
    masked?.set
      ? h(
          "button",
          {
            type: "button",
            disabled,
            onClick: () => attempt(onChange, { api_keys: { [name]: null } }, setError),
          },
          `Remove key for ${title}`,
        )
      : null,
    " ",
    h("span", { id: describedBy, "data-part": "key-state" }, describeKey(masked)),
    error ? h("div", { role: "alert", style: { color: "#dc2626" } }, error) : null,
  );
}

/** One row per known provider and per key the settings hold. */
export function ApiKeysFieldset({ id, apiKeys, providers, onChange, disabled }) {
  const names = new Map(providers);
  for (const name of Object.keys(apiKeys ?? {})) if (!names.has(name)) names.set(name, name);
  return h(
    "fieldset",
    { "data-part": "api-keys" },
    h("legend", null, "API keys"),
    [...names].map(([name, title]) =>
      h(KeyRow, {
        key: name,
        id,
        name,
        title,
        masked: apiKeys?.[name] ?? null,
        onChange,
        disabled,
      }),
    ),
  );
}
