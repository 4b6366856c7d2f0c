// The preferences of <SettingsForm>: fields drawn from the operator's JSON Schema
// (GET /v1/schema), or a JSON editor when there is none.

import { createElement as h, useEffect, useState } from "react";
import { diffPatch } from "livesettings";

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const MAX_DEPTH = 6;

/** `{preferences: {a: {b: value}}}` for the path ["a", "b"]. */
function patchAt(path, value) {
  let inner = value;
  for (let i = path.length - 1; i >= 0; i -= 1) inner = { [path[i]]: inner };
  return { preferences: inner };
}

const typeOf = (schema) =>
  Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;

// A text or number field: edited as a draft, sent when it loses focus or on Enter, so that a
// half-typed value is never sent (nor refused by the schema).
function DraftInput({ id, label, value, numeric, onCommit, disabled }) {
  const [draft, setDraft] = useState(null);
  const shown = draft ?? (value === undefined || value === null ? "" : String(value));
  const commit = () => {
    if (draft === null) return;
    setDraft(null);
    if (numeric) {
      if (draft.trim() === "") onCommit(null);
      else if (Number.isFinite(Number(draft))) onCommit(Number(draft));
    } else {
      onCommit(draft);
    }
  };
  return h(
    "div",
    null,
    h("label", { htmlFor: id }, label),
    " ",
    h("input", {
      id,
      type: numeric ? "number" : "text",
      value: shown,
      disabled,
      onChange: (event) => setDraft(event.target.value),
      onBlur: commit,
      onKeyDown: (event) => (event.key === "Enter" ? commit() : undefined),
    }),
  );
}

function SchemaField({ id, name, schema, value, path, onChange, disabled, depth }) {
  const label = schema.title ?? name;
  const fieldId = `${id}-pref-${path.join("-")}`;
  const send = (v) => onChange(patchAt(path, v));
  const type = typeOf(schema);
  if ((type === "object" || isObject(schema.properties)) && depth < MAX_DEPTH) {
    return h(
      "fieldset",
      null,
      h("legend", null, label),
      Object.entries(schema.properties ?? {}).map(([key, sub]) =>
        h(SchemaField, {
          key,
          id,
          name: key,
          schema: isObject(sub) ? sub : {},
          value: isObject(value) ? value[key] : undefined,
          path: [...path, key],
          onChange,
          disabled,
          depth: depth + 1,
        }),
      ),
    );
  }
  const current = value === undefined ? schema.default : value;
  if (Array.isArray(schema.enum)) {
    return h(
      "div",
      null,
      h("label", { htmlFor: fieldId }, label),
      " ",
      h(
        "select",
        {
          id: fieldId,
          disabled,
          value: current === undefined ? "" : JSON.stringify(current),
          onChange: (event) => {
            const chosen = event.target.value;
            send(chosen === "" ? null : JSON.parse(chosen));
          },
        },
        h("option", { value: "" }, "(default)"),
        schema.enum.map((option) =>
          h("option", { key: String(option), value: JSON.stringify(option) }, String(option)),
        ),
      ),
    );
  }
  if (type === "boolean") {
    return h(
      "div",
      null,
      h("input", {
        id: fieldId,
        type: "checkbox",
        disabled,
        checked: Boolean(current),
        onChange: (event) => send(event.target.checked),
      }),
      " ",
      h("label", { htmlFor: fieldId }, label),
    );
  }
  return h(DraftInput, {
    id: fieldId,
    label,
    value: current,
    numeric: type === "number" || type === "integer",
    onCommit: send,
    disabled,
  });
}

function JsonEditor({ id, preferences, onChange, disabled }) {
  const [draft, setDraft] = useState(null);
  const [error, setError] = useState(null);
  const textId = `${id}-preferences-json`;
  const text = draft ?? JSON.stringify(preferences ?? {}, null, 2);
  const apply = () => {
    if (draft === null) return;
    let parsed;
    try {
      parsed = JSON.parse(draft);
    } catch (err) {
      setError(`Preferences are not valid JSON: ${err.message}`);
      return;
    }
    if (!isObject(parsed)) {
      setError("Preferences must be a JSON object.");
      return;
    }
    setError(null);
    setDraft(null);
    const patch = diffPatch(preferences ?? {}, parsed);
    if (!Object.keys(patch).length) return;
    try {
      onChange({ preferences: patch });
    } catch (err) {
      setError(err?.message ?? String(err));
    }
  };
  return h(
    "div",
    null,
    h("label", { htmlFor: textId }, "Preferences (JSON)"),
    h("br"),
    h("textarea", {
      id: textId,
      rows: 8,
      cols: 50,
      spellCheck: false,
      disabled,
      value: text,
      "aria-invalid": error ? "true" : "false",
      onChange: (event) => {
        setDraft(event.target.value);
        setError(null);
      },
    }),
    h("br"),
    h(
      "button",
      { type: "button", onClick: apply, disabled: disabled || draft === null },
      "Apply preferences",
    ),
    error ? h("div", { role: "alert", style: { color: "#dc2626" } }, error) : null,
  );
}

/** The operator's preferences schema from `url`/v1/schema: undefined while loading. */
export function usePreferencesSchema(url, given) {
  const [loaded, setLoaded] = useState(undefined);
  useEffect(() => {
    if (given !== undefined || !url) return undefined;
    let live = true;
    fetch(`${url}/v1/schema`, { credentials: "omit" })
      .then((response) => (response.ok ? response.json() : { schema: null }))
      .then((body) => live && setLoaded(isObject(body?.schema) ? body.schema : null))
      .catch(() => live && setLoaded(null));
    return () => {
      live = false;
    };
  }, [url, given]);
  if (given !== undefined) return given;
  return url ? loaded : null;
}

/** Fields for the schema's properties, or the JSON editor without a schema. */
export function PreferencesFieldset({ id, schema, preferences, onChange, disabled }) {
  let body;
  if (schema === undefined) body = h("p", null, "Loading preferences…");
  else if (isObject(schema) && isObject(schema.properties)) {
    body = Object.entries(schema.properties).map(([key, sub]) =>
      h(SchemaField, {
        key,
        id,
        name: key,
        schema: isObject(sub) ? sub : {},
        value: preferences?.[key],
        path: [key],
        onChange,
        disabled,
        depth: 1,
      }),
    );
  } else body = h(JsonEditor, { id, preferences, onChange, disabled });
  return h("fieldset", { "data-part": "preferences" }, h("legend", null, "Preferences"), body);
}
