"""Trainer fixtures: a tiny random BERT with a WordPiece vocabulary trained on the fixture repos, and pairs
mined from ``tests/fixtures/repos/mini_*`` (the real mining code on real small inputs)."""

from __future__ import annotations

import json

import pytest
from trainer_helpers import REPOS, fixture_sources


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and these machines are shared: restore the count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fixture_tokenizer():
    """A lower-casing WordPiece tokenizer (vocab 1000) trained on the fixture repositories."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted(REPOS.rglob("*")) if p.is_file()]
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=1000, min_frequency=1, show_progress=False)
    return Tokenizer.from_str(wp.to_str())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, fixture_tokenizer):
    """A randomly initialised tiny BERT (trainer/model_configs/tiny.json) saved as a model directory."""
    from trainer.config import model_config
    from trainer.model import Encoder

    path = tmp_path_factory.mktemp("tiny_model")
    enc = Encoder.from_config(model_config("tiny"), fixture_tokenizer, seed=0)
    enc.save(path, manifest={"model_id": "tiny-test", "max_length": 128, "doc_text_format": "header_doc_code"})
    return path


@pytest.fixture(scope="session")
def fixture_data_dir(tmp_path_factory):
    """Pairs mined from the mini repos, all in train; dev.jsonl holds a copy of 12 of them."""
    from trainer.data import mine, read_pairs, write_pairs

    out = tmp_path_factory.mktemp("data")
    mine(fixture_sources(), out, dev_fraction=0.0, test_fraction=0.0)
    pairs = read_pairs(out / "train.jsonl")
    write_pairs(out / "dev.jsonl", pairs[::8])
    write_pairs(out / "test.jsonl", pairs[1::4])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == len(pairs) > 60
    return out
