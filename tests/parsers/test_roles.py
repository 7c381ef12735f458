"""What a unit is for (parsers/roles.py): per-language conventions, and goldens over the fixture repos.

The goldens are written by hand from the conventions (they are the specification), not generated.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parsers import extract, language_for_path
from parsers.roles import ROLES, file_role, unit_role

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MINI_REPOS = sorted((FIXTURES / "repos").iterdir())
WITH_TESTS = FIXTURES / "with_tests"

#: Every unit of tests/fixtures/with_tests: (path, qualified name) -> role.
WITH_TESTS_ROLES = {
    ("benchmarks/bench_slugify.py", "time_slugify_long_title"): "benchmark",
    ("examples/slug_demo.py", "print_slugs"): "example",
    ("gen/messages.pb.go", "Request"): "generated",
    ("gen/messages.pb.go", "Request.GetClientIp"): "generated",
    ("lib/roman.rb", "Roman"): "implementation",
    ("lib/roman.rb", "Roman.to_roman"): "implementation",
    ("php/src/Csv.php", "Csv"): "implementation",
    ("php/src/Csv.php", "Csv.splitLine"): "implementation",
    ("php/tests/CsvTest.php", "CsvTest"): "test",
    ("php/tests/CsvTest.php", "CsvTest.testSplitLineHonoursQuotedFieldsWithCommas"): "test",
    ("ratelimit/limiter.go", "Limiter"): "implementation",
    ("ratelimit/limiter.go", "bucket"): "implementation",
    ("ratelimit/limiter.go", "NewLimiter"): "implementation",
    ("ratelimit/limiter.go", "Limiter.Allow"): "implementation",
    ("ratelimit/limiter_test.go", "TestAllowRateLimitsRequestsPerClientIP"): "test",
    ("ratelimit/limiter_test.go", "BenchmarkAllow"): "benchmark",
    ("ratelimit/limiter_test.go", "ExampleLimiter"): "example",
    ("slugs/slugify.py", "slugify"): "implementation",
    ("spec/roman_spec.rb", "expect_roman"): "test",
    ("src/main/java/shop/PriceFormatter.java", "PriceFormatter"): "implementation",
    ("src/main/java/shop/PriceFormatter.java", "PriceFormatter.parseCents"): "implementation",
    ("src/test/java/shop/CheckoutIT.java", "CheckoutIT"): "test",
    ("src/test/java/shop/CheckoutIT.java", "CheckoutIT.checkoutTotalsThePricesOfTheCart"): "test",
    ("src/test/java/shop/PriceFormatterTest.java", "PriceFormatterTest"): "test",
    ("src/test/java/shop/PriceFormatterTest.java", "PriceFormatterTest.parseCentsReadsAPriceIntoIntegerCents"): "test",
    ("test/test_roman.rb", "TestRoman"): "test",
    ("test/test_roman.rb", "TestRoman.test_to_roman_converts_an_integer_to_a_roman_numeral"): "test",
    ("tests/conftest.py", "titles"): "test",
    ("tests/test_slugify.py", "test_slugify_strips_accents_and_joins_words_with_dashes"): "test",
    ("web/__tests__/identity.js", "plainBodyWithoutAcceptEncoding"): "test",
    ("web/gzip.js", "compressResponse"): "implementation",
    ("web/gzip.test.js", "compressResponseBodyWithGzipForTest"): "test",
    ("web/gzip.test.js", "compressResponseBodyWithGzipForTest.res.setHeader"): "test",
    ("web/test/helpers.js", "fakeResponse"): "test",
    ("web/test/helpers.js", "fakeResponse.setHeader"): "test",
}


def _units(root: Path) -> dict[tuple[str, str], str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            rel = (Path(dirpath) / fn).relative_to(root).as_posix()
            lang = language_for_path(rel)
            if lang is None:
                continue
            for sym in extract((root / rel).read_bytes(), lang, rel):
                assert (rel, sym.qualified_name) not in out
                out[(rel, sym.qualified_name)] = sym.role
    return out


def test_the_repo_with_tests_beside_its_code():
    assert _units(WITH_TESTS) == WITH_TESTS_ROLES
    assert set(WITH_TESTS_ROLES.values()) == set(ROLES)


@pytest.mark.parametrize("repo", MINI_REPOS, ids=lambda p: p.name)
def test_the_six_fixture_repos_are_all_implementation(repo):
    units = _units(repo)
    assert units and set(units.values()) == {"implementation"}


@pytest.mark.parametrize(("path", "lang", "role"), [
    # Go
    ("net/http/server_test.go", "go", "test"),
    ("net/http/testdata/x.go", "go", "test"),
    ("testing/benchmark.go", "go", "implementation"),  # the testing package itself is implementation
    ("_test.go", "go", "implementation"),
    # Python
    ("pkg/test_cookies.py", "python", "test"),
    ("pkg/cookies_test.py", "python", "test"),
    ("conftest.py", "python", "test"),
    ("src/tests/helpers.py", "python", "test"),
    ("unittest/case.py", "python", "implementation"),
    ("contest.py", "python", "implementation"),
    ("latest_test_results.py", "python", "implementation"),
    ("tools/bench_parse.py", "python", "benchmark"),
    # Java
    ("src/test/java/a/Util.java", "java", "test"),
    ("a/CookieTest.java", "java", "test"),
    ("a/CookieTests.java", "java", "test"),
    ("a/CookieTestCase.java", "java", "test"),
    ("a/TestCookie.java", "java", "test"),
    ("a/CheckoutIT.java", "java", "test"),
    ("a/Test.java", "java", "implementation"),
    ("a/Testament.java", "java", "implementation"),
    ("a/ITSupport.java", "java", "implementation"),
    ("src/jmh/java/a/ParseBench.java", "java", "benchmark"),
    ("a/ParseBenchmark.java", "java", "benchmark"),
    # JavaScript
    ("src/gzip.test.js", "javascript", "test"),
    ("src/gzip.spec.mjs", "javascript", "test"),
    ("src/__tests__/gzip.js", "javascript", "test"),
    ("test/gzip.js", "javascript", "test"),
    ("src/attest.js", "javascript", "implementation"),
    ("src/parse.bench.js", "javascript", "benchmark"),
    # PHP
    ("tests/Unit/Helpers.php", "php", "test"),
    ("src/CsvTest.php", "php", "test"),
    ("PHPUnit/Framework/Test.php", "php", "implementation"),  # PHPUnit's own Test interface
    # Ruby
    ("spec/roman_spec.rb", "ruby", "test"),
    ("lib/roman_spec.rb", "ruby", "test"),
    ("test/test_roman.rb", "ruby", "test"),
    ("lib/roman_test.rb", "ruby", "test"),
    ("lib/test.rb", "ruby", "implementation"),
    ("lib/latest.rb", "ruby", "implementation"),
    # any language: examples, case of directory names
    ("examples/server.go", "go", "example"),
    ("docs/samples/Demo.java", "java", "example"),
    ("Tests/Unit/Csv.php", "php", "test"),
])
def test_path_conventions(path, lang, role):
    assert file_role(path, lang) == role


@pytest.mark.parametrize(("head", "role"), [
    (b"// Code generated by protoc-gen-go. DO NOT EDIT.\n// source: a.proto\npackage a\n", "generated"),
    (b"# Generated by the protocol buffer compiler.  DO NOT EDIT!\n", "generated"),
    (b"/**\n * @generated by a tool\n */\n", "generated"),
    (b"// Code generated by mockery v2; DO NOT EDIT.\n", "generated"),
    (b"# auto-generated file: do not edit\n", "generated"),
    (b"# This module is not generated; do not edit it lightly.\n", "implementation"),
    (b"def generated_names():\n    pass  # do not edit\n", "implementation"),
    (b"\n" * 3000 + b"// Code generated by x. DO NOT EDIT.\n", "implementation"),  # only the header counts
])
def test_generated_markers(head, role):
    assert file_role("pkg/a.go", "go", head) == role


def test_generated_wins_over_test_paths():
    assert file_role("pkg/mock_test.go", "go", b"// Code generated by mockgen. DO NOT EDIT.\n") == "generated"


@pytest.mark.parametrize(("name", "role"), [
    ("TestParse", "test"), ("BenchmarkParse", "benchmark"), ("Benchmark", "benchmark"),
    ("Example", "example"), ("ExampleParse", "example"), ("Example_parse", "example"),
    ("Benchmarked", "test"), ("Examples", "test"), ("helper", "test"),
])
def test_go_test_file_functions(name, role):
    assert unit_role("test", "go", "function", name) == role
    assert unit_role("implementation", "go", "function", name) == "implementation"
    assert unit_role("test", "python", "function", name) == "test"


def test_the_mcp_schema_lists_the_roles():
    from codesearch.mcp_server import _ROLES

    assert tuple(_ROLES) == ROLES
