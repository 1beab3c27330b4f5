"""Pictures of training runs: ``fuse --plot`` (loss curves, gate per warm/cold item) and
``train-rec --plot`` (training loss and validation NDCG@10 per evaluation).

Both read what the stage already wrote (the fused file's ``gate`` tensor and cold item list, the model
directory's recorded curve), so a picture shows exactly what was saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.files import load_embeddings

GATE_BINS = 40
FEW_POINTS = 3  # curves with at most this many epochs get big markers and their values written out


def curve_style(points: int) -> dict[str, Any]:
    """Line style for a per-epoch curve: small markers on long curves, big ones where a line would be a dot."""
    return {"marker": "o", "ms": 3 if points > FEW_POINTS else 8}


def epoch_axis(ax: Any, epochs: list[float]) -> None:
    """Whole-number epoch ticks; with few epochs, room on both sides so a single point sits mid-panel."""
    from matplotlib.ticker import MaxNLocator

    if len(epochs) <= FEW_POINTS:
        ax.set_xticks(sorted(set(epochs)))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def write_values(ax: Any, xs: list[float], ys: list[float]) -> None:
    """Print each value beside its marker (for curves too short to read off the axis)."""
    for x, y in zip(xs, ys, strict=True):
        if y is not None and np.isfinite(y):
            ax.annotate(f"{y:.4g}", (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8)


# --------------------------------------------------------------------------------------------
# fuse
# --------------------------------------------------------------------------------------------


def check_fuse_plot(method: str, applying: bool) -> None:
    """Only a fusion method that trains has a loss curve (and a gate) to draw (checked before training)."""
    from uqf_cli.fuse.registry import trainers, trains

    if not applying and not trains(method):
        raise OptionError("--plot", f"--method {method} trains nothing: only {trainers()} has a loss curve and a "
                                    "gate to draw")


def fuse_figure(curve: list[dict[str, float]], gate: np.ndarray | None, cold: np.ndarray) -> Any:
    """Left: total loss and each weighted term per epoch. Right: the gate's histogram in item counts, warm and
    cold items on separate axes."""
    from uqf_cli.plots import new_figure

    fig = new_figure(12.0, 4.5)
    grid = fig.add_gridspec(2, 2)
    ax_loss = fig.add_subplot(grid[:, 0])
    if curve:
        epochs = [p["epoch"] for p in curve]
        few = len(epochs) <= FEW_POINTS
        for key in [k for k in curve[0] if k != "epoch"]:
            values = [p.get(key, np.nan) for p in curve]
            ax_loss.plot(epochs, values, lw=2.2 if key == "loss" else 1.2, label="total" if key == "loss" else key,
                         **curve_style(len(epochs)))
            if few:
                write_values(ax_loss, epochs, values)
        epoch_axis(ax_loss, epochs)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("mean loss per step")
        ax_loss.legend(fontsize=8)
        ax_loss.grid(alpha=0.3)
    else:
        ax_loss.text(0.5, 0.5, "no training in this run\n(a saved fuser was applied)", ha="center", va="center")
        ax_loss.set_axis_off()
    ax_loss.set_title("Fusion loss")
    draw_gate(fig, grid, gate, cold)
    return fig


def draw_gate(fig: Any, grid: Any, gate: np.ndarray | None, cold: np.ndarray) -> list[Any]:
    """The gate's histogram in item counts, warm and cold items on separate axes (each its own count scale,
    so a handful of cold items is as readable as thousands of warm ones); one panel when a group is empty."""
    groups = [(name, mask) for mask, name in ((~cold, "warm"), (cold, "cold")) if gate is not None and mask.any()]
    if not groups:
        ax = fig.add_subplot(grid[:, 1])
        ax.text(0.5, 0.5, "no gate in this file", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title("Gate per item")
        return [ax]
    from matplotlib.ticker import MaxNLocator

    bins = np.linspace(0.0, 1.0, GATE_BINS + 1)
    axes = [fig.add_subplot(grid[:, 1])] if len(groups) == 1 else [fig.add_subplot(grid[0, 1])]
    if len(groups) == 2:
        axes.append(fig.add_subplot(grid[1, 1], sharex=axes[0]))
    colours = {"warm": "tab:blue", "cold": "tab:orange"}
    for ax, (name, mask) in zip(axes, groups, strict=True):
        values = gate[mask]
        ax.hist(values, bins=bins, color=colours[name], alpha=0.8,
                label=f"{name}: {int(mask.sum()):,} items, mean {values.mean():.3f}")
        ax.set_ylabel("items")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_title("Gate per item (item counts; warm and cold on their own scales)")
    axes[-1].set_xlabel("gate (0 = collaborative, 1 = text)")
    axes[-1].set_xlim(0.0, 1.0)
    return axes


def plot_fuse(fused_path: str | Path, curve: list[dict[str, float]], out: str | Path, force: bool = False) -> Path:
    """Draw the fused file's gate (warm vs cold items) next to the loss ``curve`` and write ``out``."""
    from uqf_cli.plots import save_figure

    emb = load_embeddings(fused_path)
    gate_t = emb.extra_tensors.get("gate")
    gate = gate_t.double().reshape(len(emb.item_ids), -1).mean(1).numpy() if gate_t is not None else None
    cold_ids = set(emb.extra_metadata.get("cold_item_ids") or [])
    cold = np.asarray([iid in cold_ids for iid in emb.item_ids], dtype=bool)
    return save_figure(fuse_figure(curve, gate, cold), out, emb.provenance, force)


# --------------------------------------------------------------------------------------------
# train-rec
# --------------------------------------------------------------------------------------------


def check_curve_backbone(backbone: str) -> None:
    """Fail before training when the backbone records no curve to draw."""
    from uqf_cli.rec import registry

    if registry.get(backbone).curve is None:
        with_curves = [b.name for b in registry.backbones() if b.curve is not None]
        raise OptionError("--plot", f"the {backbone} backbone records no training curve (only "
                                    f"{' and '.join(with_curves)} do)")


def training_curve(model_dir: str | Path) -> tuple[str, list[dict[str, float]]]:
    """(backbone, per-epoch records ``{epoch, loss, valid_ndcg10?}``) read from a model directory."""
    from uqf_cli.rec import registry
    from uqf_cli.rec.base import read_model_meta

    meta = read_model_meta(model_dir)
    backbone = str(meta.get("backbone"))
    found = registry.find(backbone)
    records = found.curve(meta) if found is not None and found.curve is not None else []
    if not records:
        raise InputError(model_dir, f"the {backbone} model records no training curve")
    return backbone, records


def curve_figure(backbone: str, records: list[dict[str, float]]) -> Any:
    """Left: training loss per epoch. Right: validation NDCG@10 at each evaluation, the best one marked."""
    from uqf_cli.plots import new_figure

    fig = new_figure(11.0, 4.2)
    ax_loss, ax_ndcg = fig.subplots(1, 2)
    epochs, losses = [r["epoch"] for r in records], [r["loss"] for r in records]
    ax_loss.plot(epochs, losses, **curve_style(len(records)))
    if len(records) <= FEW_POINTS:
        write_values(ax_loss, epochs, losses)
    epoch_axis(ax_loss, epochs)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"{backbone}: training loss")
    ax_loss.grid(alpha=0.3)
    evals = [r for r in records if r.get("valid_ndcg10") is not None]
    if evals:
        xs, ys = [r["epoch"] for r in evals], [r["valid_ndcg10"] for r in evals]
        ax_ndcg.plot(xs, ys, color="tab:green", **curve_style(len(evals)))
        best = int(np.argmax(ys))
        ax_ndcg.scatter([xs[best]], [ys[best]], s=160, facecolors="none", edgecolors="black",
                        label=f"best: epoch {xs[best]}, {ys[best]:.4f}")
        if len(evals) <= FEW_POINTS:
            write_values(ax_ndcg, xs, ys)
        ax_ndcg.legend(fontsize=8)
    epoch_axis(ax_ndcg, epochs)
    ax_ndcg.set_xlabel("epoch")
    ax_ndcg.set_ylabel("validation NDCG@10")
    ax_ndcg.set_title(f"{backbone}: validation NDCG@10 ({len(evals)} evaluation{'s' if len(evals) != 1 else ''})")
    ax_ndcg.grid(alpha=0.3)
    return fig


def plot_training(model_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Draw the curve recorded in ``model_dir`` and write ``out`` (with the model's provenance)."""
    from uqf_cli.plots import save_figure
    from uqf_cli.rec.base import read_model_meta

    backbone, records = training_curve(model_dir)
    return save_figure(curve_figure(backbone, records), out, read_model_meta(model_dir).get("provenance", {}), force)
