import assert from "node:assert/strict";
import { test } from "node:test";

import type { Status } from "../src/protocol";
import { statusView } from "../src/status";

const root = { root: "file:///repo", freshness: "watcher", unsavedFiles: [], progress: null };

test("ready shows the unit count", () => {
  const status: Status = { state: "ready", units: 1234, message: "1234 units", roots: [{ ...root, state: "ready", message: "1234 units" }] };
  assert.deepEqual(statusView(status), { text: "$(search) codesearch: 1234 units", tooltip: "codesearch: 1234 units", error: false });
});

test("indexing shows a spinner and the percentage", () => {
  const status: Status = {
    state: "indexing", units: 0, message: "embedding: 50/200 units",
    roots: [{ ...root, state: "indexing", message: "embedding: 50/200 units", progress: [50, 200] }],
  };
  assert.equal(statusView(status).text, "$(sync~spin) codesearch: indexing 25%");
});

test("errors and a stopped server are flagged", () => {
  const status: Status = { state: "error", units: 0, message: "model not found", roots: [{ ...root, state: "error", message: "model not found" }] };
  assert.equal(statusView(status).error, true);
  assert.match(statusView(status).tooltip, /model not found/);
  assert.equal(statusView(undefined, false).text, "$(circle-slash) codesearch");
  assert.equal(statusView(undefined).text, "$(sync~spin) codesearch");
});
