// Settings of the extension: how to start the server and which options to send it.
// Pure functions over a small reader interface, so they run (and are tested) without VS Code.

import * as os from "os";
import * as path from "path";

/** Reads one `codesearch.*` setting; `undefined` when the user did not set it (defaults excluded). */
export interface ConfigReader {
  get<T>(key: string): T | undefined;
}

/** A reader over a plain object (tests, and the defaults of package.json). */
export function objectReader(values: Record<string, unknown>): ConfigReader {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

/** Server options the extension forwards (camelCase, as `codesearch lsp` reads them). */
export const SERVER_OPTION_KEYS = [
  "modelPath",
  "indexDir",
  "k",
  "mode",
  "ignorePatterns",
  "debounceMs",
  "watch",
] as const;

export type ServerOptionKey = (typeof SERVER_OPTION_KEYS)[number];

/**
 * The `initializationOptions` (and `didChangeConfiguration` settings) for the server: the options the
 * user set, and `null` for the others, so the repository's own `.codesearch.toml` applies to them.
 */
export function serverOptions(config: ConfigReader): Record<ServerOptionKey, unknown> {
  const out = {} as Record<ServerOptionKey, unknown>;
  for (const key of SERVER_OPTION_KEYS) {
    const value = config.get<unknown>(key);
    out[key] = value === undefined ? null : value;
  }
  return out;
}

/** Expand `~` and `${workspaceFolder}` in a configured path. */
export function expandPath(value: string, workspaceFolder: string | undefined, home = os.homedir()): string {
  let out = value.trim();
  if (out === "~" || out.startsWith("~/")) {
    out = path.join(home, out.slice(1));
  }
  if (workspaceFolder !== undefined) {
    out = out.split("${workspaceFolder}").join(workspaceFolder);
  }
  return out;
}

/** The command that starts the language server. */
export function serverCommand(
  config: ConfigReader,
  workspaceFolder: string | undefined,
): { command: string; args: string[] } {
  const command = expandPath(config.get<string>("server.path") || "codesearch", workspaceFolder);
  const args = config.get<string[]>("server.args") ?? ["lsp"];
  return { command, args: args.map((a) => expandPath(a, workspaceFolder)) };
}

/** Results the search picker asks for. */
export function pickerK(config: ConfigReader): number {
  const k = config.get<number>("k");
  return typeof k === "number" && k >= 1 ? Math.min(Math.floor(k), 1000) : 20;
}

/** Debounce of the search picker, in milliseconds. */
export function pickerDebounceMs(config: ConfigReader): number {
  const ms = config.get<number>("debounceMs");
  return typeof ms === "number" && ms >= 0 ? Math.min(ms, 2000) : 250;
}

/** Settings whose change needs a new server process (the others are sent to the running one). */
export const RESTART_KEYS = ["server.path", "server.args"];
