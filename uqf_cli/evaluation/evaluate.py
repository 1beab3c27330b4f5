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

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.core.runtime import info, progress, resolve_device
from uqf_cli.data.cold import cold_items_of
from uqf_cli.data.dataset import Dataset, EvalCase
from uqf_cli.evaluation.coldness import metrics_by_coldness
from uqf_cli.evaluation.metrics import NDCG_KS, RECALL_KS, popularity_lists, ranking_metrics
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


def check_ks(ks: Sequence[int], beam_size: int) -> None:
    if any(k < 1 for k in ks):
        raise OptionError("--k", "every K must be a positive integer")
    if max(ks) > beam_size:
        raise OptionError("--beam-size", f"beam size {beam_size} is smaller than the largest K ({max(ks)}); "
                                         "a beam search returns at most beam-size items")


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    recall_ks: Sequence[int] = RECALL_KS,
    ndcg_ks: Sequence[int] = NDCG_KS,
    beam_size: int = 20,
    device: str = "auto",
    sids_path: str | Path | None = None,
    predictions: str | Path | None = None,
    output: str | Path | None = None,
    baseline: bool = False,
    max_users: int | None = None,
    force: bool = False,
    by_popularity: bool = False,
    by_coldness: bool | None = None,
    rank: str | None = None,
    alpha: float | None = None,
) -> dict[str, Any]:
    """Score a model directory on ``split``; optionally write predictions and a metrics JSON.

    ``by_popularity`` adds the metrics per head / torso / tail group of the targets' train
    popularity (:mod:`uqf_cli.evaluation.popularity`); ``by_coldness`` the metrics of cold and warm
    targets (:mod:`uqf_cli.evaluation.coldness`; ``None``: when the dataset marks cold items).
    ``rank`` / ``alpha`` override a hybrid model's stored ranking mode and mix weight.
    """
    if split not in ("valid", "test"):
        raise OptionError("--split", f"must be valid or test, not {split!r}")
    check_argument_order(model_dir, dataset_dir)
    ks = sorted({*recall_ks, *ndcg_ks})
    check_ks(ks, beam_size)
    plan_outputs([want(predictions, "predictions", "--predictions"), want(output, "metrics")], force=force)
    dataset = Dataset.load(dataset_dir)
    meta = check_model_inputs(model_dir, dataset, sids_path)
    cases = dataset.eval_cases(split)  # type: ignore[arg-type]
    if max_users is not None:
        cases = cases[:max_users]
    if not cases:
        raise InputError(dataset_dir, f"no {split} users: every user has fewer than 3 interactions")
    rec = load_ranker(model_dir, meta, device, rank, alpha)
    info(f"ranking {len(cases):,} {split} users with the {meta['backbone']} model (beam {beam_size})")
    t0 = time.time()
    ranked = _recommend_all(rec, cases, max(ks), beam_size)
    seconds = time.time() - t0
    targets = [c.target for c in cases]
    result: dict[str, Any] = {
        "model": str(model_dir), "backbone": meta["backbone"], "dataset": str(dataset_dir),
        "dataset_fingerprint": dataset.fingerprint, "split": split, "users": len(cases), "beam_size": beam_size,
        "metrics": ranking_metrics(ranked, targets, recall_ks, ndcg_ks),
        "seconds": round(seconds, 2), "users_per_second": users_per_second(len(cases), seconds),
    }
    if getattr(rec, "rank", None) is not None:
        result["rank"], result["alpha"] = rec.rank, rec.alpha
    if by_coldness or (by_coldness is None and cold_items_of(dataset) is not None):
        result["by_coldness"] = metrics_by_coldness(dataset, ranked, targets, recall_ks, ndcg_ks)
    if by_popularity:
        result["by_popularity"] = metrics_by_popularity(dataset, ranked, targets, recall_ks, ndcg_ks)
    if baseline:
        hists = [c.history for c in cases]
        result["popularity"] = ranking_metrics(popularity_lists(dataset, hists, max(ks), exclude_history=False),
                                               targets, recall_ks, ndcg_ks)
        result["popularity_excluding_history"] = ranking_metrics(
            popularity_lists(dataset, hists, max(ks), exclude_history=True), targets, recall_ks, ndcg_ks)
    params = {"split": split, "beam_size": beam_size, "recall_ks": list(recall_ks), "ndcg_ks": list(ndcg_ks),
              "max_users": max_users, "by_popularity": by_popularity, "by_coldness": "by_coldness" in result,
              "rank": result.get("rank"), "alpha": result.get("alpha")}
    if predictions is not None:
        prov = make_provenance("evaluate", params, inputs={"model": Path(model_dir) / "uqf_model.json",
                                                           "dataset": dataset_dir})
        write_predictions(predictions, cases, ranked, result, prov, force)
    if output is not None:
        prov = make_provenance("evaluate", params, inputs={"model": Path(model_dir) / "uqf_model.json",
                                                           "dataset": dataset_dir})
        write_json(output, {**result, "provenance": prov}, force=force)
    return result


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
