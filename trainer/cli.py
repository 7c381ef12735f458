"""``codesearch-train`` (or ``python -m trainer``): corpora -> mine -> train 1 -> train 2 -> eval -> export.

Every step is idempotent: it does nothing when its output exists for the same inputs, and a training
stage resumes from its checkpoint. All outputs go to ``--work`` (default ``trainer/runs/default``)::

    data/       train.jsonl dev.jsonl test.jsonl manifest.json   (mine)
    stage1/     stage2/                                           (train --stage 1|2)
    eval/       <model>.json, repo-<model>.json, paraphrase.json, table.md   (eval)
    export/     the shippable model directory                     (export)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from codesearch.config import Settings

from . import train as train_mod
from .train import DEFAULT_WORK

log = logging.getLogger("trainer")

LANGUAGES = ("python", "go", "java", "javascript", "php", "ruby")
#: Model labels of ``eval --models`` that are not directories.
NAMED_MODELS = ("base", "shipped", "stage1", "stage2", "export")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --------------------------------------------------------------------------------------------- steps

def cmd_corpora(args: argparse.Namespace) -> int:
    """Install the corpora (bench/corpora.py, plus the training-only sources) and list what was taken."""
    from .corpora import install_all

    manifest = install_all(tuple(args.only), args.force, extra=not args.no_extra)
    if args.more:
        from .more_sources import install_more

        more = install_more(tuple(args.only), args.force)
        manifest["more"] = {"sources": more["sources"]}
        if more["failed"]:
            print(f"left out ({len(more['failed'])} packages apt refused or holding no source files): "
                  + " ".join(more["failed"]), file=sys.stderr)
    for part, m in manifest.items():
        for e in m.get("sources", []):
            print(f"{part:<6} {e['language']:<11} {e['source']:<28} {e['registry']}:{e['package']}={e['version']}  "
                  f"{e['files']} files")
    return 0


def _mine_fingerprint(sources: list[Any], args: argparse.Namespace) -> str:
    from . import data

    h = hashlib.sha256(Path(data.__file__).read_bytes())
    for s in sources:
        h.update(f"{s.language}/{s.source}/{s.package}={s.version}@{s.root}".encode())
    h.update(json.dumps([args.dev_fraction, args.test_fraction, args.no_bench_holdout, args.bench_max_units,
                         args.bench_seed, args.no_extra, args.no_more]).encode())
    return h.hexdigest()[:16]


def cmd_mine(args: argparse.Namespace) -> int:
    """Mine pairs from the installed corpora into WORK/data."""
    from .corpora import benchmark_holdout, corpora_manifest, extra_manifest, sources
    from .data import CorpusSource, mine

    if args.tree:
        srcs = []
        for item in args.tree:
            lang, _, folder = item.partition("=")
            if lang not in LANGUAGES or not Path(folder).is_dir():
                print(f"bad --tree {item!r}: expected LANG=DIR with an existing directory", file=sys.stderr)
                return 2
            srcs.append(CorpusSource(lang, Path(folder).resolve().name, Path(folder), "local", str(folder), ""))
        srcs = [s for s in srcs if s.language in args.langs]
    else:
        srcs = sources(tuple(args.langs), extra=not args.no_extra, more=not args.no_more)
    if not srcs:
        print("no corpora installed: run `codesearch-train corpora` first", file=sys.stderr)
        return 1
    out = args.work / "data"
    fp = _mine_fingerprint(srcs, args)
    old = _read_json(out / "manifest.json")
    if old and old.get("input_fingerprint") == fp and not args.force:
        log.info("data is up to date (%s)", out)
    else:
        forced: set[str] = set()
        holdout: dict[str, Any] = {"disabled": True}
        if not args.no_bench_holdout:
            forced, holdout = benchmark_holdout(tuple(args.langs), args.bench_max_units, args.bench_seed)
        keys = ("language", "source", "registry", "package", "version", "files")
        corpora = [{**{k: e[k] for k in keys}, "set": "bench"}
                   for e in corpora_manifest().get("sources", []) if e["language"] in args.langs]
        if args.tree:
            corpora = [{"language": s.language, "source": s.source, "registry": "local", "path": str(s.root)}
                       for s in srcs]
        elif not args.no_extra:
            corpora += [{**{k: e[k] for k in keys}, "set": "extra"}
                        for e in extra_manifest()["sources"] if e["language"] in args.langs
                        and (not e.get("more") or not args.no_more)]
        mine(srcs, out, forced, args.dev_fraction, args.test_fraction,
             {"input_fingerprint": fp, "benchmark_holdout": holdout, "corpora": corpora})
    print(counts_markdown(_read_json(out / "manifest.json")))
    return 0


def counts_markdown(manifest: dict[str, Any]) -> str:
    """Pairs per language and source, by split and tier, as a markdown table."""
    rows = ["| language | source | train | dev | test | clean | weak |", "|---|---|---:|---:|---:|---:|---:|"]
    totals: dict[str, dict[str, int]] = {}
    for lang, srcs in manifest.get("counts", {}).items():
        for src, c in srcs.items():
            rows.append(f"| {lang} | {src} | {c.get('train', 0)} | {c.get('dev', 0)} | {c.get('test', 0)} "
                        f"| {c.get('clean', 0)} | {c.get('weak', 0)} |")
            t = totals.setdefault(lang, {})
            for k, v in c.items():
                t[k] = t.get(k, 0) + v
    for lang, t in totals.items():
        rows.append(f"| **{lang}** | all | {t.get('train', 0)} | {t.get('dev', 0)} | {t.get('test', 0)} "
                    f"| {t.get('clean', 0)} | {t.get('weak', 0)} |")
    return "\n".join(rows)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) one stage."""
    result = train_mod.run_from_args(args)
    print(json.dumps({"status": result.status, "step": result.step, "model": result.model_dir,
                      "dev": result.dev, "pairs_per_second": round(result.pairs_per_second, 3),
                      "seconds": round(result.seconds, 1)}))
    return 0


def model_path(work: Path, label: str) -> Path:
    """``base`` (packaged all-MiniLM-L6-v2), ``shipped`` (codesearch's default model), ``stage1``, ``stage2``,
    ``export`` or a directory."""
    from codesearch.embed import SHIPPED_MODEL, base_model_dir

    if label == "base":
        return base_model_dir()
    if label == "shipped":
        return SHIPPED_MODEL
    named = {"stage1": work / "stage1" / "model", "stage2": work / "stage2" / "model", "export": work / "export"}
    return named.get(label, Path(label))


def _model_key(label: str) -> str:
    """The name of a model's result files in ``eval/``: the label, or a directory's last component."""
    return label if label in NAMED_MODELS else Path(label).name


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate models on the held-out split (and optionally the repository benchmark)."""
    from .data import read_pairs
    from .evaluate import benchmark_leakage, evaluate_pairs, markdown_table, run_repo_benchmark
    from .model import Encoder

    data = args.work / "data"
    test_file = data / "test.jsonl"
    pairs = [p for p in read_pairs(test_file) if p.language in args.langs]
    results: dict[str, Any] = {}
    settings = {"distractors": args.distractors, "max_queries": args.max_queries, "max_pool": args.max_pool,
                "seed": args.seed, "langs": list(args.langs), "test_sha256": train_mod.file_sha256(test_file)}
    for label in args.models:
        path = model_path(args.work, label)
        if not (path / "model.safetensors").is_file():
            log.warning("skipping %s: no model at %s", label, path)
            continue
        key = _model_key(label)
        out = args.work / "eval" / f"{key}.json"
        sha = train_mod.file_sha256(path / "model.safetensors")
        old = _read_json(out)
        if old and old.get("model_sha256") == sha and old.get("run_settings") == settings and not args.force:
            results[key] = old
            continue
        encoder = Encoder.from_dir(path)
        res = evaluate_pairs(encoder, pairs, args.distractors, args.max_queries, args.max_pool, args.seed)
        res.update({"model": str(path), "model_sha256": sha, "run_settings": settings})
        _write_json(out, res)
        results[key] = res
    table = ("## 999 distractors\n\n" + markdown_table(results, "distractors")
             + "\n\n## whole test pool\n\n" + markdown_table(results, "pool_ranking") + "\n")
    (args.work / "eval").mkdir(parents=True, exist_ok=True)
    (args.work / "eval" / "table.md").write_text(table, encoding="utf-8")
    print(table)
    if args.repo_bench:
        from .corpora import benchmark_files

        train_pairs = read_pairs(data / "train.jsonl")
        leaks = benchmark_leakage(train_pairs, {lang: benchmark_files(lang) for lang in args.langs})
        if any(leaks.values()):
            print(f"benchmark leakage (training pairs in benchmark repositories): {leaks}", file=sys.stderr)
            return 2
        for label in args.models:
            path = model_path(args.work, label)
            key = _model_key(label)
            run_repo_benchmark(path, args.work / "eval" / f"repo-{key}.json",
                               args.langs)
    if args.paraphrase:
        from .evaluate import run_paraphrase_benchmark

        dirs = {_model_key(label): model_path(args.work, label).resolve() for label in args.models
                if label not in ("base", "shipped")}
        run_paraphrase_benchmark(dirs, args.work / "eval" / "paraphrase.json", args.langs)
    return 0


def paraphrase_results(work: Path, dirs: dict[str, Path]) -> dict[str, Any] | None:
    """Per-model results of ``eval --paraphrase`` (``WORK/eval/paraphrase.json``), by trainer label.

    The benchmark's ``default`` is the shipped model (label ``shipped`` here). A model whose weights are
    not those the report was measured with is left out, so the verdict counts its figures as missing.

    Args:
        work: The work directory.
        dirs: {label: model directory} of the models the verdict compares.
    """
    report = _read_json(work / "eval" / "paraphrase.json")
    if not report:
        return None
    shas = report.get("model_sha256", {})
    out = {}
    for label, path in dirs.items():
        name = "default" if label == "shipped" else label
        weights = path / "model.safetensors"
        if name in report["results"] and weights.is_file() and shas.get(name) == train_mod.file_sha256(weights):
            out[label] = report["results"][name]
        elif name in report["results"]:
            log.warning("eval/paraphrase.json holds %s for other weights than %s: ignored", name, path)
    return out


def _fresh_evals(results: dict[str, Any], dirs: dict[str, Path]) -> dict[str, Any]:
    """Held-out results of the weights now at each label's directory (others are left out)."""
    out = {}
    for label, res in results.items():
        weights = dirs[label] / "model.safetensors"
        if weights.is_file() and res.get("model_sha256", "") in ("", train_mod.file_sha256(weights)):
            out[label] = res
        else:
            log.warning("eval/%s.json is of other weights than %s: ignored", label, dirs[label])
    return out


def cmd_export(args: argparse.Namespace) -> int:
    """Export the final model with its manifest and shipping verdict."""
    from .export import export_model, verdict

    stage = args.stage or ("stage2" if (args.work / "stage2" / "model").is_dir() else "stage1")
    model_dir = args.work / stage / "model"
    if not (model_dir / "model.safetensors").is_file():
        print(f"no trained model at {model_dir}: run `codesearch-train train` first", file=sys.stderr)
        return 1
    labels = ("base", "shipped", stage)
    dirs = {label: model_path(args.work, label) for label in labels}
    evals = _fresh_evals({k: v for k in labels if (v := _read_json(args.work / "eval" / f"{k}.json"))}, dirs)
    repo = {k: v for k in labels if (v := _read_json(args.work / "eval" / f"repo-{k}.json"))}
    para = paraphrase_results(args.work, dirs)
    ship = verdict(evals, repo or None, "base", stage, para, "shipped")
    configs = {s: _read_json(args.work / s / "train_config.json") for s in ("stage1", "stage2")
               if (args.work / s / "train_config.json").is_file()}
    metrics = {"held_out": {k: {"languages": v["languages"], "macro": v.get("macro"), "settings": v["settings"]}
                            for k, v in evals.items()},
               "repository": {k: v.get("results") for k, v in repo.items()},
               "paraphrased": {k: {lang: {split: {mode: v[lang]["paraphrased"][split][mode]["mrr@10"]
                                                  for mode in ("semantic", "hybrid")}
                                          for split in ("tune", "report") if split in v[lang]["paraphrased"]}
                                   for lang in v if lang in LANGUAGES}
                               for k, v in (para or {}).items()}}
    manifest = export_model(model_dir, args.out or args.work / "export", model_id=args.model_id,
                            dtype=args.dtype, max_length=args.max_length,
                            data_manifest=_read_json(args.work / "data" / "manifest.json"),
                            train_configs=configs, metrics=metrics, ship=ship)
    out = args.out or args.work / "export"
    if not args.no_onnx:
        _write_onnx(out)
    print(json.dumps({"exported": str(out), "ship": manifest["ship"]}, indent=2))
    if args.ship:
        if not manifest["ship"]["ship"] and not args.force:
            print(f"not shipped: {manifest['ship']['reason']} (--force ships it anyway)", file=sys.stderr)
            return 1
        from codesearch.embed import SHIPPED_MODEL

        ship_model(out, SHIPPED_MODEL)
        print(f"shipped: {out} -> {SHIPPED_MODEL}")
    return 0


def _write_onnx(model_dir: Path) -> dict[str, Any]:
    """Write model_dir/model.int8.onnx and the fp32 graph, and check the int8 file against torch on a few texts."""
    from .onnx_export import compare, export_onnx

    path = export_onnx(model_dir)
    sample = ["def read_config(path):\n    \"\"\"Read a TOML settings file.\"\"\"\n    return toml.load(path)",
              "func (s *Server) Close() error { return s.ln.Close() }",
              "public static String join(List<String> parts, String sep)"]
    check = compare(model_dir, sample)
    log.info("wrote %s (%.1f MB); cosine to the torch encoder: min %.4f, mean %.4f", path,
             path.stat().st_size / 1e6, check["min"], check["mean"])
    return {"onnx": str(path), "bytes": path.stat().st_size, "cosine_to_torch": check}


def cmd_onnx(args: argparse.Namespace) -> int:
    """Write MODEL_DIR/model.int8.onnx and model.fp32.graph.onnx (the encoder on ONNX Runtime)."""
    model_dir = args.model_dir
    if not (model_dir / "config.json").is_file() or not (model_dir / "model.safetensors").is_file():
        print(f"not a model directory (needs config.json and model.safetensors): {model_dir}", file=sys.stderr)
        return 1
    print(json.dumps(_write_onnx(model_dir), indent=2))
    return 0


def ship_model(src: Path, dest: Path) -> None:
    """Replace the model directory ``dest`` (the package's default model) by the export ``src``."""
    import shutil

    tmp = dest.with_name(dest.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def cmd_all(args: argparse.Namespace) -> int:
    """Every step in order (each one skipped when already done)."""
    base = ["--work", str(args.work)]
    steps: list[list[str]] = [["corpora"], ["mine"], ["train", "--stage", "1", "--preset", args.preset],
                              ["train", "--stage", "2", "--preset", args.preset],
                              ["eval", "--models", "base", "shipped", "stage1", "stage2"], ["export"]]
    for step in steps:
        code = main([*step[:1], *base, *step[1:]])
        if code:
            return code
    return 0


# ----------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``codesearch-train``."""
    ap = argparse.ArgumentParser(prog="codesearch-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def work(p: argparse.ArgumentParser) -> None:
        p.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"work directory (default {DEFAULT_WORK})")

    p = sub.add_parser("corpora", help="install documented code in six languages (bench/corpora.py)")
    work(p)
    p.add_argument("--only", nargs="*", default=[], choices=LANGUAGES)
    p.add_argument("--force", action="store_true")
    p.add_argument("--no-extra", action="store_true", help="only the benchmark corpora of bench/corpora.py")
    p.add_argument("--more", action="store_true",
                   help="also the hundreds of packages of trainer/more_sources.json (about 2,500 Debian "
                        "packages, 150 npm packages, 200 wheels; tens of minutes)")
    p.set_defaults(func=cmd_corpora)

    p = sub.add_parser("mine", help="mine (docstring, code) pairs, dedupe, split by package")
    work(p)
    p.add_argument("--langs", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    p.add_argument("--dev-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--no-bench-holdout", action="store_true",
                   help="do not force the repository benchmark's packages into the test split")
    p.add_argument("--bench-max-units", type=int, default=3000)
    p.add_argument("--bench-seed", type=int, default=0)
    p.add_argument("--no-extra", action="store_true", help="mine only the benchmark corpora")
    p.add_argument("--no-more", action="store_true",
                   help="leave out the sources of `corpora --more` (the data the shipped model was trained on)")
    p.add_argument("--tree", action="append", default=[], metavar="LANG=DIR",
                   help="mine this source tree instead of the installed corpora (repeatable)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser("train", help="train or resume one stage")
    train_mod.add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="held-out MRR@10 / Recall@1 per language (CodeSearchNet protocol)")
    work(p)
    p.add_argument("--models", nargs="+", default=["base", "stage1", "stage2"],
                   help="base, shipped, stage1, stage2, export or model directories")
    p.add_argument("--langs", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    p.add_argument("--distractors", type=int, default=999)
    p.add_argument("--max-queries", type=int, default=1000, help="queries per language")
    p.add_argument("--max-pool", type=int, default=0, help="cap on the test pool per language (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repo-bench", action="store_true", help="also run bench/quality.py with each model")
    p.add_argument("--paraphrase", action="store_true",
                   help="also run bench/paraphrase.py (plain-language queries) with base, shipped and each model")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write the shippable model directory with its manifest")
    work(p)
    p.add_argument("--stage", choices=("stage1", "stage2"), help="which stage's model (default: the last)")
    p.add_argument("--out", type=Path)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--model-id", default="codesearch-minilm-gte")
    p.add_argument("--max-length", type=int, default=Settings().max_length,
                   help="document token limit the index uses with this model (default: the index's default, "
                        "%(default)s)")
    p.add_argument("--ship", action="store_true",
                   help="install the export as codesearch's default model (codesearch/model) if the verdict says so")
    p.add_argument("--force", action="store_true", help="with --ship: ship even without a winning verdict")
    p.add_argument("--no-onnx", action="store_true",
                   help="do not write model.int8.onnx and model.fp32.graph.onnx (the ONNX Runtime encoders)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("onnx", help="write MODEL_DIR/model.int8.onnx and model.fp32.graph.onnx, the ONNX Runtime "
                                    "encoders")
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("all", help="every step in order")
    work(p)
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    p.set_defaults(func=cmd_all)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``codesearch-train``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
