"""Find the definitions of a source file with the language's query and turn them into Symbols.

Steps for one file:

1. Check that the bytes are text (no NUL, strict UTF-8), parse them with the language's parser.
2. Run ``queries/<lang>.scm`` with ``QueryCursor.matches``: each match is one definition node with its
   ``@name``. A small per-language *shape* function turns it into a unit span, a bare name, a qualifier
   that does not come from an enclosing definition (a Go receiver, ``Foo::`` in Ruby's
   ``class Foo::Bar``, the object a JavaScript function is assigned to) and the end of its signature.
3. Sort the units by span and nest them with a stack (no parent walks, no recursion): the nearest
   enclosing unit gives the qualified name prefix and decides whether a function is a method.
4. Read the docstring: the first string statement of a Python body, or the comments right above the
   definition, found by walking back over the source lines and checking each candidate against the tree.
5. Give each unit its role (implementation, test, ...) from the path, header and name (``roles.py``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tree_sitter import Node, QueryCursor, Tree

from parsers.docstrings import (
    clean_hash_comment,
    clean_js_comments,
    clean_line_comment,
    clean_py_string,
    clean_slash_star,
    is_magic_comment,
    summary,
)
from parsers.errors import ParseError, ParseTimeout
from parsers.registry import LanguageSpec, get_parser, get_query, get_spec
from parsers.roles import file_role, unit_role
from parsers.symbol import Symbol

__all__ = ["extract"]

#: Names that make a method a constructor, per language (Java uses its own node type).
_CONSTRUCTOR_NAMES: dict[str, frozenset[str]] = {
    "python": frozenset({"__init__"}),
    "javascript": frozenset({"constructor"}),
    "php": frozenset({"__construct"}),
    "ruby": frozenset({"initialize"}),
}

#: Keywords that may stand before a definition on its line without hiding the comments above it.
_LEAD_KEYWORDS: dict[str, re.Pattern[bytes]] = {
    "javascript": re.compile(rb"[ \t]*export(?:[ \t]+default)?[ \t]+"),
    "ruby": re.compile(
        rb"[ \t]*(?:(?:private|protected|public|module_function|private_class_method|"
        rb"public_class_method)[ \t(]+)+"
    ),
}

_BOM = b"\xef\xbb\xbf"
_JS_EXPORT_ROOTS = frozenset({"module", "exports"})


@dataclass(slots=True)
class _Unit:
    """One definition while it is being built."""

    capture: str  # function | method | class | constructor (from the query)
    name: str
    prefix: str  # qualifier not given by an enclosing unit ("" if none)
    start: int
    end: int
    start_row: int
    end_row: int
    sig_end: int  # byte where the signature stops (body start or end of the header)
    node: Node  # the definition node matched by the query
    anchor: int  # byte where the doc-comment search starts walking back
    force_method: bool = False
    kind: str = ""
    qualified: str = ""


def extract(source: bytes, lang: str, path: str, timeout: float | None = None) -> list[Symbol]:
    """Extract the functions, methods, constructors and classes of one source file.

    Args:
        source: The file's bytes.
        lang: A registry name (see :func:`parsers.registry.languages`).
        path: The file's path, stored as given in every Symbol.
        timeout: Time budget in seconds for parsing and matching the definition query (tree-sitter's
            progress callbacks cancel either); None or 0 means no limit.

    Returns:
        The symbols sorted by ``start_byte`` (outer before inner on ties). Files with syntax errors
        yield whatever the parser recovers; an empty file yields ``[]``.

    Raises:
        ParseError: ``source`` is not text (contains NUL bytes or is not valid UTF-8).
        ParseTimeout: parsing or query matching ran past ``timeout``.
        ValueError: ``lang`` is not a supported language.
    """
    spec = get_spec(lang)
    if not source:
        return []
    if b"\0" in source:
        raise ParseError(f"{path}: contains NUL bytes (binary file?)")
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc

    deadline = _Deadline(timeout) if timeout else None
    tree = _parse(source, lang, path, deadline)
    root = tree.root_node
    original = source
    if source.startswith(_BOM):  # scan a byte-for-byte copy where the BOM reads as spaces
        source = b"   " + source[3:]
    shape = _SHAPES[lang]
    units: list[_Unit] = []
    seen: set[tuple[int, int]] = set()
    # QueryCursor.matches takes a progress callback too, but passing one crashes the binding
    # (segmentation fault, tree-sitter 0.26.1): the match is checked against the budget afterwards.
    matches = QueryCursor(get_query(lang)).matches(root)
    if deadline is not None and deadline.passed():
        raise ParseTimeout(f"{path}: parsing and matching definitions took more than {deadline.budget:g} s",
                           deadline.budget)
    for _pattern, captures in matches:
        def_node: Node | None = None
        capture = ""
        for key, nodes in captures.items():
            if key.startswith("definition."):
                capture = key[11:]
                def_node = nodes[0]
        names = captures.get("name")
        if def_node is None or not names:
            continue
        unit = shape(source, def_node, names[0], capture)
        if unit is None or not unit.name:
            continue
        span = (unit.start, unit.end)
        if span in seen:
            continue
        seen.add(span)
        units.append(unit)

    units.sort(key=lambda u: (u.start, -u.end))
    _nest(units, lang)
    role = file_role(path, lang, original)
    return [_to_symbol(unit, spec, source, original, root, role, path) for unit in units]


class _Deadline:
    """A time budget checked by tree-sitter's progress callbacks (returning True halts the work)."""

    __slots__ = ("budget", "end", "expired")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.end = time.monotonic() + budget
        self.expired = False

    def parse_progress(self, _offset: int, _has_error: bool) -> bool:
        if time.monotonic() > self.end:
            self.expired = True
        return self.expired

    def passed(self) -> bool:
        return self.parse_progress(0, False)


#: Bytes handed to tree-sitter per read callback when parsing under a budget.
_READ_CHUNK = 1 << 16


def _parse(source: bytes, lang: str, path: str, deadline: _Deadline | None) -> Tree:
    """Parse ``source``; under a deadline through a read callback, the only form tree-sitter's Python
    binding gives a progress callback to (a bytes source ignores it)."""
    parser = get_parser(lang)
    if deadline is None:
        return parser.parse(source)
    view = memoryview(source)
    try:
        tree = parser.parse(lambda offset, _point: view[offset:offset + _READ_CHUNK],
                            progress_callback=deadline.parse_progress)
    except ValueError:  # "Parsing failed": the callback halted the parse
        tree = None
    if tree is None or deadline.expired:
        parser.reset()  # a halted parser would resume this parse on its next call
        raise ParseTimeout(f"{path}: parsing took more than {deadline.budget:g} s", deadline.budget)
    return tree


# ---------------------------------------------------------------------------------------------------------
# Shapes: one per language. Each returns the unit for one query match, or None to skip it.


def _text(source: bytes, node: Node) -> str:
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _unit(capture: str, name: str, node: Node, span: Node, sig_end: int, prefix: str = "",
          anchor: int | None = None) -> _Unit:
    return _Unit(capture=capture, name=name, prefix=prefix, start=span.start_byte, end=span.end_byte,
                 start_row=span.start_point[0], end_row=span.end_point[0], sig_end=sig_end, node=node,
                 anchor=span.start_byte if anchor is None else anchor)


def _body_start(node: Node, fallback: Node) -> int:
    body = node.child_by_field_name("body")
    return body.start_byte if body is not None else fallback.end_byte


def _shape_python(source: bytes, node: Node, name: Node, capture: str) -> _Unit:
    sig_end = name.end_byte
    for child in node.children:  # async def name ( ... ) -> type : body -- a handful of children
        if child.type == ":":
            sig_end = child.end_byte
            break
        if child.type == "block":
            break
        if child.type in ("parameters", "type", "argument_list", "type_parameter"):
            sig_end = child.end_byte
    return _unit(capture, _text(source, name), node, node, sig_end)


def _shape_java(source: bytes, node: Node, name: Node, capture: str) -> _Unit:
    return _unit(capture, _text(source, name), node, node, _body_start(node, node))


_shape_php = _shape_java


def _shape_go(source: bytes, node: Node, name: Node, capture: str) -> _Unit:
    if node.type == "type_spec":
        span = node
        parent = node.parent
        if parent is not None and parent.type == "type_declaration" and parent.named_child_count == 1:
            span = parent  # `type X struct {...}`: the unit starts at `type`
        sig_end = node.end_byte
        type_node = node.child_by_field_name("type")
        if type_node is not None:
            for child in type_node.children:
                if child.type in ("{", "field_declaration_list"):
                    sig_end = child.start_byte
                    break
        return _unit(capture, _text(source, name), node, span, sig_end)
    prefix = ""
    if node.type == "method_declaration":
        prefix = _go_receiver_type(source, node)
    return _unit(capture, _text(source, name), node, node, _body_start(node, node), prefix)


def _go_receiver_type(source: bytes, node: Node) -> str:
    """The receiver's type name of a Go method: ``Server`` for ``(s *Server)`` or ``(s Stack[T])``."""
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return ""
    for param in receiver.named_children:
        if param.type != "parameter_declaration":
            continue
        type_node = param.child_by_field_name("type")
        for _ in range(8):  # pointer_type -> generic_type -> type_identifier, bounded
            if type_node is None or type_node.type == "type_identifier":
                break
            if type_node.type == "generic_type":
                type_node = type_node.child_by_field_name("type")
            else:
                type_node = type_node.named_child(0) if type_node.named_child_count else None
        if type_node is not None and type_node.type == "type_identifier":
            return _text(source, type_node)
    return ""


def _shape_ruby(source: bytes, node: Node, name: Node, capture: str) -> _Unit:
    bare = _text(source, name)
    prefix = ""
    if name.type == "scope_resolution":  # class Foo::Bar -> prefix Foo, name Bar
        parts = [part for part in bare.split("::") if part]
        bare = parts[-1] if parts else ""
        prefix = ".".join(part.strip() for part in parts[:-1])
    if node.type in ("method", "singleton_method"):
        params = node.child_by_field_name("parameters")
        sig_end = params.end_byte if params is not None else name.end_byte
    else:
        superclass = node.child_by_field_name("superclass")
        sig_end = superclass.end_byte if superclass is not None else name.end_byte
    return _unit(capture, bare, node, node, sig_end, prefix)


def _shape_javascript(source: bytes, node: Node, name: Node, capture: str) -> _Unit | None:
    bare = _js_name(_text(source, name))
    kind = node.type
    if kind in ("class_declaration", "class", "function_declaration", "generator_function_declaration"):
        return _unit(capture, bare, node, node, _body_start(node, node))
    if kind == "method_definition":
        prefix = ""
        if capture == "function":  # a method in an object literal
            prefix = _js_object_path(source, node.parent)
        return _unit(capture, bare, node, node, _body_start(node, node), prefix)
    if kind in ("field_definition", "pair"):
        value = node.child_by_field_name("value")
        if value is None:
            return None
        prefix = _js_object_path(source, node.parent) if kind == "pair" else ""
        return _unit(capture, bare, node, node, _body_start(value, node), prefix)
    if kind == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is None:
            return None
        span = node
        parent = node.parent
        if (parent is not None and parent.type in ("lexical_declaration", "variable_declaration")
                and parent.named_child_count == 1):
            span = parent  # `const f = () => ...`: the unit starts at `const`
        return _unit(capture, bare, node, span, _body_start(value, node))
    if kind == "assignment_expression":
        right = node.child_by_field_name("right")
        left = node.child_by_field_name("left")
        if right is None or left is None:
            return None
        prefix = ""
        force_method = False
        if left.type == "member_expression":
            obj = left.child_by_field_name("object")
            if obj is not None:
                parts = _js_member_path(_text(source, obj))
                force_method = "prototype" in parts
                prefix = ".".join(p for p in parts if p != "prototype")
                if bare == "exports" and not parts:  # `module.exports = function parse() {}`
                    own = right.child_by_field_name("name")
                    if own is not None:
                        bare = _text(source, own)
        unit = _unit(capture, bare, node, node, _body_start(right, node), prefix)
        unit.force_method = force_method
        return unit
    return None


def _js_name(text: str) -> str:
    """A property name as written: drop the quotes of ``'key'`` and ``"key"``."""
    if len(text) >= 2 and text[0] in "'\"`" and text[-1] == text[0]:
        return text[1:-1]
    return text


def _js_member_path(text: str) -> list[str]:
    """``module.exports.util`` -> ``["util"]``; ``Foo.prototype`` -> ``["Foo", "prototype"]``."""
    parts = ["".join(part.split()) for part in text.split(".")]
    if parts and parts[0] == "this":
        parts = parts[1:]
    if parts and parts[0] in _JS_EXPORT_ROOTS:
        parts = parts[1:]
        if parts and parts[0] == "exports":
            parts = parts[1:]
    return [p for p in parts if p]


def _js_object_path(source: bytes, obj: Node | None) -> str:
    """The name an object literal is bound to: ``api`` for ``const api = {...}``; nested keys joined."""
    names: list[str] = []
    for _ in range(16):  # bounded: objects nested in pairs, rarely deeper than a few levels
        if obj is None or obj.type != "object":
            break
        parent = obj.parent
        if parent is None:
            break
        if parent.type == "pair":
            key = parent.child_by_field_name("key")
            if key is not None:
                names.append(_js_name(_text(source, key)))
            obj = parent.parent
            continue
        if parent.type == "variable_declarator":
            target = parent.child_by_field_name("name")
            if target is not None and target.type == "identifier":
                names.append(_text(source, target))
        elif parent.type == "assignment_expression":
            left = parent.child_by_field_name("left")
            if left is not None:
                names.extend(reversed(_js_member_path(_text(source, left))))
        break
    return ".".join(reversed(names))


_SHAPES = {
    "go": _shape_go,
    "java": _shape_java,
    "javascript": _shape_javascript,
    "php": _shape_php,
    "python": _shape_python,
    "ruby": _shape_ruby,
}


# ---------------------------------------------------------------------------------------------------------
# Nesting, kinds and qualified names.


def _nest(units: list[_Unit], lang: str) -> None:
    """Set ``kind`` and ``qualified`` of units sorted by ``(start, -end)``, using a stack of open units."""
    constructors = _CONSTRUCTOR_NAMES.get(lang, frozenset())
    stack: list[_Unit] = []
    for unit in units:
        while stack and (stack[-1].end <= unit.start or stack[-1].end < unit.end):
            stack.pop()
        parent = stack[-1] if stack else None
        capture = unit.capture
        if capture in ("class", "constructor"):
            kind = capture
        elif capture == "method" or unit.force_method or (parent is not None and parent.kind == "class"):
            kind = "method"
        else:
            kind = "function"
        if kind == "method" and unit.name in constructors:
            if lang != "php" or unit.name.lower() == "__construct":
                kind = "constructor"
        unit.kind = kind
        parts = [parent.qualified] if parent is not None else []
        if unit.prefix:
            parts.append(unit.prefix)
        parts.append(unit.name)
        unit.qualified = ".".join(parts)
        stack.append(unit)


# ---------------------------------------------------------------------------------------------------------
# Docstrings.


def _python_doc(source: bytes, node: Node) -> tuple[str, int, int]:
    """The docstring of a Python function or class: the first statement of its body, if a string."""
    body = node.child_by_field_name("body")
    if body is None or not body.named_child_count:
        return "", 0, 0
    stmt: Node | None = body.named_child(0)
    while stmt is not None and stmt.type == "comment":
        stmt = stmt.next_named_sibling
    if stmt is None or stmt.type != "expression_statement" or stmt.named_child_count != 1:
        return "", 0, 0
    literal = stmt.named_child(0)
    if literal is None or literal.type not in ("string", "concatenated_string"):
        return "", 0, 0
    text = _text(source, literal)
    prefix = text[:3].lower()
    prefix = prefix[:min(i for i in (prefix.find("'"), prefix.find('"'), 3) if i >= 0)]
    if "b" in prefix or "f" in prefix:
        return "", 0, 0  # bytes and f-strings are not docstrings
    return clean_py_string(text), literal.start_point[0] + 1, literal.end_point[0] + 1


def _comment_before(source: bytes, root: Node, pos: int, types: frozenset[str]) -> Node | None:
    """The full-line comment ending right before ``pos``, with no blank line in between."""
    line_start = source.rfind(b"\n", 0, pos) + 1
    before = source[line_start:pos].rstrip()
    if before:  # something on the same line, e.g. `/** doc */ int f()`
        end = line_start + len(before)
    else:
        if line_start == 0:
            return None
        prev_start = source.rfind(b"\n", 0, line_start - 1) + 1
        prev = source[prev_start:line_start - 1].rstrip()
        if not prev:
            return None  # a blank line separates them
        end = prev_start + len(prev)
    node = root.descendant_for_byte_range(end - 1, end)
    if node is None or node.type not in types or not node.start_byte < end <= node.end_byte:
        return None
    start = node.start_byte
    if source[source.rfind(b"\n", 0, start) + 1:start].strip():
        return None  # code before the comment on its line: a trailing comment, not a doc
    return node


def _doc_anchor(unit: _Unit, spec: LanguageSpec, source: bytes) -> int:
    """Where to start looking for comments: the unit start, or its line start after `export`/`private`."""
    pos = unit.anchor
    lead = _LEAD_KEYWORDS.get(spec.name)
    if lead is not None:
        line_start = source.rfind(b"\n", 0, pos) + 1
        if line_start < pos and lead.fullmatch(source, line_start, pos):
            return line_start  # `export function f` / `private def f`: look above the whole line
    return pos


def _comments_above(pos: int, spec: LanguageSpec, source: bytes, root: Node) -> list[Node]:
    """The doc comments right above ``pos``, top to bottom, following the language's doc style."""
    style = spec.doc_style
    found: list[Node] = []
    while True:
        node = _comment_before(source, root, pos, spec.comment_types)
        if node is None:
            break
        start = node.start_byte
        if style == "doc_block":
            if source.startswith(b"/**", start) and not source.startswith(b"/**/", start):
                found.append(node)
            break
        if style == "line_comment" and not source.startswith(b"//", start):
            break
        if style == "hash_comment" and (not source.startswith(b"#", start)
                                        or _is_magic(source, start, _text(source, node))):
            break  # a magic comment or shebang ends the run: only file headers lie above it
        found.append(node)
        pos = node.start_byte
    found.reverse()
    return found


def _is_magic(source: bytes, start: int, comment: str) -> bool:
    """A Ruby magic comment or shebang: looks like one and only comments or blank lines lie above it."""
    if not is_magic_comment(comment):
        return False
    line_start = source.rfind(b"\n", 0, start) + 1
    while line_start > 0:
        prev_start = source.rfind(b"\n", 0, line_start - 1) + 1
        text = source[prev_start:line_start - 1].strip()
        if text and not text.startswith(b"#"):
            return False  # code above: `# encoding: ...` here is ordinary text
        line_start = prev_start
    return True


def _line_comment_run(pos: int, spec: LanguageSpec, source: bytes, root: Node) -> list[str] | None:
    """Fast path for `//` (Go) and `#` (Ruby) runs: scan the lines above ``pos`` as text.

    Only the topmost line is checked against the tree. That is enough: after a real full-line
    comment the next line starts outside any string, so a line there that starts with the
    marker is a comment too. Returns None when the topmost line is not a real comment (string
    content that looks like one), so that the caller checks line by line.
    """
    line_start = source.rfind(b"\n", 0, pos) + 1
    if source[line_start:pos].strip():
        return []  # code before the definition on its line
    hash_style = spec.doc_style == "hash_comment"
    marker = b"#" if hash_style else b"//"
    lines: list[str] = []
    top = -1
    while line_start > 0:
        prev_start = source.rfind(b"\n", 0, line_start - 1) + 1
        raw = source[prev_start:line_start - 1]
        text = raw.strip()
        if not text.startswith(marker):
            break
        decoded = text.decode("utf-8", "replace")
        if hash_style and _is_magic(source, prev_start, decoded):
            break  # a magic comment or shebang ends the run: only file headers lie above it
        lines.append(decoded)
        top = prev_start + len(raw) - len(raw.lstrip())
        line_start = prev_start
    if not lines:
        return lines
    node = root.descendant_for_byte_range(top, top + 1)
    if node is None or node.type not in spec.comment_types or node.start_byte != top:
        return None
    lines.reverse()
    return lines


def _comment_doc(unit: _Unit, spec: LanguageSpec, source: bytes, root: Node) -> tuple[str, int, int]:
    pos = _doc_anchor(unit, spec, source)
    style = spec.doc_style
    if style in ("line_comment", "hash_comment"):
        lines = _line_comment_run(pos, spec, source, root)
        if lines is not None:
            if not lines:
                return "", 0, 0
            doc = clean_hash_comment(lines) if style == "hash_comment" else clean_line_comment(lines)
            # The anchor is on the unit's first line (0-based start_row): the run ends right above it.
            return doc, unit.start_row - len(lines) + 1, unit.start_row
    comments = _comments_above(pos, spec, source, root)
    if not comments:
        return "", 0, 0
    texts = [_text(source, c) for c in comments]
    if style == "doc_block":
        doc = clean_slash_star(texts[0])
    elif style == "js_comments":
        doc = clean_js_comments(texts)
    elif style == "line_comment":
        doc = clean_line_comment(texts)
    else:
        doc = clean_hash_comment(texts)
    return doc, comments[0].start_point[0] + 1, comments[-1].end_point[0] + 1


# ---------------------------------------------------------------------------------------------------------
# Symbols.


def _to_symbol(unit: _Unit, spec: LanguageSpec, source: bytes, original: bytes, root: Node, role: str,
               path: str) -> Symbol:
    start, end, end_row = unit.start, unit.end, unit.end_row
    if end > start and source[end - 1:end].isspace():  # never end a unit on trailing whitespace
        trimmed = source[start:end].rstrip()
        end_row -= source[start + len(trimmed):end].count(b"\n")
        end = start + len(trimmed)
    if spec.doc_style == "py_string":
        doc, doc_start, doc_end = _python_doc(source, unit.node)
    else:
        doc, doc_start, doc_end = _comment_doc(unit, spec, source, root)
    signature = " ".join(source[start:max(start, min(unit.sig_end, end))].decode("utf-8", "replace").split())
    if unit.sig_end >= end:  # no body (abstract / interface method): drop the closing `;`
        signature = signature.rstrip(";").rstrip()
    return Symbol(
        path=path,
        language=spec.name,
        kind=unit.kind,
        name=unit.name,
        qualified_name=unit.qualified,
        signature=signature,
        docstring=doc,
        summary=summary(doc),
        start_line=unit.start_row + 1,
        end_line=max(end_row, unit.start_row) + 1,
        start_byte=start,
        end_byte=end,
        code=original[start:end].decode("utf-8", "replace"),
        doc_start_line=doc_start,
        doc_end_line=doc_end,
        role=unit_role(role, spec.name, unit.kind, unit.name),
    )
