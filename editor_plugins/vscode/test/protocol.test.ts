// The extension's requests, through a Node JSON-RPC client (the one vscode-languageclient is built
// on), against the real `codesearch lsp`. The VS Code application itself cannot run here.
// tests/test_vscode.py sets CODESEARCH_SERVER (the executable) and CODESEARCH_TEST_REPO (a copy of
// tests/fixtures/lsp_repo); without them this test is skipped.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import * as rpc from "vscode-jsonrpc/node";

import { SEARCH_METHOD, type SearchParams, type SearchResponse, STATUS_NOTIFICATION, type Status } from "../src/protocol";
import { type PickItem, SearchPicker, toItems } from "../src/search";
import { objectReader, pickerK, serverOptions } from "../src/settings";
import { FakeQuickPick } from "./fakes";

const server = process.env.CODESEARCH_SERVER;
const repo = process.env.CODESEARCH_TEST_REPO;

test(
  "search, buffers, settings and shutdown against the real server",
  { skip: !server || !repo ? "set CODESEARCH_SERVER and CODESEARCH_TEST_REPO (tests/test_vscode.py does)" : false, timeout: 180_000 },
  async () => {
    const proc = spawn(server!, ["lsp"], { cwd: repo, env: { ...process.env, HF_HUB_OFFLINE: "1" }, stdio: ["pipe", "pipe", "ignore"] });
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    const conn = rpc.createMessageConnection(new rpc.StreamMessageReader(proc.stdout!), new rpc.StreamMessageWriter(proc.stdin!));
    const statuses: Status[] = [];
    const progress: string[] = [];
    conn.onNotification(STATUS_NOTIFICATION, (s: Status) => statuses.push(s));
    conn.onRequest("window/workDoneProgress/create", () => null);
    conn.onNotification("$/progress", (p: { value: { kind: string } }) => progress.push(p.value.kind));
    conn.listen();
    const search = (params: SearchParams, signal?: AbortSignal): Promise<SearchResponse> => {
      const cts = new rpc.CancellationTokenSource();
      signal?.addEventListener("abort", () => cts.cancel());
      return conn.sendRequest<SearchResponse>(SEARCH_METHOD, params, cts.token);
    };
    try {
      const rootUri = pathToFileURL(repo!).href;
      const config = objectReader({ k: 3, debounceMs: 100 });
      const init = await conn.sendRequest<{ capabilities: { executeCommandProvider: { commands: string[] } } }>("initialize", {
        processId: process.pid,
        rootUri,
        capabilities: { window: { workDoneProgress: true } },
        initializationOptions: serverOptions(config),
        workspaceFolders: [{ uri: rootUri, name: "repo" }],
      });
      assert.ok(init.capabilities.executeCommandProvider.commands.includes("codesearch.search"));
      conn.sendNotification("initialized", {});

      // The picker, as the extension wires it, against the server.
      const pick = new FakeQuickPick<PickItem>();
      const previews: string[] = [];
      const picker = new SearchPicker(pick, { search, preview: (r) => previews.push(r.name), open: () => undefined, k: pickerK(config), debounceMs: 0 });
      picker.show("turn a title into a url slug");
      await picker.settled;
      assert.equal(pick.items[0].label, "$(symbol-function) slugify");
      assert.equal(pick.items[0].description, "web/format.js:17");
      assert.equal(pick.items.length, 3);
      assert.deepEqual(previews, ["slugify"]);
      assert.ok(progress.includes("begin") && progress.includes("end"));
      // Searches run as soon as the index opens; "ready" follows once the watcher runs too.
      for (let i = 0; i < 600 && statuses.at(-1)?.state !== "ready"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(statuses.at(-1)?.state, "ready");

      // An unsaved buffer, as the language client syncs it.
      const file = path.join(repo!, "shop", "tax.py");
      const uri = pathToFileURL(file).href;
      const text = fs.readFileSync(file, "utf8");
      conn.sendNotification("textDocument/didOpen", { textDocument: { uri, languageId: "python", version: 1, text } });
      const edited = text + '\n\ndef vat_refund(amount_cents):\n    """Compute the tax refunded to a tourist on export."""\n    return amount_cents // 5\n';
      conn.sendNotification("textDocument/didChange", { textDocument: { uri, version: 2 }, contentChanges: [{ text: edited }] });
      const found = await search({ query: "tax refund for tourists", k: 1 });
      assert.equal(toItems(found.results)[0].label, "$(symbol-function) vat_refund");
      assert.equal(fs.readFileSync(file, "utf8"), text);

      // Settings as the extension forwards them.
      conn.sendNotification("workspace/didChangeConfiguration", { settings: { codesearch: serverOptions(objectReader({ k: 1 })) } });
      let n = 0;
      for (let i = 0; i < 100 && n !== 1; i++) {
        n = (await search({ query: "escape html" })).results.length;
      }
      assert.equal(n, 1);

      await conn.sendRequest("shutdown");
      conn.sendNotification("exit");
      assert.equal(await exited, 0);
    } finally {
      conn.dispose();
      proc.kill();
    }
  },
);
