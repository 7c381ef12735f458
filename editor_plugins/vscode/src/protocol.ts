// The shapes of codesearch's custom LSP messages (see docs/lsp.md). No logic: the server ranks.

export const SEARCH_METHOD = "codesearch/search";
export const STATUS_NOTIFICATION = "codesearch/status";
export const CMD_REINDEX = "codesearch.reindex";
export const CMD_STATUS = "codesearch.status";

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface SearchParams {
  query: string;
  k?: number;
  language?: string | string[];
  path?: string | string[];
  kind?: string | string[];
  mode?: "hybrid" | "semantic" | "lexical";
  root?: string;
}

export interface SearchResult {
  uri: string;
  range: Range;
  name: string;
  qualifiedName: string;
  kind: string;
  language: string;
  /** implementation, test, benchmark, example or generated (absent from servers before it existed). */
  role?: string;
  score: number;
  path: string;
  root: string;
  signature: string;
  summary: string;
  snippet: string;
}

export interface SearchResponse {
  results: SearchResult[];
  elapsedMs: number;
}

export interface RootStatus {
  root: string;
  state: IndexState;
  message: string;
  freshness: string;
  progress: [number, number] | null;
  unsavedFiles: string[];
  units?: number;
  generation?: number;
  model?: string;
}

export type IndexState = "starting" | "indexing" | "ready" | "error";

export interface Status {
  state: IndexState;
  units: number;
  message: string;
  roots: RootStatus[];
}
