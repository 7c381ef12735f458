"""The frozen record every layer above the parsers uses: one extracted code unit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Kinds of unit the parsers emit.
KINDS = ("function", "method", "constructor", "class")


@dataclass(frozen=True, slots=True)
class Symbol:
    """One function, method, constructor or class found in a source file.

    Attributes:
        path: Path of the file, relative to the repository root, with forward slashes.
        language: Registry name of the language (``python``, ``java``, ...).
        kind: One of :data:`KINDS`.
        name: The bare name (``parse``).
        qualified_name: The name qualified by enclosing classes/modules (``Cookie.parse``).
        signature: The declaration line(s) up to the body, whitespace-collapsed.
        docstring: The docstring or doc comment, cleaned of comment markers ("" if none).
        summary: The docstring up to its first blank line or first ``@tag`` ("" if none).
        start_line: 1-based first line of the definition (excluding the doc comment above it).
        end_line: 1-based last line of the definition, inclusive.
        start_byte: Byte offset of the definition's start in the file.
        end_byte: Byte offset just past the definition's end.
        code: The definition's source text (``source[start_byte:end_byte]`` decoded).
        doc_start_line: 1-based first line of the doc comment above the definition, or of the
            docstring inside it; 0 when there is no docstring.
        doc_end_line: 1-based last line of the docstring or doc comment; 0 when there is none.
        role: What the unit is for, one of :data:`parsers.roles.ROLES` (``implementation``, ``test``,
            ``benchmark``, ``example``, ``generated``), from its path, file header and name.
    """

    path: str
    language: str
    kind: str
    name: str
    qualified_name: str
    signature: str
    docstring: str
    summary: str
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    code: str
    doc_start_line: int = 0
    doc_end_line: int = 0
    role: str = "implementation"

    @property
    def id(self) -> str:
        """A stable, human-readable identifier: ``path:qualified_name:start_line``."""
        return f"{self.path}:{self.qualified_name}:{self.start_line}"

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) over everything that describes the unit except its position."""
        h = hashlib.sha256()
        for part in (self.language, self.kind, self.qualified_name, self.signature,
                     self.docstring, self.code):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()
