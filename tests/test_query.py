from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codesearch.errors import UsageError
from codesearch.query import Query, asked_roles, parse


def test_parse_filters_and_phrases():
    q = parse('retry with backoff lang:go path:net/http/ kind:method "max retries"')
    assert q == Query("retry with backoff", ("go",), ("net/http/",), ("method",), ("max retries",))
    assert q.ranking_text == "retry with backoff max retries"


def test_aliases_and_unknown_keys_stay_text():
    q = parse("open file lang:py kind:func http://example todo:x")
    assert q.languages == ("python",)
    assert q.kinds == ("function",)
    assert q.text == "open file http://example todo:x"


def test_bad_filters_are_usage_errors():
    with pytest.raises(UsageError, match="unknown language"):
        parse("x lang:cobol")
    with pytest.raises(UsageError, match="unknown kind"):
        parse("x kind:macro")
    with pytest.raises(UsageError, match="unbalanced"):
        parse('x "open')


def test_role_filters_and_aliases():
    q = parse("parse cookie role:tests -role:gen -role:bench lang:py")
    assert q.roles == ("test",) and q.not_roles == ("generated", "benchmark") and q.text == "parse cookie"
    assert parse("x role:impl").roles == ("implementation",)
    assert parse("x -roles:test").text == "x -roles:test"  # unknown keys stay text
    with pytest.raises(UsageError, match="unknown role 'tset'"):
        parse("x role:tset")
    with pytest.raises(UsageError, match="unknown role"):
        parse("x -role:nope")


@pytest.mark.parametrize(("text", "roles"), [
    ("test for parse cookie", ("test",)),
    ("tests of the rate limiter", ("test",)),
    ("Tests that check slugify", ("test",)),
    ("unit test slugify", ("test",)),
    ("spec for the router", ("test",)),
    ("how is the cookie parser tested", ("test",)),
    ("benchmark for allow", ("benchmark",)),
    ("example of using the limiter", ("example",)),
    ("usage of Limiter", ("example",)),
    ("parse cookie header", ()),
    ("test runner discovery", ()),
    ("run the tests in parallel", ()),
    ("latest test results", ()),
    ("attest a signature for the contest", ()),
])
def test_asked_roles(text, roles):
    assert asked_roles(text) == roles


def test_path_with_spaces_round_trips():
    q = Query("find it", paths=("my dir/src",))
    assert parse(str(q)) == q


word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=10).filter(
    lambda w: ":" not in w)
queries = st.builds(
    Query,
    text=st.lists(word, max_size=5).map(" ".join),
    languages=st.lists(st.sampled_from(["go", "java", "javascript", "php", "python", "ruby"]), unique=True,
                       max_size=2).map(tuple),
    paths=st.lists(st.text(alphabet="abc/*._-", min_size=1, max_size=12), unique=True, max_size=2).map(tuple),
    kinds=st.lists(st.sampled_from(["function", "method", "constructor", "class"]), unique=True,
                   max_size=2).map(tuple),
    phrases=st.lists(st.lists(word, min_size=1, max_size=3).map(" ".join), unique=True, max_size=2).map(tuple),
    roles=st.lists(st.sampled_from(["implementation", "test", "benchmark", "example", "generated"]), unique=True,
                   max_size=2).map(tuple),
    not_roles=st.lists(st.sampled_from(["test", "generated"]), unique=True, max_size=2).map(tuple),
)


@given(queries)
def test_str_parse_round_trip(q):
    assert parse(str(q)) == q
