"""GTE-style multi-stage contrastive training of the codesearch encoder.

Steps (``codesearch-train`` / ``python -m trainer``): ``corpora`` (install documented code),
``mine`` (docstring/code pairs via ``parsers``), ``train --stage 1|2``, ``eval`` (CodeSearchNet protocol
per language), ``export`` (the model directory ``codesearch.embed.TransformerEmbedder`` loads).
See docs/training.md.
"""
