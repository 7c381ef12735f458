"""One training stage: AdamW, warm-up, GTE loss with GradCache, checkpoints, resume, dev MRR.

Layout of a stage directory (``WORK/stage<N>/``)::

    train_config.json     the TrainConfig of the run (written before the first step)
    data_manifest.json    copy of the data manifest the run trains on
    negatives.json        stage 2: hard negatives mined with the initial (stage-1) model
    checkpoint/           model/ (loadable model dir, fp32) + state.pt (step, optimizer, scheduler, RNG)
    log.jsonl             one line per step (loss, lr, source, seconds) and per dev evaluation
    model/                the final model (same layout as an export)
    done.json             written last: step count, final dev MRR, seconds

Running a finished stage again does nothing; running an interrupted one resumes from its checkpoint
and produces the same weights as an uninterrupted run (batches are a function of (seed, step), and the
random state is saved with the optimizer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import TrainConfig, load_config
from .data import Pair, read_pairs
from .evaluate import dev_mrr, sample_per_language
from .gradcache import cached_step, direct_step
from .loss import contrastive_loss
from .mine_negatives import fingerprint, load_negatives, mine_hard_negatives, negative_pool, save_negatives
from .model import Encoder, resolve_device, resolve_precision
from .query_variants import choose_queries, pair_variant
from .sampling import SourceBatchSampler

log = logging.getLogger(__name__)

#: Default work directory (git-ignored): data/, stage1/, stage2/, eval/, export/.
DEFAULT_WORK = Path(__file__).resolve().parent / "runs" / "default"
#: max_length written into the manifest of stage models (the index default; see codesearch.config).
MANIFEST_MAX_LENGTH = 256


@dataclass(frozen=True)
class StageResult:
    """What a call to :func:`run_stage` did.

    Attributes:
        status: "done" (finished now), "already_done", or "stopped" (time or step limit; resumable).
        step: Steps completed so far.
        model_dir: The final model directory ("" unless finished).
        losses: Loss of each step run by this call.
        dev: Last dev evaluation.
        seconds: Wall time of this call.
        pairs_per_second: Training pairs per second over this call's steps.
    """

    status: str
    step: int
    model_dir: str
    losses: list[float]
    dev: dict[str, Any]
    seconds: float
    pairs_per_second: float


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def training_pairs(data_dir: Path, cfg: TrainConfig) -> list[Pair]:
    """The train split, filtered to ``cfg.tiers`` and sampled to ``cfg.max_pairs`` (seeded)."""
    pairs = [p for p in read_pairs(data_dir / "train.jsonl") if p.tier in cfg.tiers]
    if cfg.max_pairs and len(pairs) > cfg.max_pairs:
        keep = np.random.default_rng([cfg.seed, 0xDA7A]).choice(len(pairs), size=cfg.max_pairs, replace=False)
        pairs = [pairs[int(i)] for i in sorted(keep)]
    if not pairs:
        raise ValueError(f"no training pairs of tiers {cfg.tiers} in {data_dir / 'train.jsonl'}")
    return pairs


def sampling_sources(pairs: Sequence[Pair], min_size: int) -> dict[str, list[int]]:
    """Pair indices per sampling source ``language/source``; sources under ``min_size`` pool per language.

    A batch is drawn from one source: a source smaller than a batch would make small batches (few
    in-batch negatives), so such sources share a ``language/*`` pool.
    """
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_source[f"{p.language}/{p.source}"].append(i)
    out: dict[str, list[int]] = defaultdict(list)
    for key in sorted(by_source):
        idx = by_source[key]
        out[key if len(idx) >= min_size else key.split("/")[0] + "/*"].extend(idx)
    return dict(out)


def _lr_lambda(cfg: TrainConfig) -> Any:
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup_steps))
    return f


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines of steps >= ``step`` (they are run again after a resume); from step 0, all of them
    (the starting model's line, step -1, is written again too)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if step > 0 and line.strip() and json.loads(line).get("step", 0) < step]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def save_checkpoint(stage_dir: Path, encoder: Encoder, optimizer: torch.optim.Optimizer,
                    scheduler: Any, step: int, manifest: dict[str, Any]) -> None:
    """Write ``checkpoint/`` atomically (a temporary directory renamed over the old one)."""
    tmp = stage_dir / "checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    encoder.save(tmp / "model", torch.float32, manifest)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
             "numpy_rng": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    final = stage_dir / "checkpoint"
    old = stage_dir / "checkpoint.old"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _batch_groups(encoder: Encoder, batch: Sequence[Pair], negatives: dict[str, list[str]],
                  by_id: dict[str, Pair], cfg: TrainConfig, device: torch.device,
                  queries_text: Sequence[str] | None = None,
                  ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor | None]:
    """Tokenised queries (``queries_text``, default the pairs' own), documents and (stage 2) hard
    negatives, with each negative's owner row."""
    texts = list(queries_text) if queries_text is not None else [p.query for p in batch]
    queries = encoder.tokenize(texts, cfg.query_max_length, "query", device)
    docs = encoder.tokenize([p.document(cfg.doc_text_format) for p in batch], cfg.doc_max_length, "document",
                            device)
    groups = [queries, docs]
    in_batch = {p.id for p in batch}
    neg_texts: list[str] = []
    owners: list[int] = []
    if cfg.hard_negatives:
        for row, p in enumerate(batch):
            # A negative that is another row's positive would be masked as "own" in no block: skip it.
            for nid in [n for n in negatives.get(p.id, []) if n not in in_batch][:cfg.hard_negatives]:
                neg_texts.append(by_id[nid].document(cfg.doc_text_format))
                owners.append(row)
    if neg_texts:
        groups.append(encoder.tokenize(neg_texts, cfg.doc_max_length, "document", device))
        return groups, torch.tensor(owners, dtype=torch.long, device=device)
    return groups, None


def model_identity(path: Path, manifest: dict[str, Any]) -> str:
    """A model directory's name, as the index records it (``codesearch.embed.model_name``)."""
    from codesearch.embed import model_name

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return model_name(path, config, manifest)


def stage_manifest(cfg: TrainConfig, init_dir: Path, init_manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a stage model: what TransformerEmbedder reads plus where the model came from."""
    init = {"path": str(init_dir), "model_id": model_identity(init_dir, init_manifest),
            "sha256": file_sha256(init_dir / "model.safetensors")}
    return {
        "model_id": f"codesearch-gte-stage{cfg.stage}",
        "max_length": MANIFEST_MAX_LENGTH,
        "doc_text_format": cfg.doc_text_format,
        "query_prefix": init_manifest.get("query_prefix", ""),
        "document_prefix": init_manifest.get("document_prefix", ""),
        "pooling": "mean",
        "normalize": True,
        "stage": cfg.stage,
        "init_model": init,
        "base_model": init_manifest.get("base_model") or init,
        "train_config": cfg.to_dict(),
    }


def _same_config(raw: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether a recorded config is ``cfg`` (fields added since it was written count at their defaults)."""
    try:
        return TrainConfig.from_dict(raw).to_dict() == cfg.to_dict()
    except (TypeError, ValueError):
        return False


def variant_dev(dev: Sequence[Pair]) -> list[Pair]:
    """The dev pairs that have a query variant, with the variant as their query."""
    return [replace(p, query=v) for p in dev if (v := pair_variant(p)) is not None]


def run_stage(cfg: TrainConfig, data_dir: Path, stage_dir: Path, init_dir: Path, *, stop_after: int = 0,
              time_limit_s: float = 0.0, progress: bool = True) -> StageResult:
    """Train one stage (or resume it, or do nothing if it is finished).

    Args:
        cfg: The stage's config.
        data_dir: Directory with train.jsonl, dev.jsonl and manifest.json (from ``mine``).
        stage_dir: Output directory of the stage.
        init_dir: Model directory to start from (stage 1: the base model; stage 2: stage 1's model).
        stop_after: Stop (with a checkpoint) after this many steps in this call (0: no limit).
        time_limit_s: Stop (with a checkpoint) once this much wall time has passed (0: no limit).
        progress: Show a tqdm progress bar with ETA.

    Returns:
        A StageResult.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    stage_dir.mkdir(parents=True, exist_ok=True)
    done_path = stage_dir / "done.json"
    if done_path.is_file():
        done = json.loads(done_path.read_text(encoding="utf-8"))
        if _same_config(done.get("train_config", {}), cfg):
            log.info("stage %d already finished (%s)", cfg.stage, done_path)
            return StageResult("already_done", int(done["step"]), str(stage_dir / "model"), [],
                               done.get("dev", {}), 0.0, 0.0)
        raise RuntimeError(f"{stage_dir} holds a finished run with another config; use a new directory")
    ckpt = stage_dir / "checkpoint"
    cfg_path = stage_dir / "train_config.json"
    if ckpt.is_dir() and cfg_path.is_file():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not _same_config(old, cfg):
            raise RuntimeError(f"{stage_dir} holds a checkpoint of another config; use a new directory")
    cfg_path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(data_dir / "manifest.json", stage_dir / "data_manifest.json")

    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    init_encoder = Encoder.from_dir(init_dir)
    manifest = stage_manifest(cfg, Path(init_dir).resolve(), init_encoder.manifest)

    pairs = training_pairs(data_dir, cfg)
    by_id = {p.id: p for p in pairs}
    dev = sample_per_language(read_pairs(data_dir / "dev.jsonl"), cfg.dev_queries_per_language, cfg.seed)
    dev_var = variant_dev(dev) if cfg.query_variants else []
    variants = [pair_variant(p) for p in pairs] if cfg.query_variants else [None] * len(pairs)
    negatives: dict[str, list[str]] = {}
    if cfg.hard_negatives:
        settings = {"k": cfg.hard_negatives, "depth": cfg.negatives_depth, "skip": cfg.negatives_skip,
                    "doc_text_format": cfg.doc_text_format, "query_max_length": cfg.query_max_length,
                    "doc_max_length": cfg.doc_max_length, "seed": cfg.seed}
        if cfg.negatives_scope != ("language",) or cfg.negatives_near_dup or cfg.negatives_max_ratio:
            settings.update(scope=list(cfg.negatives_scope), near_dup=cfg.negatives_near_dup,
                            max_ratio=cfg.negatives_max_ratio)
        pool = pairs
        if "file" in cfg.negatives_scope and cfg.max_pairs:  # the sampled units' file neighbours join the pool
            pool = negative_pool(pairs, training_pairs(data_dir, replace(cfg, max_pairs=0)), cfg.negatives_scope)
        fp = fingerprint(manifest["init_model"]["sha256"], pool, settings)
        neg_path = stage_dir / "negatives.json"
        found = load_negatives(neg_path, fp)
        if found is None:
            log.info("mining hard negatives for %d pairs among %d documents with %s", len(pairs), len(pool),
                     init_dir)
            init_encoder.to(device)
            found = mine_hard_negatives(init_encoder, pairs, cfg.hard_negatives, cfg.negatives_depth,
                                        cfg.negatives_skip, cfg.doc_text_format, cfg.query_max_length,
                                        cfg.doc_max_length, cfg.seed, pool=pool, scopes=cfg.negatives_scope,
                                        near_dup=cfg.negatives_near_dup, max_ratio=cfg.negatives_max_ratio)
            save_negatives(neg_path, found, fp, settings)
        negatives = found
        by_id.update({p.id: p for p in pool})

    start = 0
    encoder = init_encoder
    if ckpt.is_dir():
        encoder = Encoder.from_dir(ckpt / "model")
        log.info("resuming stage %d from %s", cfg.stage, ckpt)
    encoder.precision = resolve_precision(cfg.precision, device)
    encoder.to(device)
    trainable = encoder.freeze_lower(cfg.freeze_layers)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    if ckpt.is_dir():
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = int(state["step"])

    def dev_extra() -> dict[str, Any]:
        """The dev MRR of the variant queries (when variants are on), for the same log line."""
        if not dev_var:
            return {}
        return {"dev_variants": dev_mrr(encoder, dev_var, cfg.doc_text_format, cfg.query_max_length,
                                        cfg.doc_max_length)}

    log_path = stage_dir / "log.jsonl"
    _truncate_log(log_path, start)
    if start == 0 and dev:
        # The starting model on the same dev protocol (logged as step -1), so the log shows what the stage bought.
        init_dev = dev_mrr(encoder, dev, cfg.doc_text_format, cfg.query_max_length, cfg.doc_max_length)
        _append_log(log_path, {"step": -1, "dev": init_dev, "model": "init", **dev_extra()})
        log.info("stage %d: starting model dev MRR@10 %.4f %s", cfg.stage, init_dev["mrr@10"], init_dev["languages"])

    sources = sampling_sources(pairs, cfg.min_source_pairs or cfg.batch_size)
    sampler = SourceBatchSampler({k: len(v) for k, v in sources.items()}, cfg.batch_size,
                                 cfg.sampling_alpha, cfg.seed)
    if cfg.query_variants:
        log.info("stage %d: %d of %d training pairs have a query variant, shown with probability %g",
                 cfg.stage, sum(v is not None for v in variants), len(pairs), cfg.query_variants)
    log.info("stage %d: %d pairs in %d sampling sources, %d trainable parameters, device %s (%s), steps %d..%d",
             cfg.stage, len(pairs), len(sources), trainable, device, encoder.precision, start, cfg.steps)

    def loss_fn(reps: Sequence[torch.Tensor]) -> torch.Tensor:
        negs = reps[2] if len(reps) > 2 else None
        return contrastive_loss(cfg.loss, reps[0], reps[1], cfg.temperature, cfg.directions, negs, owner_box[0])

    owner_box: list[torch.Tensor | None] = [None]
    losses: list[float] = []
    last_dev: dict[str, Any] = {}
    pairs_seen = 0
    t_loop = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=f"stage {cfg.stage}", unit="step", disable=not progress,
               dynamic_ncols=True)
    step = start
    status = "done"
    encoder.train()
    try:
        while step < cfg.steps:
            if (stop_after and step - start >= stop_after) or (
                    time_limit_s and time.perf_counter() - t_start >= time_limit_s):
                status = "stopped"
                break
            t0 = time.perf_counter()
            source, local = sampler.batch(step)
            batch = [pairs[sources[source][i]] for i in local]
            shown = choose_queries(batch, [variants[sources[source][i]] for i in local], cfg.query_variants,
                                   cfg.seed, step)
            groups, owner_box[0] = _batch_groups(encoder, batch, negatives, by_id, cfg, device, shown)
            if cfg.chunk_size:
                loss = cached_step(encoder, groups, loss_fn, cfg.chunk_size, device)
            else:
                loss = direct_step(encoder, groups, loss_fn)
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss)
            pairs_seen += len(batch)
            seconds = time.perf_counter() - t0
            _append_log(log_path, {"step": step - 1, "loss": round(loss, 6), "lr": scheduler.get_last_lr()[0],
                                   "source": source, "pairs": len(batch), "seconds": round(seconds, 3)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", pairs_s=f"{pairs_seen / (time.perf_counter() - t_loop):.1f}")
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and dev:
                last_dev = dev_mrr(encoder, dev, cfg.doc_text_format, cfg.query_max_length, cfg.doc_max_length)
                _append_log(log_path, {"step": step - 1, "dev": last_dev, **dev_extra()})
                encoder.train()
                bar.write(f"step {step}: dev MRR@10 {last_dev['mrr@10']:.4f} {last_dev['languages']}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save_checkpoint(stage_dir, encoder, optimizer, scheduler, step, manifest)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t_start
    rate = pairs_seen / max(1e-9, time.perf_counter() - t_loop)
    if status == "stopped":
        save_checkpoint(stage_dir, encoder, optimizer, scheduler, step, manifest)
        return StageResult("stopped", step, "", losses, last_dev, elapsed, rate)
    if dev:
        last_dev = dev_mrr(encoder, dev, cfg.doc_text_format, cfg.query_max_length, cfg.doc_max_length)
        _append_log(log_path, {"step": step - 1, "dev": last_dev, **dev_extra()})
    encoder.eval()
    encoder.save(stage_dir / "model", torch.float32, {**manifest, "dev": last_dev})
    done = {"step": step, "dev": last_dev, "train_config": cfg.to_dict(), "pairs": len(pairs),
            "seconds_last_call": round(elapsed, 1), "pairs_per_second_last_call": round(rate, 3)}
    done_path.write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
    if ckpt.exists():
        shutil.rmtree(ckpt)
    return StageResult("done", step, str(stage_dir / "model"), losses, last_dev, elapsed, rate)


def default_init(work: Path, stage: int) -> Path:
    """Stage 1 starts from the packaged all-MiniLM-L6-v2, stage 2 from stage 1's model."""
    if stage == 1:
        from codesearch.embed import base_model_dir

        return base_model_dir()
    model = work / "stage1" / "model"
    if not (model / "model.safetensors").is_file():
        raise FileNotFoundError(f"stage 2 starts from stage 1's model, not found at {model}: run stage 1 first")
    return model


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``train`` (shared by ``python -m trainer.train`` and ``codesearch-train train``)."""
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"work directory (default {DEFAULT_WORK})")
    ap.add_argument("--stage", type=int, choices=(1, 2), required=True)
    ap.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--config", type=Path, help="JSON object of TrainConfig fields")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="override one TrainConfig field (repeatable)")
    ap.add_argument("--steps", type=int, help="shortcut for --set steps=N")
    ap.add_argument("--init", type=Path, help="model directory to start from (default: base / stage 1)")
    ap.add_argument("--data", type=Path, help="mined data directory (default: WORK/data)")
    ap.add_argument("--out", type=Path, help="stage directory (default: WORK/stage<N>)")
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this many steps (resumable)")
    ap.add_argument("--time-limit", type=float, default=0.0, help="stop after this many minutes (resumable)")
    ap.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> StageResult:
    """Run ``train`` from parsed arguments."""
    overrides = list(args.overrides) + ([f"steps={args.steps}"] if args.steps else [])
    cfg = load_config(args.stage, args.preset, args.config, overrides)
    work = Path(args.work)
    data = args.data or work / "data"
    out = args.out or work / f"stage{args.stage}"
    init = args.init or default_init(work, args.stage)
    return run_stage(cfg, Path(data), Path(out), Path(init), stop_after=args.stop_after,
                     time_limit_s=args.time_limit * 60, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.train --stage 1|2 ...``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser(description="Train one stage of the code-search encoder.")
    add_arguments(ap)
    result = run_from_args(ap.parse_args(argv))
    log.info("stage: %s at step %d, %.2f pairs/s, dev %s", result.status, result.step, result.pairs_per_second,
             result.dev)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
