// Entry point: commands, the status bar item, and the client's lifecycle.

import * as vscode from "vscode";

import { CodesearchClient, configReader } from "./client";
import { CMD_REINDEX, CMD_STATUS, type SearchResult, type Status } from "./protocol";
import { type PickItem, SearchPicker } from "./search";
import { pickerDebounceMs, pickerK, RESTART_KEYS } from "./settings";
import { statusView } from "./status";

let client: CodesearchClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("codesearch");
  const cs = new CodesearchClient(output);
  client = cs;
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  item.command = "codesearch.showStatus";
  const render = (status: Status | undefined) => {
    const view = statusView(status, status !== undefined || cs.alive);
    item.text = view.text;
    item.tooltip = view.tooltip;
    item.backgroundColor = view.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  };
  item.text = statusView(undefined).text;
  item.show();

  context.subscriptions.push(
    output,
    cs,
    item,
    cs.onStatus(render),
    vscode.commands.registerCommand("codesearch.searchCode", () => searchCode(cs)),
    vscode.commands.registerCommand("codesearch.reindex", () => reindex(cs)),
    vscode.commands.registerCommand("codesearch.showStatus", () => showStatus(cs, output)),
    vscode.commands.registerCommand("codesearch.restartServer", () => startOrReport(cs, true)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (RESTART_KEYS.some((k) => e.affectsConfiguration(`codesearch.${k}`))) {
        startOrReport(cs, true);
      } else if (e.affectsConfiguration("codesearch")) {
        cs.sendConfiguration();
      }
    }),
  );
  await startOrReport(cs, false);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
  client = undefined;
}

async function startOrReport(cs: CodesearchClient, restart: boolean): Promise<void> {
  try {
    await (restart ? cs.restart() : cs.start());
  } catch (err) {
    const choice = await vscode.window.showErrorMessage(
      `codesearch: ${err instanceof Error ? err.message : String(err)}`,
      "Open settings",
    );
    if (choice === "Open settings") {
      vscode.commands.executeCommand("workbench.action.openSettings", "codesearch.server");
    }
  }
}

/** Open a result: as a preview while browsing the picker, for editing on accept. */
async function showResult(result: SearchResult, preview: boolean): Promise<void> {
  const { start, end } = result.range;
  const whole = new vscode.Range(start.line, start.character, end.line, end.character);
  const editor = await vscode.window.showTextDocument(vscode.Uri.parse(result.uri), {
    preview,
    preserveFocus: preview,
    selection: preview ? whole : new vscode.Range(whole.start, whole.start),
  });
  editor.revealRange(whole, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
}

async function searchCode(cs: CodesearchClient): Promise<void> {
  if (!cs.running) {
    await startOrReport(cs, false);
  }
  const editor = vscode.window.activeTextEditor;
  const selected = editor?.document.getText(editor.selection) ?? "";
  const initial = selected.includes("\n") || selected.length > 200 ? "" : selected;
  const before = editor && { document: editor.document, selection: editor.selection, column: editor.viewColumn };
  const config = configReader();
  const picker = new SearchPicker(vscode.window.createQuickPick<PickItem>(), {
    search: (params, signal) => cs.search(params, signal),
    preview: (r) => showResult(r, true),
    open: (r) => showResult(r, false),
    cancelled: () =>
      before && vscode.window.showTextDocument(before.document, { selection: before.selection, viewColumn: before.column }),
    k: pickerK(config),
    debounceMs: pickerDebounceMs(config),
  });
  picker.show(initial);
}

async function reindex(cs: CodesearchClient): Promise<void> {
  try {
    const report = await cs.execute<{ roots: { files: number; units: number; embedded: number }[] }>(CMD_REINDEX);
    const files = report.roots.reduce((n, r) => n + r.files, 0);
    const units = report.roots.reduce((n, r) => n + r.units, 0);
    const embedded = report.roots.reduce((n, r) => n + r.embedded, 0);
    vscode.window.showInformationMessage(`codesearch: ${files} files, ${units} units (${embedded} embedded)`);
  } catch (err) {
    vscode.window.showErrorMessage(`codesearch: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function showStatus(cs: CodesearchClient, output: vscode.OutputChannel): Promise<void> {
  try {
    const status = await cs.execute<Status>(CMD_STATUS);
    const lines = status.roots.map(
      (r) => `${vscode.Uri.parse(r.root).fsPath}: ${r.state}, ${r.message}` + (r.freshness ? ` (kept fresh by ${r.freshness})` : ""),
    );
    const choice = await vscode.window.showInformationMessage(
      `codesearch: ${status.message}`,
      { detail: lines.join("\n"), modal: false },
      "Search",
      "Reindex",
      "Show log",
    );
    if (choice === "Search") {
      searchCode(cs);
    } else if (choice === "Reindex") {
      reindex(cs);
    } else if (choice === "Show log") {
      output.show();
    }
  } catch (err) {
    const choice = await vscode.window.showErrorMessage(
      `codesearch: ${err instanceof Error ? err.message : String(err)}`,
      "Restart server",
      "Show log",
    );
    if (choice === "Restart server") {
      startOrReport(cs, true);
    } else if (choice === "Show log") {
      output.show();
    }
  }
}
