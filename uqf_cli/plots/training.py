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

CURVE_BACKBONES = ("tiger", "sasrec", "hybrid")  # the backbones whose model directory records a per-epoch curve
GATE_BINS = 40


# --------------------------------------------------------------------------------------------
# fuse
# --------------------------------------------------------------------------------------------


def check_fuse_plot(method: str, applying: bool) -> None:
    """Only the Unified Q-Former has a loss curve and a gate to draw (checked before training)."""
    if not applying and method != "uqf":
        raise OptionError("--plot", f"--method {method} trains nothing: only --method uqf has a loss curve and a "
                                    "gate to draw")


def fuse_figure(curve: list[dict[str, float]], gate: np.ndarray | None, cold: np.ndarray) -> Any:
    """Left: total loss and each weighted term per epoch. Right: the gate's distribution, warm vs cold."""
    from uqf_cli.plots import new_figure

    fig = new_figure(12.0, 4.5)
    ax_loss, ax_gate = fig.subplots(1, 2)
    if curve:
        epochs = [p["epoch"] for p in curve]
        for key in [k for k in curve[0] if k != "epoch"]:
            ax_loss.plot(epochs, [p.get(key, np.nan) for p in curve], marker="o", ms=3,
                         lw=2.2 if key == "loss" else 1.2, label="total" if key == "loss" else key)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("mean loss per step")
        ax_loss.legend(fontsize=8)
        ax_loss.grid(alpha=0.3)
    else:
        ax_loss.text(0.5, 0.5, "no training in this run\n(a saved fuser was applied)", ha="center", va="center")
        ax_loss.set_axis_off()
    ax_loss.set_title("Fusion loss")
    if gate is not None:
        bins = np.linspace(0.0, 1.0, GATE_BINS + 1)
        for mask, name in ((~cold, "warm"), (cold, "cold")):
            if mask.any():
                values = gate[mask]
                ax_gate.hist(values, bins=bins, density=True, alpha=0.55,
                             label=f"{name}: {int(mask.sum()):,} items, mean {values.mean():.3f}")
        ax_gate.set_xlabel("gate (0 = collaborative, 1 = text)")
        ax_gate.set_ylabel("density")
        ax_gate.legend(fontsize=8)
    ax_gate.set_title("Gate per item")
    return fig


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
    if backbone not in CURVE_BACKBONES:
        raise OptionError("--plot", f"the {backbone} backbone records no training curve (only "
                                    f"{' and '.join(CURVE_BACKBONES)} do)")


def training_curve(model_dir: str | Path) -> tuple[str, list[dict[str, float]]]:
    """(backbone, per-epoch records ``{epoch, loss, valid_ndcg10?}``) read from a model directory."""
    from uqf_cli.rec.base import read_model_meta

    meta = read_model_meta(model_dir)
    backbone = str(meta.get("backbone"))
    if backbone in ("tiger", "hybrid"):
        records = (meta.get("training") or {}).get("history") or []
    elif backbone == "sasrec":
        records = [{**{k: v for k, v in r.items() if k != "valid_ndcg@10"}, "valid_ndcg10": r.get("valid_ndcg@10")}
                   for r in meta.get("epochs") or []]
    else:
        records = []
    if not records:
        raise InputError(model_dir, f"the {backbone} model records no training curve")
    return backbone, records


def curve_figure(backbone: str, records: list[dict[str, float]]) -> Any:
    """Left: training loss per epoch. Right: validation NDCG@10 at each evaluation, the best one marked."""
    from uqf_cli.plots import new_figure

    fig = new_figure(11.0, 4.2)
    ax_loss, ax_ndcg = fig.subplots(1, 2)
    ax_loss.plot([r["epoch"] for r in records], [r["loss"] for r in records], marker="o", ms=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title(f"{backbone}: training loss")
    ax_loss.grid(alpha=0.3)
    evals = [r for r in records if r.get("valid_ndcg10") is not None]
    if evals:
        xs, ys = [r["epoch"] for r in evals], [r["valid_ndcg10"] for r in evals]
        ax_ndcg.plot(xs, ys, marker="o", ms=4, color="tab:green")
        best = int(np.argmax(ys))
        ax_ndcg.scatter([xs[best]], [ys[best]], s=80, facecolors="none", edgecolors="black",
                        label=f"best: epoch {xs[best]}, {ys[best]:.4f}")
        ax_ndcg.legend(fontsize=8)
    ax_ndcg.set_xlabel("epoch")
    ax_ndcg.set_ylabel("validation NDCG@10")
    ax_ndcg.set_title(f"{backbone}: validation NDCG@10 ({len(evals)} evaluations)")
    ax_ndcg.grid(alpha=0.3)
    return fig


def plot_training(model_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Draw the curve recorded in ``model_dir`` and write ``out`` (with the model's provenance)."""
    from uqf_cli.plots import save_figure
    from uqf_cli.rec.base import read_model_meta

    backbone, records = training_curve(model_dir)
    return save_figure(curve_figure(backbone, records), out, read_model_meta(model_dir).get("provenance", {}), force)
