import assert from "node:assert/strict";
import { test } from "node:test";

import type { SearchParams, SearchResponse, SearchResult } from "../src/protocol";
import { type PickItem, SearchPicker, toItems } from "../src/search";
import { FakeQuickPick } from "./fakes";

function result(name: string, kind = "function", line = 0, summary = ""): SearchResult {
  return {
    uri: `file:///repo/${name}.py`,
    range: { start: { line, character: 4 }, end: { line: line + 3, character: 0 } },
    name,
    qualifiedName: `mod.${name}`,
    kind,
    language: "python",
    score: 0.5,
    path: `${name}.py`,
    root: "file:///repo",
    signature: `def ${name}():`,
    summary,
    snippet: `def ${name}():\n    pass`,
  };
}

/** A server stand-in answering each query with the results given for it, after `delayMs`. */
function server(answers: Record<string, SearchResult[]>, delayMs = 0) {
  const calls: SearchParams[] = [];
  const aborted: string[] = [];
  const search = (params: SearchParams, signal: AbortSignal): Promise<SearchResponse> => {
    calls.push(params);
    signal.addEventListener("abort", () => aborted.push(params.query));
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        const results = answers[params.query];
        if (results === undefined) {
          reject(new Error(`unknown query ${params.query}`));
        } else {
          resolve({ results, elapsedMs: 12.3 });
        }
      }, delayMs),
    );
  };
  return { calls, aborted, search };
}

test("rows keep the server's order and are all always shown", () => {
  const items = toItems([result("zeta", "method", 9, "First line.\nSecond."), result("alpha", "class")]);
  assert.deepEqual(
    items.map((i) => [i.label, i.description, i.detail, i.alwaysShow]),
    [
      ["$(symbol-method) mod.zeta", "zeta.py:10", "First line.", true],
      ["$(symbol-class) mod.alpha", "alpha.py:1", "def alpha():", true],
    ],
  );
});

test("units that are not implementation code carry their role as a tag", () => {
  const items = toItems([
    { ...result("test_zeta"), role: "test" },
    { ...result("alpha"), role: "implementation" },
    result("beta"),
  ]);
  assert.deepEqual(items.map((i) => i.description), ["test_zeta.py:1  [test]", "alpha.py:1", "beta.py:1"]);
});

test("typing searches once after the debounce; the picker never re-filters", async () => {
  const pick = new FakeQuickPick<PickItem>();
  const srv = server({ "parse dates": [result("b"), result("a")] });
  const previews: string[] = [];
  const picker = new SearchPicker(pick, { search: srv.search, preview: (r) => previews.push(r.name), open: () => undefined, k: 7, debounceMs: 5 });
  picker.show();
  assert.equal(pick.matchOnDescription, false);
  assert.equal(pick.matchOnDetail, false);
  assert.equal(pick.sortByLabel, false);
  pick.type("parse");
  pick.type("parse da");
  pick.type("parse dates");
  await picker.settled;
  assert.deepEqual(srv.calls, [{ query: "parse dates", k: 7 }]);
  assert.deepEqual(pick.items.map((i) => i.result?.name), ["b", "a"]);
  assert.ok(pick.items.every((i) => i.alwaysShow));
  assert.match(pick.title ?? "", /2 results in 12 ms/);
  assert.equal(pick.busy, false);
  assert.deepEqual(previews, ["b"]); // the first row is previewed as it becomes active
});

test("a slow answer to an older query is dropped and its request cancelled", async () => {
  const pick = new FakeQuickPick<PickItem>();
  const srv = server({ old: [result("old")], new: [result("new")] }, 20);
  const picker = new SearchPicker(pick, { search: srv.search, preview: () => undefined, open: () => undefined, k: 5, debounceMs: 0 });
  picker.show();
  const first = picker.run("old");
  const second = picker.run("new");
  await Promise.all([first, second]);
  assert.deepEqual(srv.aborted, ["old"]);
  assert.deepEqual(pick.items.map((i) => i.result?.name), ["new"]);
});

test("highlight previews, Enter opens, and the picker goes away", async () => {
  const pick = new FakeQuickPick<PickItem>();
  const srv = server({ q: [result("one"), result("two")] });
  const previews: string[] = [];
  const opened: string[] = [];
  let cancelled = 0;
  const picker = new SearchPicker(pick, {
    search: srv.search, preview: (r) => previews.push(r.name), open: (r) => opened.push(r.name),
    cancelled: () => cancelled++, k: 5, debounceMs: 0,
  });
  picker.show("q");
  await picker.settled;
  pick.highlight(1);
  pick.accept();
  assert.deepEqual(previews, ["one", "two"]);
  assert.deepEqual(opened, ["two"]);
  assert.equal(cancelled, 0);
  assert.equal(pick.disposed, true);
  assert.equal(pick.listenerCount, 0);
});

test("Escape restores, errors and empty answers are shown as rows", async () => {
  const pick = new FakeQuickPick<PickItem>();
  const srv = server({ nothing: [] });
  let cancelled = 0;
  const picker = new SearchPicker(pick, { search: srv.search, preview: () => undefined, open: () => undefined, cancelled: () => cancelled++, k: 5, debounceMs: 0 });
  picker.show("nothing");
  await picker.settled;
  assert.deepEqual(pick.items.map((i) => i.label), ["No results"]);
  pick.type("broken");
  await picker.settled;
  assert.equal(pick.items[0].label, "$(error) Search failed");
  assert.match(pick.items[0].detail ?? "", /unknown query broken/);
  pick.accept(); // Enter on a message row does nothing
  assert.equal(pick.visible, true);
  pick.type("");
  assert.deepEqual(pick.items, []);
  pick.hide();
  assert.equal(cancelled, 1);
});
