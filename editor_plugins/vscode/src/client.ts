// The language client's lifecycle: start `codesearch lsp`, forward settings, relay status.

import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";

import {
  SEARCH_METHOD,
  STATUS_NOTIFICATION,
  type SearchParams,
  type SearchResponse,
  type Status,
} from "./protocol";
import { type ConfigReader, serverCommand, serverOptions } from "./settings";

/** Languages whose open buffers the server indexes in memory (codesearch's six). */
export const LANGUAGES = ["python", "java", "javascript", "javascriptreact", "go", "php", "ruby"];

/** The user's `codesearch.*` settings, ignoring package.json defaults (so the repository's settings apply). */
export function configReader(scope?: vscode.ConfigurationScope): ConfigReader {
  const config = vscode.workspace.getConfiguration("codesearch", scope);
  return {
    get<T>(key: string): T | undefined {
      const seen = config.inspect<T>(key);
      return seen?.workspaceFolderValue ?? seen?.workspaceValue ?? seen?.globalValue;
    },
  };
}

/** Owns the LanguageClient; safe to start, stop and restart repeatedly. */
export class CodesearchClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly statusEmitter = new vscode.EventEmitter<Status | undefined>();
  /** Fires with each `codesearch/status` notification, and with `undefined` when the server stops. */
  readonly onStatus = this.statusEmitter.event;
  status: Status | undefined;

  constructor(private readonly output: vscode.OutputChannel) {}

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  /** Starting or running. */
  get alive(): boolean {
    return this.client !== undefined && this.client.state !== State.Stopped;
  }

  async start(): Promise<void> {
    if (this.client !== undefined) {
      return;
    }
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const config = configReader();
    const { command, args } = serverCommand(config, folder);
    const server: ServerOptions = {
      command,
      args,
      options: { cwd: folder, env: { ...process.env, HF_HUB_OFFLINE: "1", TOKENIZERS_PARALLELISM: "false" } },
    };
    const options: LanguageClientOptions = {
      documentSelector: LANGUAGES.map((language) => ({ scheme: "file", language })),
      initializationOptions: serverOptions(config),
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
    };
    const client = new LanguageClient("codesearch", "codesearch", server, options);
    client.onDidChangeState((e) => {
      if (e.newState === State.Stopped) {
        this.status = undefined;
        this.statusEmitter.fire(undefined);
      }
    });
    // Registered before start (the client keeps it across restarts): the first statuses come early.
    client.onNotification(STATUS_NOTIFICATION, (status: Status) => {
      this.status = status;
      this.statusEmitter.fire(status);
    });
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      this.client = undefined;
      throw new Error(
        `cannot start "${command} ${args.join(" ")}": ${err instanceof Error ? err.message : String(err)}. ` +
          "Install codesearch or set codesearch.server.path.",
      );
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined && client.state !== State.Stopped) {
      await client.stop();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private require(): LanguageClient {
    if (this.client === undefined || !this.running) {
      throw new Error("the codesearch server is not running (see the codesearch output channel)");
    }
    return this.client;
  }

  /** `codesearch/search`, cancelled (`$/cancelRequest`) when `signal` aborts. */
  async search(params: SearchParams, signal: AbortSignal): Promise<SearchResponse> {
    const client = this.require();
    const cts = new vscode.CancellationTokenSource();
    const onAbort = () => cts.cancel();
    signal.addEventListener("abort", onAbort);
    try {
      return await client.sendRequest<SearchResponse>(SEARCH_METHOD, params, cts.token);
    } finally {
      signal.removeEventListener("abort", onAbort);
      cts.dispose();
    }
  }

  /** `workspace/executeCommand` on the server. */
  async execute<T>(command: string, args: unknown[] = []): Promise<T> {
    return this.require().sendRequest<T>("workspace/executeCommand", { command, arguments: args });
  }

  /** Send the current settings (after the user changed them). */
  async sendConfiguration(): Promise<void> {
    if (this.running) {
      await this.client?.sendNotification("workspace/didChangeConfiguration", {
        settings: { codesearch: serverOptions(configReader()) },
      });
    }
  }

  dispose(): void {
    this.stop();
    this.statusEmitter.dispose();
  }
}
