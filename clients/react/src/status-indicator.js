// <RealtimeStatusIndicator />: the sync state in words and a coloured dot, and the last sync.

import { createElement as h } from "react";
import { asSentence, useSyncStatus } from "./hooks.js";

/** The dot's colour of each `data-state`. */
export const STATE_COLOURS = Object.freeze({
  synced: "#16a34a",
  syncing: "#2563eb",
  unsaved: "#ea580c",
  offline: "#6b7280",
  error: "#dc2626",
});

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** `{state, label}` of a status object: the state is one of STATE_COLOURS' keys. */
export function describeStatus(status) {
  if (status.connection === "offline") {
    const unsaved = status.unsaved ? ` — ${plural(status.unsaved, "unsaved change")}` : "";
    return { state: "offline", label: `Offline${unsaved}` };
  }
  if (status.connection === "error" || status.error) {
    return { state: "error", label: `Error: ${asSentence(status.error) ?? "Unknown error."}` };
  }
  if (status.connection === "connecting") return { state: "syncing", label: "Connecting…" };
  if (status.syncing) return { state: "syncing", label: status.unsaved ? "Saving…" : "Syncing…" };
  if (status.unsaved) return { state: "unsaved", label: "Unsaved changes" };
  return { state: "synced", label: "Synced" };
}

/**
 * The status of the provider's client: "Synced", "Saving…", "Unsaved changes", "Offline" or
 * "Error: …" beside a coloured dot, then the time of the last sync. `role="status"` (a polite
 * live region) and `data-state` (synced | syncing | unsaved | offline | error).
 */
export function RealtimeStatusIndicator({ className, style, showLastSync = true } = {}) {
  const status = useSyncStatus();
  const { state, label } = describeStatus(status);
  const last = status.lastSyncAt ? new Date(status.lastSyncAt) : null;
  return h(
    "div",
    {
      role: "status",
      "aria-live": "polite",
      "data-state": state,
      className,
      style: { display: "inline-flex", alignItems: "center", gap: "0.5em", ...style },
    },
    h("span", {
      "aria-hidden": "true",
      "data-part": "dot",
      style: {
        display: "inline-block",
        width: "0.6em",
        height: "0.6em",
        borderRadius: "50%",
        background: STATE_COLOURS[state],
      },
    }),
    h("span", { "data-part": "label" }, label),
    " ", // not shown between flex items, but it keeps the words apart for screen readers
    showLastSync && last
      ? h(
          "span",
          { "data-part": "last-sync", style: { opacity: 0.7, fontSize: "0.9em" } },
          "Last synced ",
          h("time", { dateTime: last.toISOString() }, last.toLocaleTimeString()),
        )
      : null,
  );
}
