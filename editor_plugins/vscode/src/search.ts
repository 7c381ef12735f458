// The "codesearch: Search code" picker: queries the server as the user types and shows every hit
// in the server's order. VS Code is reached only through the small interfaces below (extension.ts
// passes the real QuickPick and editor functions), so this logic runs in plain Node tests.

import type { SearchParams, SearchResponse, SearchResult } from "./protocol";

/** A result row. `alwaysShow` keeps VS Code from filtering semantic hits by the typed text. */
export interface ResultItem {
  label: string;
  description: string;
  detail: string;
  alwaysShow: true;
  result: SearchResult;
}

/** A row that is not a result (no results, an error). */
export interface MessageItem {
  label: string;
  description?: string;
  detail?: string;
  alwaysShow: true;
  result?: undefined;
}

export type PickItem = ResultItem | MessageItem;

const KIND_ICONS: Record<string, string> = {
  function: "$(symbol-function)",
  method: "$(symbol-method)",
  constructor: "$(symbol-constructor)",
  class: "$(symbol-class)",
};

/** Picker rows for search results, in the order given; a unit that is not implementation code is tagged. */
export function toItems(results: readonly SearchResult[]): ResultItem[] {
  return results.map((r) => ({
    label: `${KIND_ICONS[r.kind] ?? "$(symbol-misc)"} ${r.qualifiedName}`,
    description: `${r.path}:${r.range.start.line + 1}` + (r.role && r.role !== "implementation" ? `  [${r.role}]` : ""),
    detail: firstLine(r.summary) || r.signature,
    alwaysShow: true,
    result: r,
  }));
}

function firstLine(text: string): string {
  const line = text.split("\n")[0] ?? "";
  return line.length > 200 ? line.slice(0, 199) + "…" : line;
}

export interface Disposable {
  dispose(): unknown;
}

/** The part of `vscode.QuickPick` the picker uses. */
export interface QuickPickLike<T> {
  value: string;
  items: readonly T[];
  readonly activeItems: readonly T[];
  readonly selectedItems: readonly T[];
  placeholder: string | undefined;
  title: string | undefined;
  busy: boolean;
  matchOnDescription: boolean;
  matchOnDetail: boolean;
  onDidChangeValue(listener: (value: string) => unknown): Disposable;
  onDidChangeActive(listener: (items: readonly T[]) => unknown): Disposable;
  onDidAccept(listener: () => unknown): Disposable;
  onDidHide(listener: () => unknown): Disposable;
  show(): void;
  hide(): void;
  dispose(): void;
}

/** What the picker needs from the editor and the server. */
export interface SearchDeps {
  /** Send `codesearch/search`; reject (or resolve, ignored) once `signal` aborts. */
  search(params: SearchParams, signal: AbortSignal): Promise<SearchResponse>;
  /** Show a result without leaving the picker (preview editor, focus stays). */
  preview(result: SearchResult): unknown;
  /** Open a result for editing at its range. */
  open(result: SearchResult): unknown;
  /** The picker closed without a choice (restore the editor that was active). */
  cancelled?(): unknown;
  k: number;
  debounceMs: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export const PLACEHOLDER = 'Describe the code: "parse a date from a string"  (filters: lang:go path:src/ kind:method)';

/** Drives one search picker from show to hide. */
export class SearchPicker {
  private seq = 0;
  private timer: unknown;
  private inflight: AbortController | undefined;
  private accepted = false;
  private readonly disposables: Disposable[] = [];
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  /** Settles when the latest query's answer is shown (tests wait on it). */
  settled: Promise<void> = Promise.resolve();

  constructor(
    private readonly pick: QuickPickLike<PickItem>,
    private readonly deps: SearchDeps,
  ) {
    this.setTimer = deps.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = deps.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  /** Show the picker, searching for `initial` (e.g. the selected text) at once if given. */
  show(initial = ""): void {
    const pick = this.pick;
    pick.placeholder = PLACEHOLDER;
    pick.title = "codesearch";
    pick.matchOnDescription = false;
    pick.matchOnDetail = false;
    // Keep the server's order while text is typed (runtime property of VS Code's QuickPick since
    // 1.64, not in the 1.82 typings; harmless where unknown). `alwaysShow` keeps every row visible.
    (pick as unknown as { sortByLabel: boolean }).sortByLabel = false;
    this.disposables.push(
      pick.onDidChangeValue((v) => this.onValue(v)),
      pick.onDidChangeActive((items) => this.onActive(items)),
      pick.onDidAccept(() => this.onAccept()),
      pick.onDidHide(() => this.onHide()),
    );
    pick.show();
    if (initial.trim()) {
      pick.value = initial;
      this.settled = this.run(initial);
    }
  }

  private onValue(value: string): void {
    if (this.timer !== undefined) {
      this.clearTimer(this.timer);
      this.timer = undefined;
    }
    if (!value.trim()) {
      this.seq++;
      this.inflight?.abort();
      this.pick.busy = false;
      this.pick.items = [];
      this.pick.title = "codesearch";
      return;
    }
    let done: () => void = () => undefined;
    this.settled = new Promise((resolve) => (done = resolve));
    this.timer = this.setTimer(() => {
      this.timer = undefined;
      this.run(value).then(done, done);
    }, this.deps.debounceMs);
  }

  /** Ask the server for `query`; an answer that arrives after a newer query started is dropped. */
  async run(query: string): Promise<void> {
    const seq = ++this.seq;
    this.inflight?.abort();
    const ctl = new AbortController();
    this.inflight = ctl;
    this.pick.busy = true;
    try {
      const response = await this.deps.search({ query, k: this.deps.k }, ctl.signal);
      if (seq !== this.seq) {
        return;
      }
      const items = toItems(response.results);
      this.pick.items = items.length ? items : [{ label: "No results", alwaysShow: true }];
      this.pick.title = `codesearch: ${items.length} results in ${Math.round(response.elapsedMs)} ms`;
    } catch (err) {
      if (seq !== this.seq || ctl.signal.aborted) {
        return;
      }
      const message = err instanceof Error ? err.message : String(err);
      this.pick.items = [{ label: "$(error) Search failed", detail: message, alwaysShow: true }];
      this.pick.title = "codesearch";
    } finally {
      if (seq === this.seq) {
        this.pick.busy = false;
        this.inflight = undefined;
      }
    }
  }

  private onActive(items: readonly PickItem[]): void {
    const result = items[0]?.result;
    if (result !== undefined && !this.accepted) {
      this.deps.preview(result);
    }
  }

  private onAccept(): void {
    const result = this.pick.selectedItems[0]?.result ?? this.pick.activeItems[0]?.result;
    if (result === undefined) {
      return;
    }
    this.accepted = true;
    this.pick.hide();
    this.deps.open(result);
  }

  private onHide(): void {
    this.seq++;
    this.inflight?.abort();
    if (this.timer !== undefined) {
      this.clearTimer(this.timer);
    }
    if (!this.accepted) {
      this.deps.cancelled?.();
    }
    for (const d of this.disposables) {
      d.dispose();
    }
    this.pick.dispose();
  }
}
