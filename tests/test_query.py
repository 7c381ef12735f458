from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codesearch.errors import UsageError
from codesearch.query import Query, parse


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
)


@given(queries)
def test_str_parse_round_trip(q):
    assert parse(str(q)) == q
