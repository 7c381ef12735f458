import assert from "node:assert/strict";
import { test } from "node:test";

import {
  expandPath,
  objectReader,
  pickerDebounceMs,
  pickerK,
  SERVER_OPTION_KEYS,
  serverCommand,
  serverOptions,
} from "../src/settings";

test("server options: what the user set, null for the rest", () => {
  const opts = serverOptions(objectReader({ k: 7, ignorePatterns: ["*.gen.go"], "server.path": "/x" }));
  assert.deepEqual(Object.keys(opts).sort(), [...SERVER_OPTION_KEYS].sort());
  assert.equal(opts.k, 7);
  assert.deepEqual(opts.ignorePatterns, ["*.gen.go"]);
  assert.equal(opts.modelPath, null);
  assert.equal(opts.watch, null);
});

test("server command: default, configured, expanded", () => {
  assert.deepEqual(serverCommand(objectReader({}), undefined), { command: "codesearch", args: ["lsp"] });
  const cmd = serverCommand(
    objectReader({ "server.path": "${workspaceFolder}/.venv/bin/codesearch", "server.args": ["lsp", "--log-file", "~/cs.log"] }),
    "/repo",
  );
  assert.equal(cmd.command, "/repo/.venv/bin/codesearch");
  assert.equal(cmd.args[2], expandPath("~/cs.log", undefined));
  assert.equal(expandPath("~/bin/codesearch", undefined, "/home/me"), "/home/me/bin/codesearch");
  assert.equal(expandPath("~user/x", undefined, "/home/me"), "~user/x");
});

test("picker numbers are clamped", () => {
  assert.equal(pickerK(objectReader({})), 20);
  assert.equal(pickerK(objectReader({ k: 5000 })), 1000);
  assert.equal(pickerK(objectReader({ k: 0 })), 20);
  assert.equal(pickerDebounceMs(objectReader({ debounceMs: 100 })), 100);
  assert.equal(pickerDebounceMs(objectReader({})), 250);
});
