"""Doc comment and docstring cleaners, one per doc style, and :func:`summary`.

The rules follow CodeSearchNet's function parsers: Python docstrings are the first string statement of
a body; Java/PHP docs are one ``/** */`` block; JavaScript, Go and Ruby docs are runs of full-line
comments. Each cleaner takes the raw source text and returns plain text without comment markers,
dedented, with leading and trailing blank lines removed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable

__all__ = [
    "clean_hash_comment",
    "clean_js_comments",
    "clean_line_comment",
    "clean_py_string",
    "clean_slash_star",
    "is_magic_comment",
    "summary",
]

# One Python string literal: optional prefix, opening quotes, body (escapes skipped), same closing quotes.
_PY_STRING = re.compile(
    r"""(?P<prefix>[A-Za-z]{0,2})(?P<q>'''|\"\"\"|'|")(?P<body>(?:\\.|(?!(?P=q)).)*)(?P=q)""",
    re.DOTALL,
)
# Go directives (`//go:generate`, `//nolint:errcheck`): not documentation, per go/doc.
_GO_DIRECTIVE = re.compile(r"^//(?:[a-z0-9]+:[a-z0-9]|line |export |extern )")
# Ruby magic comments and shebangs: `# frozen_string_literal: true`, `# -*- coding: utf-8 -*-`, `#!...`.
_RUBY_MAGIC = re.compile(
    r"^#(?:!|\s*-\*-.*-\*-\s*$|\s*(?:frozen_string_literal|encoding|coding|warn_indent|"
    r"shareable_constant_value|typed)\s*:)",
    re.IGNORECASE,
)
_TAG_LINE = re.compile(r"^@\w")


def is_magic_comment(comment: str) -> bool:
    """Whether a Ruby comment is a magic comment or shebang rather than documentation.

    Args:
        comment: The comment's source text (``# frozen_string_literal: true``).

    Returns:
        True for magic comments (``frozen_string_literal``, ``encoding``, ``-*- ... -*-``) and ``#!`` lines.
    """
    return _RUBY_MAGIC.match(comment.strip()) is not None


def _newlines(text: str) -> str:
    """Normalise CRLF and CR line ends to LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _dedent(lines: list[str]) -> list[str]:
    """Remove the common leading spaces of the non-blank lines (tabs must be expanded already)."""
    margin = min((len(line) - len(line.lstrip(" ")) for line in lines if line.strip()), default=0)
    return [line[margin:] for line in lines] if margin else lines


def _tidy(lines: Iterable[str]) -> str:
    """Right-strip each line, dedent, and drop leading and trailing blank lines."""
    return "\n".join(_dedent([line.rstrip() for line in lines])).strip("\n")


def clean_py_string(literal: str) -> str:
    """Clean a Python docstring literal.

    Args:
        literal: Source text of the string expression: one literal (``r\"\"\"...\"\"\"``, ``u'...'``)
            or several implicitly concatenated ones.

    Returns:
        The text between the quotes (prefixes and quotes removed, escapes left as written), dedented
        with :func:`inspect.cleandoc`.
    """
    literal = _newlines(literal.strip())
    start = len(literal) - len(literal.lstrip("rRuUbBfF"))
    quote = literal[start:start + 3]
    if quote not in ('"""', "'''"):
        quote = literal[start:start + 1]
    end = len(literal) - len(quote)
    if quote and end > start and literal.find(quote, start + len(quote)) == end:
        body = literal[start + len(quote):end]  # one literal: the common case, no regex needed
    else:
        body = "".join(m.group("body") for m in _PY_STRING.finditer(literal))
    return inspect.cleandoc(body.expandtabs()) if body else ""


def clean_slash_star(comment: str) -> str:
    """Clean one ``/* ... */`` or ``/** ... */`` block comment (Javadoc, PHPDoc, JSDoc).

    Args:
        comment: The comment's source text, markers included.

    Returns:
        The text without ``/**``, ``*/`` and the leading ``*`` of each line.
    """
    body = _newlines(comment)
    if body.startswith("/**"):
        body = body[3:]
    elif body.startswith("/*"):
        body = body[2:]
    if body.endswith("*/"):
        body = body[:-2]
    lines = body.expandtabs().split("\n")
    # The first line shares its line with `/**`: its indentation means nothing.
    first = lines[0].strip().strip("*").strip()
    rest: list[str] = []
    for line in lines[1:]:
        text = line.lstrip()
        if text.startswith("*"):  # drop the leading `*` and the one space after it
            text = text[2:] if text.startswith("* ") else text[1:]
        else:
            text = line
        rest.append(text.rstrip() if text.strip().strip("*") else "")
    return _tidy([first, *_dedent(rest)])


def clean_line_comment(comments: Iterable[str]) -> str:
    """Clean a run of ``//`` line comments (Go, JavaScript).

    Args:
        comments: The source text of each comment, top to bottom.

    Returns:
        The text without the ``//`` markers and the one space after them; Go directives
        (``//go:generate``) are dropped.
    """
    out: list[str] = []
    for comment in comments:
        text = _newlines(comment).strip()
        if _GO_DIRECTIVE.match(text):
            continue
        text = text.lstrip("/")
        out.append(text[1:] if text.startswith(" ") else text)
    return _tidy(line.expandtabs() for line in out)


def clean_hash_comment(comments: Iterable[str]) -> str:
    """Clean a run of ``#`` line comments (Ruby).

    Args:
        comments: The source text of each comment, top to bottom.

    Returns:
        The text without the ``#`` markers and the one space after them; magic comments
        (``# frozen_string_literal: true``) and shebangs at the top of the run are dropped.
    """
    out: list[str] = []
    for comment in comments:
        text = _newlines(comment).strip()
        if not out and _RUBY_MAGIC.match(text):
            continue
        text = text.lstrip("#")
        out.append(text[1:] if text.startswith(" ") else text)
    return _tidy(line.expandtabs() for line in out)


def clean_js_comments(comments: Iterable[str]) -> str:
    """Clean a run of JavaScript comments, mixing ``//``, ``/* */`` and ``/** */`` (JSDoc).

    Args:
        comments: The source text of each comment, top to bottom.

    Returns:
        Each comment cleaned by its own style (consecutive ``//`` lines together), joined by newlines.
    """
    blocks: list[str] = []
    pending: list[str] = []
    for comment in comments:
        if comment.startswith("//"):
            pending.append(comment)
            continue
        if pending:
            blocks.append(clean_line_comment(pending))
            pending = []
        blocks.append(clean_slash_star(comment))
    if pending:
        blocks.append(clean_line_comment(pending))
    return "\n".join(block for block in blocks if block)


def summary(doc: str) -> str:
    """Return the summary of a cleaned docstring.

    The summary is the text up to the first blank line or the first line starting with an
    ``@tag`` (``@param``, ``@return``), joined into one line with whitespace collapsed. A line
    starting with ``<p>`` also ends it: Javadoc writes paragraph breaks that way.

    Args:
        doc: A cleaned docstring (the output of one of the cleaners).

    Returns:
        The summary; ``""`` when the docstring is empty or starts with a tag.
    """
    kept: list[str] = []
    for line in doc.splitlines():
        stripped = line.strip()
        if not stripped:
            if kept:
                break
            continue
        if _TAG_LINE.match(stripped) or (kept and stripped[:3].lower() == "<p>"):
            break
        kept.append(stripped)
    return " ".join(" ".join(kept).split())


_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "approx", "resp", "no", "incl", "eg", "ie"})


def clean_summary(text: str) -> str:
    """Strip doc markup (Javadoc inline tags, HTML, reST roles, backticks, RDoc/YARD) and collapse whitespace.

    Used where a docstring summary becomes a query (bench/quality.py) or a training text (trainer/data.py).
    """
    text = re.sub(r"\{@(?:code|literal|link|linkplain|value)\s+([^}]*)\}",
                  lambda m: m.group(1).split()[-1] if m.group(1).strip() else "", text)
    text = re.sub(r"<[^>\n]{1,40}>", " ", text)
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    text = text.replace("``", "").replace("`", "")
    text = re.sub(r"(?<![\w+])\+([^\s+]+)\+(?![\w+])", r"\1", text)  # RDoc +code+
    text = re.sub(r"\{((?:[A-Z]\w*::)*[\w#.?!]+)\}", r"\1", text)  # YARD {Class#method} links
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", '"')
    return " ".join(text.split())


def first_sentence(text: str) -> str:
    """The text up to the first sentence end (``.``, ``!`` or ``?`` then a space or the end)."""
    for m in re.finditer(r"[.!?](?=\s|$)", text):
        before = text[: m.start()]
        word = before.rsplit(" ", 1)[-1].lower().lstrip("([{\"'")
        if m.group() == "." and word in _ABBREVIATIONS:
            continue
        return text[: m.end()].strip()
    return text.strip()
