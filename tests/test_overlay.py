"""The unsaved-buffer overlay: a buffer equal to its file changes nothing; edits are found in memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codesearch.config import load_settings
from codesearch.index import IndexReader, find_index_dir
from codesearch.indexer import index_repository
from codesearch.overlay import BufferOverlay, QueryVectorCache, overlay_search
from codesearch.search import Searcher

FIXTURE = Path(__file__).parent / "fixtures" / "lsp_repo"
QUERIES = ["add a product to the cart", "round half to even", 'price "percent"', "lang:python kind:method total"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, shipped_embedder):
    root = tmp_path_factory.mktemp("overlay") / "repo"
    shutil.copytree(FIXTURE, root)
    settings = load_settings(root)
    index_repository(root, settings, shipped_embedder)
    encoder = QueryVectorCache(shipped_embedder)
    searcher = Searcher(IndexReader(find_index_dir(root, None)), settings, encoder)
    yield root, searcher
    searcher.close()


def fresh_overlay(searcher: Searcher) -> BufferOverlay:
    return BufferOverlay(searcher.embedder, searcher.reader.meta["doc_text_format"])


def ranking(hits):
    return [(h.symbol.id, h.symbol.start_line, round(h.score, 5)) for h in hits]


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "lexical"])
def test_an_overlay_equal_to_the_index_changes_nothing(indexed, mode):
    root, searcher = indexed
    overlay = fresh_overlay(searcher)
    # Equal to disk: set_buffer sees the index agrees and overlays nothing.
    assert overlay.set_buffer("shop/cart.py", (root / "shop/cart.py").read_text(), searcher.reader) is None
    # Shift every line down: same units (by content) at new lines, so an overlay is needed, and the
    # ranking must equal the index's, with the buffer's line numbers.
    shifted = "\n\n" + (root / "shop/cart.py").read_text()
    entry = overlay.set_buffer("shop/cart.py", shifted, searcher.reader)
    assert entry is not None and overlay.embedded == 0  # every vector came from the index
    for q in QUERIES:
        expected = searcher.search(q, k=5, mode=mode)
        got = overlay_search(searcher, overlay, q, k=5, mode=mode)
        assert [(h.symbol.qualified_name, round(h.score, 5)) for h in got] == \
            [(h.symbol.qualified_name, round(h.score, 5)) for h in expected], q
        for g, e in zip(got, expected, strict=True):
            assert g.symbol.start_line == e.symbol.start_line + (2 if e.symbol.path == "shop/cart.py" else 0)


def test_new_and_removed_units_in_a_buffer(indexed):
    root, searcher = indexed
    overlay = fresh_overlay(searcher)
    text = (root / "shop/tax.py").read_text()
    text = text.replace("def round_half_even", "def bankers_round") + '''

def parse_money(text):
    """Read an amount such as "12.50 EUR" into integer cents and a currency code."""
    amount, currency = text.split()
    return int(round(float(amount) * 100)), currency
'''
    overlay.set_buffer("shop/tax.py", text, searcher.reader)
    assert overlay.embedded == 2  # the renamed function and the new one; vat_for_country is reused
    for mode in ("hybrid", "semantic", "lexical"):
        hits = overlay_search(searcher, overlay, "parse money amount into cents", k=3, mode=mode)
        assert hits[0].symbol.name == "parse_money", mode
        names = {h.symbol.name for h in overlay_search(searcher, overlay, "round ties to even", k=11, mode=mode)}
        assert "round_half_even" not in names, mode
    assert overlay.drop("shop/tax.py")
    assert overlay_search(searcher, overlay, "round ties to even", k=1)[0].symbol.name == "round_half_even"


def test_filters_apply_to_buffers(indexed):
    root, searcher = indexed
    overlay = fresh_overlay(searcher)
    overlay.set_buffer("web/format.js", (root / "web/format.js").read_text() + "\nfunction noop() {}\n",
                       searcher.reader)
    hits = overlay_search(searcher, overlay, "escape html lang:go", k=5)
    assert hits and all(h.symbol.language == "go" for h in hits)
    hits = overlay_search(searcher, overlay, "escape html", k=5, paths=["web/"])
    assert {h.symbol.name for h in hits} == {"escapeHtml", "slugify", "noop"}
    assert [h.symbol.name for h in overlay_search(searcher, overlay, '"replace" html', k=5, mode="lexical")] \
        == [h.symbol.name for h in searcher.search('"replace" html', k=5, mode="lexical")]


def test_unknown_languages_are_not_overlaid(indexed):
    _, searcher = indexed
    overlay = fresh_overlay(searcher)
    assert overlay.set_buffer("notes.txt", "hello", searcher.reader) is None
    assert overlay.files() == []


def test_a_buffer_over_the_parse_budget_is_not_overlaid(indexed):
    from tests.test_parse_budget import pathological_js

    root, searcher = indexed
    overlay = BufferOverlay(searcher.embedder, searcher.reader.meta["doc_text_format"], parse_timeout=0.1)
    ok = (root / "web/format.js").read_text() + "\nfunction noop() {}\n"
    assert overlay.set_buffer("web/format.js", ok, searcher.reader) is not None
    # The same buffer then turned pathological: its overlay goes, searches see the indexed file.
    slow = ok + pathological_js(64_000).decode()
    assert overlay.set_buffer("web/format.js", slow, searcher.reader) is None
    assert overlay.files() == []
    assert "noop" not in {h.symbol.name for h in overlay_search(searcher, overlay, "escape html", k=5,
                                                                 paths=["web/"])}


def test_buffers_have_roles_for_the_prior_and_the_filters(indexed):
    _, searcher = indexed
    overlay = fresh_overlay(searcher)
    test = '''from shop.cart import Cart


def test_add_item_adds_a_quantity_of_one_product_to_the_cart():
    cart = Cart()
    cart.add_item("sku-1", 250, quantity=2)
    assert cart.items == {"sku-1": (250, 2)}
'''
    overlay.set_buffer("tests/test_cart.py", test, searcher.reader)
    assert overlay.files()[0].symbols[0].role == "test"
    for mode in ("hybrid", "semantic", "lexical"):
        top = overlay_search(searcher, overlay, "add a quantity of one product to the cart", k=3, mode=mode)
        assert top[0].symbol.qualified_name == "Cart.add_item", mode
        asks = overlay_search(searcher, overlay, "test for adding a product to the cart", k=3, mode=mode)
        assert asks[0].symbol.path == "tests/test_cart.py", mode
        only = overlay_search(searcher, overlay, "add a product to the cart role:test", k=5, mode=mode)
        assert [h.symbol.path for h in only] == ["tests/test_cart.py"], mode
        none = overlay_search(searcher, overlay, "add a product to the cart -role:test", k=20, mode=mode)
        assert none and all(h.symbol.role != "test" for h in none), mode
