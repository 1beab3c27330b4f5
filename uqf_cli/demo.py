"""``uqf demo``: the whole pipeline on the embedded Office dataset, as a list of steps.

Each :class:`Step` names its outputs (paths inside the work directory) and a function that produces
them by calling a stage's library function, exactly what the matching ``uqf`` command would do, so
the demo exercises the real code path and its files can be fed to the commands by hand afterwards.

Later stages append themselves with :func:`add_step` (train-gcn, fuse, quantize, train-rec, evaluate,
inspect-sids). A rerun reuses a step whose outputs all exist, unless ``force`` is set or an earlier
step was redone in this run: then its inputs changed, so everything after it is redone too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from uqf_cli import runtime
from uqf_cli.errors import InputError

DEMO_SOURCE = "builtin:office"
DEFAULT_WORKDIR = Path("uqf-demo")


@dataclass
class DemoContext:
    """What every step sees: the work directory, options, and earlier steps' summaries."""

    workdir: Path
    device: str = "auto"
    force: bool = False
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.workdir / name


@dataclass
class Step:
    """One pipeline step: ``run(ctx, force)`` writes ``outputs`` and returns a small summary dict."""

    name: str
    outputs: tuple[str, ...]
    run: Callable[[DemoContext, bool], dict[str, Any]]
    description: str = ""


@dataclass
class StepReport:
    name: str
    status: str  # "ran" or "reused"
    outputs: list[str]
    seconds: float
    summary: dict[str, Any]


def _prepare(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.prepare import prepare

    ds = prepare(DEMO_SOURCE, ctx.path("dataset"), force=force)
    s = ds.stats()
    return {"users": s["users"], "items": s["items"], "interactions": s["interactions"]}


def _embed_text(ctx: DemoContext, force: bool) -> dict[str, Any]:
    from uqf_cli.embed_text import embed_text

    res = embed_text(ctx.path("dataset"), ctx.path("text.st"), device=ctx.device, force=force)
    return {"items": res.items, "dim": res.dim, "model": res.model,
            "items_per_second": round(res.items_per_second, 1)}


STEPS: list[Step] = [
    Step("prepare", ("dataset",), _prepare, "Office dataset (embedded) -> dataset/"),
    Step("embed-text", ("text.st",), _embed_text, "item text -> all-MiniLM-L6-v2 embeddings"),
]


def add_step(step: Step, after: str | None = None) -> None:
    """Append ``step`` (or insert it right after the step named ``after``); names are unique."""
    if any(s.name == step.name for s in STEPS):
        raise ValueError(f"demo step {step.name!r} is already registered")
    if after is None:
        STEPS.append(step)
        return
    names = [s.name for s in STEPS]
    STEPS.insert(names.index(after) + 1, step)


def run_demo(workdir: str | Path = DEFAULT_WORKDIR, force: bool = False, device: str = "auto",
             steps: list[Step] | None = None) -> list[StepReport]:
    """Run (or reuse) every step in order inside ``workdir`` and report what happened."""
    wd = Path(workdir)
    if wd.exists() and not wd.is_dir():
        raise InputError(wd, "work directory is a file")
    wd.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(wd, device=device, force=force)
    reports: list[StepReport] = []
    redo = force
    for step in steps if steps is not None else STEPS:
        outputs = [ctx.path(o) for o in step.outputs]
        if not redo and all(p.exists() for p in outputs):
            runtime.info(escape(f"step {step.name}: reusing {', '.join(str(p) for p in outputs)} (--force redoes it)"))
            reports.append(StepReport(step.name, "reused", [str(p) for p in outputs], 0.0, {}))
            continue
        runtime.info(escape(f"step {step.name}: {step.description}"))
        started = time.perf_counter()
        summary = step.run(ctx, True)  # partial leftovers of an interrupted run are replaced
        ctx.results[step.name] = summary
        reports.append(StepReport(step.name, "ran", [str(p) for p in outputs], time.perf_counter() - started,
                                  summary))
        redo = True  # everything downstream depends on what was just rewritten
    return reports
