// Small DOM helpers of the settings page (app.js, doc_switcher.js, teams_panel.js).

export const $ = (id) => document.getElementById(id);

/** A new element: attributes (`text` is its text; false, null or undefined: left out). */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}
