"""Remove documentation from source files while keeping every line where it was.

The quality benchmark asks for a function by its docstring summary, so the index must not see that
docstring. Blanking keeps line numbers (and so the ``path:start_line`` target ids) intact:

* Python: each function or class docstring literal becomes ``""`` followed by as many newlines as the
  literal spanned, so the body stays valid and every later line keeps its number.
* Other languages: the doc comment lines above a definition (as reported by the parser in
  ``doc_start_line``/``doc_end_line``) become empty lines.

A docstring is left alone (and reported as not blanked) when blanking it would touch code: a Python
literal followed by a statement on its last line, or a doc comment sharing a line with code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from parsers import Symbol

__all__ = ["blank_comment_docs", "blank_python_docstrings", "comment_only", "line_count"]


def line_count(data: bytes) -> int:
    """Number of newline characters: equal before and after blanking."""
    return data.count(b"\n")


def _line_starts(data: bytes) -> list[int]:
    starts = [0]
    pos = data.find(b"\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = data.find(b"\n", pos + 1)
    return starts


def blank_python_docstrings(source: bytes) -> tuple[bytes, set[int]]:
    """Replace every function and class docstring with an empty one, keeping line numbers.

    Args:
        source: A Python file that ``ast.parse`` accepts, UTF-8 encoded.

    Returns:
        The new source, and the set of 1-based first lines of the docstring literals that were blanked
        (to compare with ``Symbol.doc_start_line``).

    Raises:
        SyntaxError: If ``source`` does not parse.
    """
    tree = ast.parse(source)
    starts = _line_starts(source)
    spans: list[tuple[int, int, int]] = []  # (start byte, end byte, first line)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not node.body:
            continue
        first = node.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)):
            continue
        lit = first.value
        if lit.end_lineno is None or lit.end_col_offset is None:
            continue
        # ast column offsets are UTF-8 byte offsets.
        begin = starts[lit.lineno - 1] + lit.col_offset
        end = starts[lit.end_lineno - 1] + lit.end_col_offset
        eol = source.find(b"\n", end)
        rest = source[end: eol if eol != -1 else len(source)].strip()
        if rest and not rest.startswith(b"#"):
            continue  # e.g. `"""doc"""; x = 1`: the rest would lose its indentation
        spans.append((begin, end, lit.lineno))
    out = source
    blanked: set[int] = set()
    for begin, end, line in sorted(spans, reverse=True):
        out = out[:begin] + b'""' + b"\n" * out[begin:end].count(b"\n") + out[end:]
        blanked.add(line)
    return out, blanked


def comment_only(lines: list[bytes]) -> bool:
    """Whether ``lines`` hold nothing but comments (``//``, ``#``, ``/* */`` blocks, ``=begin``/``=end``).

    Args:
        lines: Raw source lines without their newline.

    Returns:
        True when every line is inside a comment or empty, so emptying them removes no code.
    """
    in_block = False
    in_rdoc = False
    for raw in lines:
        line = raw.strip()
        if in_rdoc:
            if line.startswith(b"=end"):
                in_rdoc = False
            continue
        if in_block:
            if b"*/" in line:
                if not line.endswith(b"*/"):
                    return False
                in_block = False
            continue
        if not line or line.startswith((b"//", b"#")):
            continue
        if line.startswith(b"=begin"):
            in_rdoc = True
            continue
        if line.startswith(b"/*"):
            if b"*/" in line[2:]:
                if not line.endswith(b"*/") or line.count(b"*/") != 1:
                    return False
            else:
                in_block = True
            continue
        return False
    return not in_block and not in_rdoc


def blank_comment_docs(source: bytes, symbols: Iterable[Symbol]) -> tuple[bytes, set[int]]:
    """Empty the doc comment lines above the given definitions, keeping line numbers.

    Args:
        source: The file.
        symbols: Its units, as extracted by ``parsers.extract`` from ``source``.

    Returns:
        The new source, and the set of ``start_line`` of the units whose doc comment was blanked.
    """
    lines = source.split(b"\n")
    to_blank: set[int] = set()  # 0-based line indexes
    blanked: set[int] = set()
    for sym in symbols:
        if not sym.doc_start_line or sym.doc_end_line >= sym.start_line:
            continue
        lo, hi = sym.doc_start_line - 1, sym.doc_end_line - 1
        if hi >= len(lines) or not comment_only(lines[lo: hi + 1]):
            continue
        to_blank.update(range(lo, hi + 1))
        blanked.add(sym.start_line)
    for i in to_blank:
        lines[i] = b"\r" if lines[i].endswith(b"\r") else b""
    return b"\n".join(lines), blanked
