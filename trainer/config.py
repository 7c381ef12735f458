"""TrainConfig: every hyperparameter of one training stage, frozen, with the CPU and GPU presets.

A run writes its ``TrainConfig`` as ``train_config.json`` next to its checkpoint; ``--config FILE`` and
``--set key=value`` override the preset field by field. Model shapes (for randomly initialised models,
tests only) live in ``trainer/model_configs/{tiny,small}.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: In-batch similarity directions of the GTE loss (Li et al. 2023, eq. 2).
DIRECTIONS = ("q2d", "q2q", "d2q", "d2d")
LOSSES = ("gte", "info_nce")
PRECISIONS = ("auto", "fp32", "bf16")
TIERS = ("clean", "weak")
#: Where stage 2 may draw hard negatives from, narrowest first (``trainer/mine_negatives.py``).
NEGATIVE_SCOPES = ("file", "package", "language")
MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training stage.

    Attributes:
        stage: 1 (weak pairs, large batches, short texts) or 2 (clean pairs + hard negatives, longer texts).
        seed: Seeds Python, numpy and torch; batches are a pure function of (seed, step).
        steps: Optimizer steps of the stage.
        batch_size: Pairs per step (the in-batch negatives). Not capped by memory when ``chunk_size`` > 0.
        chunk_size: GradCache chunk (texts per forward pass with gradients); 0 disables gradient caching.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps, then linear decay to 0 at ``steps``.
        max_grad_norm: Gradient clipping norm (0 disables it).
        temperature: Softmax temperature of the contrastive loss (GTE: 0.01).
        loss: "gte" (one partition function over ``directions``) or "info_nce" (query->document only).
        directions: Which in-batch similarities enter the GTE partition function.
        sampling_alpha: Sources are drawn with probability proportional to n_i ** alpha.
        min_source_pairs: Sources with fewer pairs than this are pooled per language for sampling
            (0 means ``batch_size``).
        query_max_length: Token limit of queries.
        doc_max_length: Token limit of documents (code) during training.
        freeze_layers: Freeze the embeddings and this many lower transformer layers.
        tiers: Which pair tiers to train on (stage 1: clean and weak; stage 2: clean).
        max_pairs: Use at most this many training pairs (seeded sample; 0 = all).
        hard_negatives: Mined hard negatives per pair (stage 2).
        negatives_depth: Hard negatives are drawn from this many nearest candidates (after exclusions).
        negatives_skip: Skip this many nearest candidates first (guards against unlabelled positives).
        negatives_scope: Where hard negatives come from, narrowest first (``file``, ``package``,
            ``language``): the first scope's nearest candidates, then the next scope's when it has too few.
            With ``file``, the other training pairs of a sampled pair's file join the candidate documents.
        negatives_near_dup: Also exclude candidates with an identifier-set Jaccard similarity of at least
            this with the pair's code (near duplicates; 0: off).
        negatives_max_ratio: Also exclude candidates the starting model scores above this fraction of the
            pair's own query-code similarity (likely unlabelled positives; 0: off).
        doc_text_format: How a pair's code becomes the document text (``codesearch.types.document_text``).
        query_variants: Probability that a pair whose docstring query shares words with its identifiers
            shows, at a step, the query without those words (``trainer/query_variants.py``; 0: off). The
            dev split is then also scored on those variants (``dev_variants`` in ``log.jsonl``).
        eval_every: Dev MRR every this many steps (0: only at the end).
        checkpoint_every: Save a resumable checkpoint every this many steps.
        dev_queries_per_language: Dev queries per language for the running MRR (each against the
            language's whole dev sample).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16".
        threads: Torch CPU threads (0: torch's default).
    """

    stage: int = 1
    seed: int = 0
    steps: int = 300
    batch_size: int = 64
    chunk_size: int = 16
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 30
    max_grad_norm: float = 1.0
    temperature: float = 0.01
    loss: str = "gte"
    directions: tuple[str, ...] = DIRECTIONS
    sampling_alpha: float = 0.5
    min_source_pairs: int = 0
    query_max_length: int = 32
    doc_max_length: int = 128
    freeze_layers: int = 2
    tiers: tuple[str, ...] = TIERS
    max_pairs: int = 0
    hard_negatives: int = 0
    negatives_depth: int = 30
    negatives_skip: int = 0
    negatives_scope: tuple[str, ...] = ("language",)
    negatives_near_dup: float = 0.0
    negatives_max_ratio: float = 0.0
    doc_text_format: str = "header_doc_code"
    query_variants: float = 0.0
    eval_every: int = 100
    checkpoint_every: int = 25
    dev_queries_per_language: int = 100
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or "q2d" not in self.directions:
            raise ValueError(f"directions must include 'q2d' and be among {DIRECTIONS}, got {self.directions}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if any(t not in TIERS for t in self.tiers) or not self.tiers:
            raise ValueError(f"tiers must be a non-empty subset of {TIERS}, got {self.tiers}")
        if not 0.0 <= self.query_variants <= 1.0:
            raise ValueError(f"query_variants must be within [0, 1], got {self.query_variants}")
        bad_scope = [s for s in self.negatives_scope if s not in NEGATIVE_SCOPES]
        if bad_scope or not self.negatives_scope or len(set(self.negatives_scope)) != len(self.negatives_scope):
            raise ValueError(f"negatives_scope must be distinct values of {NEGATIVE_SCOPES}, "
                             f"got {self.negatives_scope}")
        if not 0.0 <= self.negatives_near_dup <= 1.0 or self.negatives_max_ratio < 0:
            raise ValueError("negatives_near_dup must be within [0, 1] and negatives_max_ratio >= 0")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        for name in ("steps", "batch_size", "query_max_length", "doc_max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("chunk_size", "warmup_steps", "freeze_layers", "hard_negatives", "max_pairs",
                     "eval_every", "checkpoint_every", "threads", "min_source_pairs", "negatives_skip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build a config from JSON values (unknown keys are an error: a typo must not pass silently)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)

    def with_overrides(self, pairs: list[str]) -> TrainConfig:
        """Apply ``key=value`` strings (values parsed as JSON when they parse, comma lists for tuples)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in pairs:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in known:
                raise ValueError(f"bad override {item!r} (expected FIELD=VALUE with a TrainConfig field)")
            current = getattr(self, key)
            if isinstance(current, tuple):
                changes[key] = tuple(part.strip() for part in text.split(",") if part.strip())
            elif isinstance(current, bool):
                changes[key] = text.strip().lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                changes[key] = int(text)
            elif isinstance(current, float):
                changes[key] = float(text)
            else:
                changes[key] = text
        return dataclasses.replace(self, **changes)


#: Temperature of the ``cpu`` presets. GTE's 0.01 suits its batches of thousands; with 64 pairs per step,
#: stage 1 at 0.05 reached dev MRR@10 0.753 after 100 steps where 0.01 was at 0.717 (and 0.747 after 300).
CPU_TEMPERATURE = 0.05


def preset(stage: int, name: str = "cpu") -> TrainConfig:
    """The default configuration of a stage.

    ``cpu`` is sized for two cores with all-MiniLM-L6-v2 (short texts, two frozen layers, one hard
    negative, batches of 32-64 that fit in memory, so no gradient caching: it would cost a second
    forward pass, about 1.4x the step time); ``gpu`` is the same recipe at GTE-like scale for a lent
    accelerator, with GradCache chunks.

    Args:
        stage: 1 or 2.
        name: "cpu" or "gpu".

    Returns:
        The config.
    """
    if name not in ("cpu", "gpu"):
        raise ValueError(f"unknown preset {name!r} (cpu or gpu)")
    if stage == 1:
        if name == "cpu":
            return TrainConfig(stage=1, steps=300, batch_size=64, chunk_size=0, lr=3e-5, warmup_steps=30,
                               query_max_length=32, doc_max_length=96, freeze_layers=2,
                               tiers=("clean", "weak"), eval_every=100, temperature=CPU_TEMPERATURE)
        return TrainConfig(stage=1, steps=2000, batch_size=1024, chunk_size=256, lr=5e-5, warmup_steps=100,
                           query_max_length=48, doc_max_length=192, freeze_layers=0,
                           tiers=("clean", "weak"), eval_every=250, checkpoint_every=250,
                           dev_queries_per_language=500)
    if stage == 2:
        if name == "cpu":
            return TrainConfig(stage=2, steps=150, batch_size=32, chunk_size=0, lr=1e-5, warmup_steps=15,
                               query_max_length=48, doc_max_length=160, freeze_layers=2, tiers=("clean",),
                               hard_negatives=1, max_pairs=6000, eval_every=75, temperature=CPU_TEMPERATURE)
        return TrainConfig(stage=2, steps=1500, batch_size=256, chunk_size=128, lr=2e-5, warmup_steps=100,
                           query_max_length=64, doc_max_length=256, freeze_layers=0, tiers=("clean",),
                           hard_negatives=3, max_pairs=0, eval_every=250, checkpoint_every=250,
                           dev_queries_per_language=500)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


def load_config(stage: int, preset_name: str = "cpu", path: Path | None = None,
                overrides: list[str] | None = None) -> TrainConfig:
    """A stage's preset, then a JSON file's fields, then ``key=value`` overrides.

    Args:
        stage: 1 or 2.
        preset_name: "cpu" or "gpu".
        path: Optional JSON object of TrainConfig fields.
        overrides: Optional ``key=value`` strings.

    Returns:
        The config.
    """
    cfg = preset(stage, preset_name)
    if path is not None:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        merged = {**cfg.to_dict(), **raw, "stage": stage}
        cfg = TrainConfig.from_dict(merged)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return cfg


def model_config(name: str) -> dict[str, Any]:
    """A BERT shape from ``trainer/model_configs/<name>.json`` (``tiny`` is for tests only)."""
    path = MODEL_CONFIGS / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no model config {name!r} in {MODEL_CONFIGS}")
    return dict(json.loads(path.read_text(encoding="utf-8")))
