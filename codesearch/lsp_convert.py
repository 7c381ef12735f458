"""LSP front door, part 2: hits as LSP JSON (ranges in the client's position encoding, snippets)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path

from .types import Hit

if TYPE_CHECKING:
    from .lsp_roots import RootIndex

log = logging.getLogger(__name__)

#: Lines of code in a result's snippet.
SNIPPET_LINES = 6


# --------------------------------------------------------------------------------------------------
# Converting hits


def _column(prefix: bytes, encoding: str) -> int:
    text = prefix.decode("utf-8", "replace")
    if encoding == types.PositionEncodingKind.Utf8.value:
        return len(prefix)
    if encoding == types.PositionEncodingKind.Utf32.value:
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _line_prefix(data: bytes | None, hit: Hit) -> bytes | None:
    """The bytes between the start of the hit's first line and its start, when ``data`` still holds its code."""
    s = hit.symbol
    if data is None or data[s.start_byte:s.end_byte] != s.code.encode("utf-8", "surrogatepass"):
        return None
    return data[data.rfind(b"\n", 0, s.start_byte) + 1:s.start_byte]


def hit_range(data: bytes | None, hit: Hit, encoding: str) -> dict[str, Any]:
    """The LSP range of a hit: exact columns when ``data`` (the file's bytes) still holds its code,
    else whole lines."""
    s = hit.symbol
    prefix = _line_prefix(data, hit)
    if data is not None and prefix is not None:
        end_col = _column(data[data.rfind(b"\n", 0, s.end_byte) + 1:s.end_byte], encoding)
        return {"start": {"line": s.start_line - 1, "character": _column(prefix, encoding)},
                "end": {"line": s.end_line - 1, "character": end_col}}
    return {"start": {"line": s.start_line - 1, "character": 0}, "end": {"line": s.end_line, "character": 0}}


def snippet(code: str, indent: str = "", lines: int = SNIPPET_LINES) -> str:
    """The first lines of a unit's code, dedented.

    Args:
        code: The unit's code (its first line starts at the definition, after any indentation).
        indent: The whitespace before the definition on its first line.
        lines: How many lines.
    """
    head = "\n".join(code.splitlines()[:lines])
    return textwrap.dedent(indent + head) if indent.strip() == "" else head



def hit_json(root: RootIndex, hit: Hit, source: bytes | None, encoding: str) -> dict[str, Any]:
    """One search result as JSON."""
    return _hit_json(str(root.root / hit.symbol.path), root.uri, hit, source, encoding)


def backend_hit_json(repo_root: str, backend: str, hit: Hit, source: bytes | None, encoding: str) -> dict[str, Any]:
    """One result of a multi-repository backend as JSON: ``repo`` added, ``root`` is the backend, and
    ``uri`` is the file in the checkout the batch job read (``repo_root``)."""
    out = _hit_json(str(Path(repo_root) / hit.symbol.path), backend, hit, source, encoding)
    out["repo"] = hit.repo
    return out


def _hit_json(file_path: str, root_uri: str, hit: Hit, source: bytes | None, encoding: str) -> dict[str, Any]:
    s = hit.symbol
    prefix = _line_prefix(source, hit)
    indent = prefix.decode("utf-8", "replace") if prefix is not None else ""
    return {
        "uri": from_fs_path(file_path),
        "range": hit_range(source, hit, encoding),
        "name": s.name,
        "qualifiedName": s.qualified_name,
        "kind": s.kind,
        "language": s.language,
        "role": s.role,
        "score": round(hit.score, 6),
        "path": s.path,
        "root": root_uri,
        "signature": s.signature,
        "summary": s.summary,
        "snippet": snippet(s.code, indent),
    }



def _plain(obj: Any) -> Any:
    """pygls hands unknown JSON objects over as namedtuples; turn them back into dicts and lists."""
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj
