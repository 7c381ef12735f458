from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codesearch.lexical import split_identifier, split_words, tokens


def test_split_identifier_cases():
    assert split_identifier("parseHTTPHeader_v2") == ["parse", "http", "header", "v", "2"]
    assert split_identifier("snake_case_name") == ["snake", "case", "name"]
    assert split_identifier("XMLHttpRequest") == ["xml", "http", "request"]
    assert split_identifier("getURL") == ["get", "url"]
    assert split_identifier("__init__") == ["init"]
    assert split_identifier("md5sum") == ["md", "5", "sum"]


def test_tokens_keep_whole_identifier_and_parts():
    toks = tokens("def parse_cookie(header): return CookieJar()")
    assert toks == ["def", "parse", "cookie", "parse_cookie", "header", "return", "cookie", "jar", "cookiejar"]


words = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8), min_size=1, max_size=5)


@given(words)
def test_camel_and_snake_round_trip(parts):
    # Parts of two letters or more: a one-letter capital is ambiguous with an acronym (aBC).

    camel = parts[0] + "".join(p.capitalize() for p in parts[1:])
    snake = "_".join(parts)
    assert split_identifier(camel) == parts
    assert split_identifier(snake) == parts
    assert split_words(snake) == " ".join(parts)


@given(st.text(max_size=200))
def test_tokens_are_fts_safe(text):
    for tok in tokens(text):
        assert tok and tok == tok.lower()
        assert all(c.isalnum() or c == "_" for c in tok)
        assert '"' not in tok
