// The status bar item's text for a `codesearch/status` notification (pure).

import type { Status } from "./protocol";

export interface StatusView {
  text: string;
  tooltip: string;
  error: boolean;
}

/** What the status bar shows: the index state, with a spinner while it is built. */
export function statusView(status: Status | undefined, serverRunning = true): StatusView {
  if (!serverRunning) {
    return { text: "$(circle-slash) codesearch", tooltip: "codesearch: the server is not running", error: true };
  }
  if (status === undefined) {
    return { text: "$(sync~spin) codesearch", tooltip: "codesearch: starting", error: false };
  }
  const lines = status.roots.map((r) => `${decodeURIComponent(r.root.replace(/^file:\/\//, ""))}: ${r.message}`);
  const tooltip = ["codesearch: " + status.message, ...(lines.length > 1 ? lines : [])].join("\n");
  switch (status.state) {
    case "ready":
      return { text: `$(search) codesearch: ${status.units} units`, tooltip, error: false };
    case "error":
      return { text: "$(error) codesearch", tooltip, error: true };
    default: {
      const busy = status.roots.find((r) => r.state !== "ready");
      const progress = busy?.progress;
      const pct = progress && progress[1] > 0 ? ` ${Math.floor((100 * progress[0]) / progress[1])}%` : "";
      return { text: `$(sync~spin) codesearch: ${status.state}${pct}`, tooltip, error: false };
    }
  }
}
