"""``uqf evaluate`` and ``uqf recommend``: rank each evaluation user's next item with a trained model.

Leave-one-out, one target per user, full ranking, history not excluded (protocol: docs/evaluate.md).
Before any ranking the model is checked against the dataset (train-interaction fingerprint) and,
when given, the SID map (hash), so a mixed-up run fails at once with one clear line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uqf_cli.core.config_field import configured
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.core.runtime import info, progress, resolve_device
from uqf_cli.data.cold import cold_items_of
from uqf_cli.data.dataset import Dataset, EvalCase
from uqf_cli.evaluation.coldness import metrics_by_coldness
from uqf_cli.evaluation.config import EvaluateConfig, check_ks
from uqf_cli.evaluation.metrics import popularity_lists, ranking_metrics
from uqf_cli.evaluation.popularity import metrics_by_popularity
from uqf_cli.files import DATASET_INFO_FILE, make_provenance, read_sids, write_json
from uqf_cli.files.outputs import plan_outputs, want
from uqf_cli.files.sidecar import write_jsonl_with_meta
from uqf_cli.rec import registry
from uqf_cli.rec.base import MODEL_META_FILE, read_model_meta


def check_argument_order(model_dir: str | Path, dataset_dir: str | Path, command: str = "evaluate") -> None:
    """``uqf evaluate DS MODEL`` (arguments swapped) is named as such, instead of blaming the dataset
    directory for not being a model (or the model for lacking items.jsonl)."""
    model, data = Path(model_dir), Path(dataset_dir)
    if (model / DATASET_INFO_FILE).is_file() and (data / MODEL_META_FILE).is_file():
        raise InputError(model, f"is a dataset directory and {data} a model directory: the arguments look swapped "
                         f"(uqf {command} MODEL_DIR DATASET, the model first)")


def check_model_inputs(model_dir: str | Path, dataset: Dataset, sids_path: str | Path | None) -> dict[str, Any]:
    """Read the model's metadata and check it against the dataset (and SIDs file, if given)."""
    meta = read_model_meta(model_dir)
    fp = meta.get("dataset_fingerprint")
    trained_on = meta.get("interaction_fingerprint")
    if trained_on:  # the model depends on the train interactions only, not on item texts
        if trained_on != dataset.interaction_fingerprint:
            raise InputError(model_dir, f"model was trained on another dataset (train interactions {trained_on}, "
                                        f"{dataset.path} has {dataset.interaction_fingerprint})")
    elif fp and dataset.fingerprint and fp != dataset.fingerprint:
        raise InputError(model_dir, f"model was trained on another dataset (fingerprint {fp}, "
                                    f"{dataset.path} has {dataset.fingerprint})")
    if sids_path is not None:
        if "sid_hash" not in meta:
            raise OptionError("--sids", f"the {meta['backbone']} model in {model_dir} uses no SIDs")
        given = _dataset_sid_hash(read_sids(sids_path), dataset)
        if given != meta["sid_hash"]:
            raise InputError(sids_path, f"SID map differs from the one the model in {model_dir} was trained on "
                                        f"(hash {given} != {meta['sid_hash']})")
    return meta


def _dataset_sid_hash(sids, dataset: Dataset) -> str:
    from uqf_cli.rec.base import restrict_sids

    return restrict_sids(sids, dataset.item_ids).content_hash()


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    cfg: EvaluateConfig | None = None,
    sids_path: str | Path | None = None,
    predictions: str | Path | None = None,
    output: str | Path | None = None,
    force: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Score a model directory on ``cfg.split``; optionally write predictions and a metrics JSON.

    ``cfg`` defaults to ``EvaluateConfig()``; ``settings`` (its field names: ``split="valid"``,
    ``beam_size=50``) replace single fields. ``by_popularity`` adds the metrics per head / torso / tail
    group of the targets' train popularity (:mod:`uqf_cli.evaluation.popularity`); ``by_coldness`` the
    metrics of cold and warm targets (:mod:`uqf_cli.evaluation.coldness`; ``None``: when the dataset marks
    cold items). ``rank`` / ``alpha`` override a hybrid model's stored ranking mode and mix weight.
    """
    cfg = configured(EvaluateConfig, cfg, settings)
    cfg.validate()
    check_argument_order(model_dir, dataset_dir)
    plan_outputs([want(predictions, "predictions", "--predictions"), want(output, "metrics")], force=force)
    dataset = Dataset.load(dataset_dir)
    meta = check_model_inputs(model_dir, dataset, sids_path)
    cases = dataset.eval_cases(cfg.split)  # type: ignore[arg-type]
    if cfg.max_users is not None:
        cases = cases[:cfg.max_users]
    if not cases:
        raise InputError(dataset_dir, f"no {cfg.split} users: every user has fewer than 3 interactions")
    rec = load_ranker(model_dir, meta, cfg.device, cfg.rank, cfg.alpha)
    info(f"ranking {len(cases):,} {cfg.split} users with the {meta['backbone']} model (beam {cfg.beam_size})")
    top = max((*cfg.recall_ks, *cfg.ndcg_ks))
    t0 = time.time()
    ranked = _recommend_all(rec, cases, top, cfg.beam_size)
    seconds = time.time() - t0
    targets = [c.target for c in cases]
    result: dict[str, Any] = {
        "model": str(model_dir), "backbone": meta["backbone"], "dataset": str(dataset_dir),
        "dataset_fingerprint": dataset.fingerprint, "split": cfg.split, "users": len(cases),
        "beam_size": cfg.beam_size, "metrics": ranking_metrics(ranked, targets, cfg.recall_ks, cfg.ndcg_ks),
        "seconds": round(seconds, 2), "users_per_second": users_per_second(len(cases), seconds),
    }
    if getattr(rec, "rank", None) is not None:
        result["rank"], result["alpha"] = rec.rank, rec.alpha
    result.update(_breakdowns(cfg, dataset, cases, ranked, top))
    params = {"split": cfg.split, "beam_size": cfg.beam_size, "recall_ks": list(cfg.recall_ks),
              "ndcg_ks": list(cfg.ndcg_ks), "max_users": cfg.max_users, "by_popularity": cfg.by_popularity,
              "by_coldness": "by_coldness" in result, "rank": result.get("rank"), "alpha": result.get("alpha")}
    if predictions is not None or output is not None:
        prov = make_provenance("evaluate", params, inputs={"model": Path(model_dir) / "uqf_model.json",
                                                           "dataset": dataset_dir})
        if predictions is not None:
            write_predictions(predictions, cases, ranked, result, prov, force)
        if output is not None:
            write_json(output, {**result, "provenance": prov}, force=force)
    return result


def _breakdowns(cfg: EvaluateConfig, dataset: Dataset, cases: Sequence[EvalCase], ranked: list[list[str]],
                top: int) -> dict[str, Any]:
    """The optional parts of the result: cold/warm and popularity groups, the popularity baselines."""
    targets = [c.target for c in cases]
    ks = (cfg.recall_ks, cfg.ndcg_ks)
    out: dict[str, Any] = {}
    if cfg.by_coldness or (cfg.by_coldness is None and cold_items_of(dataset) is not None):
        out["by_coldness"] = metrics_by_coldness(dataset, ranked, targets, *ks)
    if cfg.by_popularity:
        out["by_popularity"] = metrics_by_popularity(dataset, ranked, targets, *ks)
    if cfg.baseline:
        hists = [c.history for c in cases]
        out["popularity"] = ranking_metrics(popularity_lists(dataset, hists, top, exclude_history=False),
                                            targets, *ks)
        out["popularity_excluding_history"] = ranking_metrics(
            popularity_lists(dataset, hists, top, exclude_history=True), targets, *ks)
    return out


def load_ranker(model_dir: str | Path, meta: dict[str, Any], device: str, rank: str | None = None,
                alpha: float | None = None):
    """Load the model for ranking; ``rank`` / ``alpha`` (hybrid models only) override its stored mode."""
    rec = registry.get(meta["backbone"]).load(model_dir, resolve_device(device))
    if rank is not None or alpha is not None:
        if not hasattr(rec, "set_ranking"):
            flag = "--rank" if rank is not None else "--alpha"
            raise OptionError(flag, f"the {meta['backbone']} model has one way to rank (only hybrid models have "
                                    "ranking modes)")
        rec.set_ranking(rank, alpha)
    return rec


MIN_TIMED_SECONDS = 0.1  # below this, the clock measures set-up noise, not the model


def users_per_second(users: int, seconds: float) -> float | None:
    """Ranking speed, or ``None`` when ranking took too little time to say (the popularity baseline ranks
    every user in a millisecond: dividing by that gives millions of users/s, a number about nothing)."""
    return round(users / seconds, 1) if seconds >= MIN_TIMED_SECONDS else None


def write_predictions(path: str | Path, cases: Sequence[EvalCase], ranked: Sequence[list[str]],
                      result: dict[str, Any], provenance: dict[str, Any], force: bool) -> Path:
    """One line per user (``user_id``, ranked ``item_ids``, the ``target``); the rest in the sidecar."""
    records = ({"user_id": c.user_id, "item_ids": r, "target": c.target}
               for c, r in zip(cases, ranked, strict=True))
    meta = {"uqf_kind": "predictions",
            "records": {"user_id": "string", "item_ids": "list of string, best first", "target": "string"},
            **{k: result[k] for k in ("model", "backbone", "dataset", "dataset_fingerprint", "split", "users",
                                      "beam_size")},
            "provenance": provenance}
    return write_jsonl_with_meta(path, records, meta, force=force)


def _recommend_all(rec, cases, k: int, beam_size: int, chunk: int = 512) -> list[list[str]]:
    out: list[list[str]] = []
    with progress() as bar:
        task = bar.add_task("ranking", total=len(cases), status="")
        for start in range(0, len(cases), chunk):
            part = cases[start:start + chunk]
            hist = [list(c.history) for c in part]
            if getattr(rec, "uses_user_ids", False):
                out.extend(rec.recommend(hist, k, beam_size, user_ids=[c.user_id for c in part]))
            else:
                out.extend(rec.recommend(hist, k, beam_size))
            bar.update(task, advance=len(part))
    return out


def recommend_for_history(model_dir: str | Path, dataset_dir: str | Path, history: Sequence[str], k: int,
                          beam_size: int | None = None, device: str = "auto",
                          user_id: str | None = None, rank: str | None = None) -> tuple[Dataset, list[str]]:
    """Top-``k`` item ids for one history (``uqf recommend``); unknown or missing ids are errors."""
    beam = beam_size if beam_size is not None else max(k, 20)
    if k < 1:
        raise OptionError("--k", "must be a positive integer")
    check_ks([k], beam)
    check_argument_order(model_dir, dataset_dir, "recommend")
    dataset = Dataset.load(dataset_dir)
    if not history:
        raise OptionError("--history", "give at least one item id (oldest first, comma-separated)")
    unknown = [i for i in history if i not in dataset.item_index]
    if unknown:
        raise OptionError("--history", f"unknown item id {unknown[0]!r} (not in {dataset_dir})")
    meta = check_model_inputs(model_dir, dataset, None)
    rec = load_ranker(model_dir, meta, device, rank)
    if getattr(rec, "uses_user_ids", False):
        return dataset, rec.recommend([list(history)], k, beam, user_ids=[user_id or ""])[0]
    return dataset, rec.recommend([list(history)], k, beam)[0]
