"""``uqf demo``: the whole pipeline on the embedded Office dataset, as a list of steps.

prepare -> embed-text -> train-gcn -> fuse -> quantize -> train-rec (TIGER) -> evaluate (test) ->
inspect-sids -> a picture of the SIDs (``sids.png``, with the optional ``plot`` extra). Each
:class:`Step` names its outputs (paths inside the work directory) and a function that produces them
by calling the stage's library function, exactly what the matching ``uqf`` command would do (the
step also knows that command, :attr:`Step.command`, and the demo prints it), so the demo exercises
the real code path and its files can be fed to the commands by hand afterwards.

A rerun reuses a step whose outputs all exist, unless ``force`` is set or an earlier step was redone
in this run: then its inputs changed, so everything after it is redone too. ``demo.json`` in the work
directory records the budget and seed the files were made with; a rerun with another budget or seed
refuses to mix them (use ``--force`` or another ``--workdir``).

Budgets (:class:`DemoBudget`): every stage runs with its own defaults except where they would not
fit the demo's time budget (:data:`FULL`: TIGER's small preset for a few epochs, train-gcn capped at
100 epochs); ``--quick`` (:data:`QUICK`) is a tiny smoke budget on Office's 15-core. The choices and
their measured cost are in ``docs/demo.md``; the budget's notes are printed with the results.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from uqf_cli.collab.config import GcnConfig
from uqf_cli.core import runtime
from uqf_cli.core.config_field import flag_of, option_fields
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.evaluation.config import EvaluateConfig

DEMO_SOURCE = "builtin:office"
DEFAULT_WORKDIR = Path("uqf-demo")
SETTINGS_FILE = "demo.json"
PICTURE = "sids.png"
TABLE_RECALL_KS = (5, 10)
TABLE_NDCG_KS = (5, 10)


@dataclass(frozen=True)
class DemoBudget:
    """Every demo-specific setting; ``None`` means the stage's own default."""

    name: str
    kcore: int | None = None  # prepare: None = the format's default (off for LC-Rec files)
    max_history: int | None = None  # prepare: keep each user's last N interactions
    gcn: dict[str, Any] = field(default_factory=dict)  # GcnConfig fields
    fuse: dict[str, Any] = field(default_factory=dict)  # FuseOptions fields
    quantize: dict[str, Any] = field(default_factory=dict)  # QuantizeConfig fields
    tiger: dict[str, Any] = field(default_factory=dict)  # TigerOptions fields (train-rec flags)
    beam_size: int = EvaluateConfig.beam_size  # evaluate (test), named on the printed command line
    notes: tuple[str, ...] = ()


FULL = DemoBudget(
    name="full",
    gcn={"epochs": 100},
    tiger={"preset": "small", "epochs": 4, "eval_users": 500},
    notes=("TIGER: --preset small for 4 epochs (a converged small run is 30, about 20 minutes on 2 cores; "
           "the default shape is the paper's), validated on 500 sampled valid users: a working, not a converged model",
           f"train-gcn: at most 100 epochs (default {GcnConfig.epochs}; early stopping usually ends it sooner)",
           "other stages: their defaults"),
)
QUICK = DemoBudget(
    name="quick",
    kcore=15,
    max_history=10,
    gcn={"epochs": 6, "eval_every": 2, "dim": 32},
    fuse={"epochs": 1, "d_model": 32, "queries": 2, "layers": 1, "heads": 2, "out_dim": 16, "batch_size": 128},
    quantize={"codebook_sizes": [8, 8, 8], "code_dim": 8, "hidden": [64], "epochs": 10, "warmup_epochs": 5},
    tiger={"epochs": 1, "d_model": 64, "num_layers": 1, "num_decoder_layers": 1, "eval_users": 50, "patience": 1,
           "batch_size": 128},
    notes=("--quick: Office 15-core, last 10 interactions per user, tiny models, 1-6 epochs: a smoke run, "
           "not a result",),
)


@dataclass
class DemoContext:
    """What every step sees: the work directory, options, and earlier steps' summaries."""

    workdir: Path
    device: str = "auto"
    force: bool = False
    seed: int = 0
    budget: DemoBudget = FULL
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.workdir / name

    def q(self, name: str) -> str:
        """A shell-quoted path inside the work directory (for the printed commands)."""
        return shlex.quote(str(self.path(name)))


@dataclass
class Step:
    """One pipeline step: ``run(ctx, force)`` writes ``outputs`` and returns a small summary dict;
    ``command(ctx)`` is the equivalent ``uqf`` shell command."""

    name: str
    outputs: tuple[str, ...]
    run: Callable[[DemoContext, bool], dict[str, Any]]
    description: str = ""
    command: Callable[[DemoContext], str] | None = None


@dataclass
class StepReport:
    name: str
    status: str  # "ran" or "reused"
    outputs: list[str]
    seconds: float
    summary: dict[str, Any]
    command: str = ""
    cpu_seconds: float = 0.0  # CPU time of this process (all threads): comparable across machine loads


# ----------------------------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------------------------


def _flags(pairs: dict[str, Any]) -> str:
    """``{"--epochs": 5, "--x": None}`` -> ``" --epochs 5"`` (lists comma-joined, None dropped)."""
    out = []
    for flag, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append(f" {flag} {shlex.quote(str(value))}")
    return "".join(out)


def _config_flags(cls: type, values: dict[str, Any]) -> str:
    """:func:`_flags` of config field values, each named by its field's option (``kcore_k`` -> ``--kcore``)."""
    flags = {f.name: flag_of(f) for f in option_fields(cls)}
    return _flags({flags.get(name, "--" + name.replace("_", "-")): value for name, value in values.items()})


def _common(ctx: DemoContext, seed: bool = True) -> str:
    return (f" --seed {ctx.seed}" if seed else "") + (f" --device {ctx.device}" if ctx.device != "auto" else "")


def _prepare(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.data.prepare import prepare

    b = ctx.budget
    ds = prepare(DEMO_SOURCE, ctx.path("dataset"), force=force, kcore_k=b.kcore, max_history=b.max_history)
    s = ds.stats()
    return {"users": s["users"], "items": s["items"], "interactions": s["interactions"]}


def _prepare_cmd(ctx: DemoContext) -> str:
    from uqf_cli.data.prepare import PrepareConfig

    b = ctx.budget
    return f"uqf prepare {DEMO_SOURCE} -o {ctx.q('dataset')}" + _config_flags(
        PrepareConfig, {"kcore_k": b.kcore, "max_history": b.max_history})


def _embed_text(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.embed import embed_text

    res = embed_text(ctx.path("dataset"), ctx.path("text.st"), device=ctx.device, force=force)
    return {"items": res.items, "dim": res.dim, "model": res.model,
            "items_per_second": round(res.items_per_second, 1)}


def _embed_text_cmd(ctx: DemoContext) -> str:
    return f"uqf embed-text {ctx.q('dataset')} -o {ctx.q('text.st')}" + _common(ctx, seed=False)


def _train_gcn(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.collab import train_gcn

    cfg = GcnConfig(**{**ctx.budget.gcn, "seed": ctx.seed, "device": ctx.device})
    res = train_gcn(ctx.path("dataset"), ctx.path("collab.st"), cfg, force=force)
    return {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            **{k: round(v, 4) for k, v in res.metrics.items()}}


def _train_gcn_cmd(ctx: DemoContext) -> str:
    return (f"uqf train-gcn {ctx.q('dataset')} -o {ctx.q('collab.st')}" + _config_flags(GcnConfig, ctx.budget.gcn)
            + _common(ctx))


def _fuse(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.fuse import FuseOptions, fuse

    opts = FuseOptions(**{**ctx.budget.fuse, "seed": ctx.seed, "device": ctx.device})
    res = fuse(ctx.path("text.st"), ctx.path("collab.st"), ctx.path("dataset"), ctx.path("unified.st"), opts,
               save_model=ctx.path("fuser.st"), force=force)
    out: dict[str, Any] = {"items": res.items, "cold_items": res.cold_items, "dim": res.dim}
    if res.gate:
        out["gate_mean"] = res.gate.get("mean")
    return out


def _fuse_cmd(ctx: DemoContext) -> str:
    from uqf_cli.fuse import FuseOptions

    return (f"uqf fuse --text {ctx.q('text.st')} --collab {ctx.q('collab.st')} --dataset {ctx.q('dataset')} "
            f"-o {ctx.q('unified.st')} --save-model {ctx.q('fuser.st')}" + _config_flags(FuseOptions, ctx.budget.fuse)
            + _common(ctx))


def _quantize(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.quantize import QuantizeConfig, quantize

    cfg = QuantizeConfig(**{**ctx.budget.quantize, "seed": ctx.seed})
    if "codebook_sizes" in ctx.budget.quantize:
        cfg.levels = len(cfg.codebook_sizes)
    res = quantize(ctx.path("unified.st"), ctx.path("sids.jsonl"), cfg, save_model=ctx.path("quantizer.st"),
                   device=ctx.device, force=force)
    s = res.stats
    return {"items": s["items"], "depth": s["depth"], "raw_collision_rate": round(s["raw_collision_rate"], 4)}


def _quantize_cmd(ctx: DemoContext) -> str:
    qz = ctx.budget.quantize
    sizes = qz.get("codebook_sizes")
    return (f"uqf quantize {ctx.q('unified.st')} -o {ctx.q('sids.jsonl')} --save-model {ctx.q('quantizer.st')}"
            + _flags({"--levels": len(sizes) if sizes else None, "--codebook-size": sizes,
                      "--code-dim": qz.get("code_dim"), "--hidden": qz.get("hidden"), "--epochs": qz.get("epochs"),
                      "--warmup-epochs": qz.get("warmup_epochs")}) + _common(ctx))


def _train_rec(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import read_sids
    from uqf_cli.rec import tiger

    ds = Dataset.load(ctx.path("dataset"))
    options = {**ctx.budget.tiger, "seed": ctx.seed, "device": ctx.device}
    s = tiger.train(ds, read_sids(ctx.path("sids.jsonl")), ctx.path("tiger"), options, force)
    return {"samples": s["samples"], "epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"],
            "valid_ndcg@10 (sample)": round(s["best_valid_ndcg10_sample"], 4)}


def _train_rec_cmd(ctx: DemoContext) -> str:
    flags = {f"--{k.replace('_', '-')}": v for k, v in ctx.budget.tiger.items()}
    return (f"uqf train-rec {ctx.q('dataset')} --sids {ctx.q('sids.jsonl')} --backbone tiger -o {ctx.q('tiger')}"
            + _flags(flags) + _common(ctx))


def _evaluate(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.evaluation import evaluate

    r = evaluate(ctx.path("tiger"), ctx.path("dataset"), split="test", beam_size=ctx.budget.beam_size,
                 device=ctx.device, sids_path=ctx.path("sids.jsonl"), predictions=ctx.path("test_predictions.jsonl"),
                 output=ctx.path("test_metrics.json"), force=force)
    return {"users": r["users"], **{k: round(v, 4) for k, v in r["metrics"].items() if k in _table_metrics()}}


def _evaluate_cmd(ctx: DemoContext) -> str:
    return (f"uqf evaluate {ctx.q('tiger')} {ctx.q('dataset')} --split test --sids {ctx.q('sids.jsonl')} "
            f"--beam-size {ctx.budget.beam_size} -o {ctx.q('test_metrics.json')} "
            f"--predictions {ctx.q('test_predictions.jsonl')}" + _common(ctx, seed=False))


def _inspect(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.evaluation import inspect_sids
    from uqf_cli.files import make_provenance, write_json

    ins = inspect_sids.load_inspection(ctx.path("sids.jsonl"), ctx.path("dataset"), ctx.path("text.st"),
                                       ctx.path("collab.st"))
    figures = inspect_sids.metrics(ins, ctx.seed)
    prov = make_provenance("inspect-sids", {"seed": ctx.seed}, {"sids": ctx.path("sids.jsonl")})
    write_json(ctx.path("sid_stats.json"), {"metrics": figures, "provenance": prov}, force=force)
    return sid_summary(figures)


def _inspect_cmd(ctx: DemoContext) -> str:
    return (f"uqf inspect-sids {ctx.q('sids.jsonl')} --dataset {ctx.q('dataset')} --text {ctx.q('text.st')} "
            f"--collab {ctx.q('collab.st')} --seed {ctx.seed}   # --json > sid_stats.json for the figures")


def _picture(ctx: DemoContext, force: bool) -> dict[str, Any]:
    """Draw the SIDs (code usage, items per prefix, the fused embeddings' map); skipped without matplotlib."""
    from uqf_cli.core.errors import UqfError
    from uqf_cli.evaluation import inspect_sids
    from uqf_cli.files import load_embeddings, make_provenance
    from uqf_cli.plots import EXTRA_HINT, require_matplotlib
    from uqf_cli.plots.sids import write_sids_pictures

    try:
        require_matplotlib()
    except UqfError:
        runtime.warn(f"no picture of the SIDs: matplotlib is missing ({EXTRA_HINT})")
        return {"skipped": "matplotlib missing"}
    ins = inspect_sids.load_inspection(ctx.path("sids.jsonl"), ctx.path("dataset"))
    prov = make_provenance("inspect-sids", {"seed": ctx.seed},
                           {"sids": ctx.path("sids.jsonl"), "map": ctx.path("unified.st")})
    write_sids_pictures([ins], [], prov, plot=ctx.path(PICTURE), map_emb=load_embeddings(ctx.path("unified.st")),
                        force=force)
    return {"picture": str(ctx.path(PICTURE))}


def _picture_cmd(ctx: DemoContext) -> str:
    return (f"uqf inspect-sids {ctx.q('sids.jsonl')} --dataset {ctx.q('dataset')} --map {ctx.q('unified.st')} "
            f"--no-tree --plot {ctx.q(PICTURE)}")


def _table_metrics() -> list[str]:
    return [f"recall@{k}" for k in TABLE_RECALL_KS] + [f"ndcg@{k}" for k in TABLE_NDCG_KS]


def sid_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The few SID figures the final table shows (from :func:`uqf_cli.evaluation.inspect_sids.metrics`)."""
    out: dict[str, Any] = {"items": figures["items"],
                           "depth": figures.get("depth", figures.get("levels")),  # sid_stats.json of earlier runs
                           "collision_rate": round(figures["collision_rate"], 4)}
    for lvl, s in enumerate(figures.get("per_level", []), 1):
        if "utilisation" in s:
            out[f"utilisation L{lvl}"] = round(s["utilisation"], 3)
    for key, label, sub in (("semantic_cosine", "semantic lift", "lift"),
                            ("collab_adjacency", "collab adjacency lift", "lift")):
        for depth, s in figures.get(key, {}).items():
            out[f"{label} @{depth}"] = None if s[sub] is None else round(s[sub], 3)  # None: below its floor
    return out


STEPS: list[Step] = [
    Step("prepare", ("dataset",), _prepare, "Office dataset (embedded) -> dataset/", _prepare_cmd),
    Step("embed-text", ("text.st",), _embed_text, "item text -> all-MiniLM-L6-v2 embeddings", _embed_text_cmd),
    Step("train-gcn", ("collab.st",), _train_gcn, "LightGCN on the train interactions -> collab.st", _train_gcn_cmd),
    Step("fuse", ("unified.st", "fuser.st"), _fuse, "Unified Q-Former: text + collab -> unified.st", _fuse_cmd),
    Step("quantize", ("sids.jsonl", "quantizer.st"), _quantize, "RQ-VAE semantic IDs -> sids.jsonl", _quantize_cmd),
    Step("train-rec", ("tiger",), _train_rec, "TIGER (T5) over the SIDs -> tiger/", _train_rec_cmd),
    Step("evaluate", ("test_metrics.json", "test_predictions.jsonl"), _evaluate,
         "test split, full ranking (constrained beam search)", _evaluate_cmd),
    Step("inspect-sids", ("sid_stats.json",), _inspect, "SID statistics -> sid_stats.json", _inspect_cmd),
    Step("sids-picture", (PICTURE,), _picture, f"a picture of the SIDs -> {PICTURE}", _picture_cmd),
]


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def _settings(budget: DemoBudget, seed: int) -> dict[str, Any]:
    return {"budget": asdict(budget), "seed": seed, "source": DEMO_SOURCE}


def _check_settings(wd: Path, settings: dict[str, Any], force: bool) -> None:
    """Refuse to reuse files made with another budget or seed (they would be silently mixed)."""
    import json

    from uqf_cli.files import read_json, to_json

    path = wd / SETTINGS_FILE
    if path.exists() and not force:
        old = read_json(path)
        if old != json.loads(to_json(settings)):
            name = old.get("budget", {}).get("name") if isinstance(old, dict) else None
            raise OptionError("--workdir", f"{wd} holds a demo run with other settings ({name} budget, seed "
                                           f"{old.get('seed') if isinstance(old, dict) else '?'}); pass --force "
                                           "to redo it or pick another --workdir")


@dataclass
class DemoResult:
    """Per-step reports plus the final figures read back from the work directory."""

    workdir: Path
    budget: DemoBudget
    seed: int
    steps: list[StepReport]
    test_metrics: dict[str, float]
    sid_stats: dict[str, Any]

    def __iter__(self) -> Iterator[StepReport]:
        """Iterating a result walks its step reports (what ``run_demo`` returned before the figures)."""
        return iter(self.steps)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.steps)

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for r in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"workdir": str(self.workdir), "budget": asdict(self.budget), "seed": self.seed,
                "seconds": round(self.seconds, 1),
                "cpu_seconds": round(self.cpu_seconds, 1), "steps": [asdict(r) for r in self.steps],
                "test_metrics": self.test_metrics, "sid_stats": self.sid_stats}


def run_demo(workdir: str | Path = DEFAULT_WORKDIR, force: bool = False, device: str = "auto",
             steps: list[Step] | None = None, seed: int = 0, quick: bool = False) -> DemoResult:
    """Run (or reuse) every step in order inside ``workdir``; read back the test metrics and SID figures."""
    from uqf_cli.files import read_json, to_json

    wd = Path(workdir)
    if wd.exists() and not wd.is_dir():
        raise InputError(wd, "work directory is a file")
    runtime.resolve_device(device)  # a bad --device fails before any work
    budget = QUICK if quick else FULL
    settings = _settings(budget, seed)
    _check_settings(wd, settings, force)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / SETTINGS_FILE).write_text(to_json(settings, indent=2) + "\n", encoding="utf-8")
    ctx = DemoContext(wd, device=device, force=force, seed=seed, budget=budget)
    reports: list[StepReport] = []
    redo = force
    for step in steps if steps is not None else STEPS:
        outputs = [ctx.path(o) for o in step.outputs]
        command = step.command(ctx) if step.command is not None else ""
        if not redo and all(p.exists() for p in outputs):
            runtime.info(escape(f"step {step.name}: reusing {', '.join(str(p) for p in outputs)} (--force redoes it)"))
            reports.append(StepReport(step.name, "reused", [str(p) for p in outputs], 0.0, {}, command))
            continue
        runtime.info(escape(f"step {step.name}: {step.description}"))
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = step.run(ctx, True)  # partial leftovers of an interrupted run are replaced
        ctx.results[step.name] = summary
        reports.append(StepReport(step.name, "ran", [str(p) for p in outputs], time.perf_counter() - started,
                                  summary, command, time.process_time() - cpu_started))
        redo = True  # everything downstream depends on what was just rewritten
    metrics_path, stats_path = wd / "test_metrics.json", wd / "sid_stats.json"
    test_metrics = read_json(metrics_path).get("metrics", {}) if metrics_path.exists() else {}
    sid_stats = sid_summary(read_json(stats_path)["metrics"]) if stats_path.exists() else {}
    return DemoResult(wd, budget, seed, reports, test_metrics, sid_stats)
