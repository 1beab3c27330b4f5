"""Pictures: --plot/--html of inspect-sids, fuse and train-rec write valid files; the extra is optional."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.files import SidTable, save_embeddings, write_sids
from uqf_cli.plots.sids import projection_2d

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and min_bytes < len(data) < 2_000_000, len(data)


class _Collect(HTMLParser):
    """Tag names, text, image sources and the JSON data block of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "script":
            assert a.get("type") == "application/json" and "src" not in a  # data only, nothing runs
            self._script = a.get("id") or ""
        if tag in ("link",) or (tag == "img" and not (a.get("src") or "").startswith("data:")):
            raise AssertionError(f"external resource: {tag} {a}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] = self.scripts.get(self._script, "") + data
        else:
            self.text.append(data)


def parse_html(path: Path) -> _Collect:
    page = _Collect()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture
def sids_case(tmp_path: Path, tiny_ds: Path) -> dict[str, Path]:
    """Two tokenizations of the tiny dataset (by category / by id) and text embeddings."""
    from uqf_cli.data.dataset import Dataset

    ds = Dataset.load(tiny_ds)
    ids = ds.item_ids
    by_cat = np.array([[int(i) % 2, int(i) // 2 % 3, int(i)] for i in ids])
    by_id = np.array([[int(i) % 3, int(i) % 4, int(i)] for i in ids])
    out = {"ds": tiny_ds}
    for name, codes in (("a", by_cat), ("b", by_id)):
        table = SidTable(item_ids=ids, codes=codes, codebook_sizes=[int(codes[:, k].max()) + 1 for k in range(3)])
        out[name] = write_sids(tmp_path / f"{name}.jsonl", table)
    emb = torch.randn(len(ids), 8, generator=torch.Generator().manual_seed(0))
    out["text"] = tmp_path / "t.st"
    save_embeddings(out["text"], emb, ids, {}, "text", ds.fingerprint)
    return out


def test_inspect_plot_and_html(sids_case: dict[str, Path], tmp_path: Path) -> None:
    png, page = tmp_path / "sids.png", tmp_path / "sids.html"
    args = ["inspect-sids", str(sids_case["a"]), "--dataset", str(sids_case["ds"]), "--text", str(sids_case["text"]),
            "--compare", str(sids_case["b"]), "--no-tree", "--plot", str(png), "--html", str(page)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert_png(png, 20_000)
    doc = parse_html(page)
    assert {"table", "img", "h1"} <= set(doc.tags)
    assert doc.images[0].startswith("data:image/png;base64,")
    import base64

    assert base64.b64decode(doc.images[0].split(",", 1)[1])[:8] == PNG_SIGNATURE
    text = " ".join(doc.text)
    assert "a.jsonl" in text and "b.jsonl" in text and "<a_0>" in text and "collision rate" in text
    data = json.loads(doc.scripts["uqf-data"])
    assert [m["items"] for m in data["metrics"]] == [12, 12] and data["provenance"]["stage"] == "inspect-sids"
    # provenance also rides in the PNG's text chunk; outputs are never overwritten without --force
    assert b"inspect-sids" in png.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_plot_without_embeddings_and_bad_suffix(sids_case: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "bare.png"
    r = runner.invoke(app, ["inspect-sids", str(sids_case["a"]), "--no-tree", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert_png(png)
    bad = runner.invoke(app, ["inspect-sids", str(sids_case["a"]), "--plot", str(tmp_path / "x.jpg")])
    assert bad.exit_code == 2 and ".png" in bad.output and not (tmp_path / "x.jpg").exists()


def test_missing_matplotlib_is_one_line_exit_2(sids_case: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is absent
    for flag, out in (("--plot", "p.png"), ("--html", "p.html")):
        r = runner.invoke(app, ["inspect-sids", str(sids_case["a"]), flag, str(tmp_path / out)])
        assert r.exit_code == 2, r.output
        assert r.output.strip().splitlines() == [f"error: {flag}: needs matplotlib, the optional 'plot' extra: "
                                                 "pip install 'uqf-cli[plot]'"]
        assert not (tmp_path / out).exists()


def test_projection_is_deterministic_and_sign_fixed() -> None:
    x = np.random.default_rng(0).normal(size=(50, 6)) * np.array([5, 3, 1, 1, 1, 1])
    a, b = projection_2d(x), projection_2d(x.copy())
    assert np.array_equal(a, b) and a.shape == (50, 2)
    assert np.corrcoef(a[:, 0], x[:, 0])[0, 1] > 0.9  # the widest axis comes first
    flipped = projection_2d(-x)  # same cloud mirrored: same picture up to the fixed signs
    assert np.allclose(np.abs(flipped), np.abs(a))


def test_fuse_plot_loss_and_gate(tiny_ds: Path, tmp_path: Path) -> None:
    from uqf_cli.data.dataset import Dataset

    ds = Dataset.load(tiny_ds)
    ids = ds.item_ids
    g = torch.Generator().manual_seed(0)
    text, collab = tmp_path / "text.st", tmp_path / "collab.st"
    save_embeddings(text, torch.randn(len(ids), 16, generator=g), ids, {}, "text", ds.fingerprint)
    warm = ids[:-3]  # the last three items have no collab row: cold
    save_embeddings(collab, torch.randn(len(warm), 8, generator=g), warm, {}, "collab", ds.fingerprint)
    base = ["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(tiny_ds), "--epochs", "3",
            "--d-model", "16", "--queries", "2", "--layers", "1", "--heads", "2", "--out-dim", "8",
            "--device", "cpu", "--quiet"]
    png = tmp_path / "fuse.png"
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "u.st"), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert_png(png, 15_000)
    assert b"fuse" in png.read_bytes()  # the fused file's provenance rides along
    # a method without a gate or a curve is refused before any work
    concat = ["--method", "concat", "-o", str(tmp_path / "c.st"), "--plot", str(tmp_path / "c.png")]
    r = runner.invoke(app, [*base, *concat])
    assert r.exit_code == 2 and "only --method uqf" in r.output and not (tmp_path / "c.st").exists()


def test_train_rec_plot_tiger_and_refusal(tiny_ds: Path, tmp_path: Path) -> None:
    from tests.test_evaluate import write_random_sids

    sids = write_random_sids(tiny_ds, tmp_path / "s.jsonl")
    png = tmp_path / "curve.png"
    args = ["train-rec", str(tiny_ds), "--sids", str(sids), "--backbone", "tiger", "--epochs", "2", "--d-model", "16",
            "--num-layers", "1", "--num-decoder-layers", "1", "--batch-size", "32", "--eval-users", "20",
            "--eval-every", "1", "--device", "cpu", "--quiet"]
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "m"), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert_png(png, 15_000)
    from uqf_cli.plots.training import training_curve

    backbone, records = training_curve(tmp_path / "m")
    assert backbone == "tiger" and [r["epoch"] for r in records] == [1, 2]
    assert all(r["valid_ndcg10"] is not None for r in records)
    r = runner.invoke(app, ["train-rec", str(tiny_ds), "--backbone", "pop", "-o", str(tmp_path / "p"), "--plot",
                            str(tmp_path / "p.png")])
    assert r.exit_code == 2 and "records no training curve" in r.output and not (tmp_path / "p").exists()


# ---- readable pictures ----------------------------------------------------------------------


def _crowded(tmp_path: Path) -> tuple:
    """Ten level-1 codes whose middles sit almost on one spot of the map (a few far items stretch the axes),
    each code's items all in one category: the labels must be spread out to be readable."""
    from uqf_cli.data.dataset import Dataset
    from uqf_cli.evaluation.inspect_sids import Inspection
    from uqf_cli.files import load_embeddings

    rng = np.random.default_rng(0)
    ids, codes, vectors, items = [], [], [], {}
    for code in range(10):
        for n in range(20):
            iid = f"c{code}-{n}"
            ids.append(iid)
            codes.append([code, n])
            vectors.append([code * 0.02 + rng.normal(0, 0.003), rng.normal(0, 0.003), 0.0])
            items[iid] = {"title": f"Product number {n} of maker {code}", "categories": f"Office, Group {code}"}
    for n, corner in enumerate([(-5, -5), (5, 5), (-5, 5), (5, -5)]):  # grey outliers stretch the axes
        iid = f"far{n}"
        ids.append(iid)
        codes.append([10 + n, 0])
        vectors.append([corner[0], corner[1], 0.0])
        items[iid] = {"title": "far away", "categories": "Office, Far"}
    table = SidTable(item_ids=ids, codes=np.asarray(codes), codebook_sizes=[14, 20])
    ds = Dataset(items, {"u": ids[:3]})
    save_embeddings(tmp_path / "e.st", torch.tensor(vectors, dtype=torch.float32), ids, {}, "text", None)
    return Inspection(table, ds), load_embeddings(tmp_path / "e.st")


def _overlaps(boxes: list) -> list[tuple[int, int]]:
    return [(a, b) for a in range(len(boxes)) for b in range(a + 1, len(boxes)) if boxes[a].overlaps(boxes[b])]


def test_map_labels_do_not_overlap_and_name_codes_like_the_tree(tmp_path: Path) -> None:
    from matplotlib.text import Text

    from uqf_cli.evaluation.inspect_sids import group_label
    from uqf_cli.plots.sids import code_label, sids_figure

    ins, emb = _crowded(tmp_path)
    fig = sids_figure([ins], emb)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    map_ax = fig.axes[-1]
    labels = [t for t in map_ax.texts if t.get_text().startswith("<a_")]
    assert len(labels) == 10
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text itself, where it is drawn
    assert _overlaps(boxes) == []
    frame = map_ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    # named by category, as the terminal tree and the HTML name the code (never a product title)
    for t in labels:
        code = int(t.get_text()[3:].split(">")[0])
        members = [i for i, c in zip(ins.table.item_ids, ins.table.codes[:, 0], strict=True) if c == code]
        assert t.get_text() == code_label(ins, code) == f"<a_{code}> {group_label(members, ins.dataset)}"
        assert "Group" in t.get_text() and "Product" not in t.get_text()
    # the case is a real test: the labels, all put at one small offset from their points, would collide
    naive = [map_ax.annotate(t.get_text(), t.xy, xytext=(4, 4), textcoords="offset points", fontsize=8)
             for t in labels]
    for a in naive:
        a.update_positions(renderer)
    assert _overlaps([Text.get_window_extent(a, renderer) for a in naive])


def test_gate_histogram_counts_items_on_separate_axes() -> None:
    from uqf_cli.plots.training import fuse_figure

    rng = np.random.default_rng(0)
    gate = np.concatenate([rng.uniform(0.2, 0.8, 2407), rng.uniform(0.6, 1.0, 13)])
    cold = np.arange(len(gate)) >= 2407
    fig = fuse_figure([{"epoch": 1, "loss": 1.0}], gate, cold)
    hists = [ax for ax in fig.axes if ax.patches]
    assert len(hists) == 2  # warm and cold each on their own count scale
    heights = [sum(p.get_height() for p in ax.patches) for ax in hists]
    assert heights == [2407, 13]  # bar heights are item counts, not densities
    assert all(ax.get_ylabel() == "items" for ax in hists)
    assert hists[1].get_ylim()[1] < 20 < hists[0].get_ylim()[1]  # 13 cold items fill their own panel


def test_one_epoch_curves_show_big_markers_and_values() -> None:
    from uqf_cli.plots.training import curve_figure, fuse_figure

    fig = curve_figure("tiger", [{"epoch": 1, "loss": 5.25, "valid_ndcg10": 0.0125}])
    for ax in fig.axes:
        line = ax.get_lines()[0]
        assert line.get_marker() == "o" and line.get_markersize() >= 8
        assert list(ax.get_xticks()) == [1]
    assert [t.get_text() for t in fig.axes[0].texts] == ["5.25"] and "0.0125" in fig.axes[1].texts[0].get_text()
    fuse = fuse_figure([{"epoch": 1, "loss": 1.5, "recon": 1.0}], None, np.zeros(0, dtype=bool))
    assert sorted(t.get_text() for t in fuse.axes[0].texts) == ["1", "1.5"]
    long = curve_figure("tiger", [{"epoch": e, "loss": 5.0 - e / 10} for e in range(1, 21)])
    assert long.axes[0].get_lines()[0].get_markersize() < 8 and not long.axes[0].texts


def test_html_has_drill_down_legend_and_zoomable_map(sids_case: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    r = runner.invoke(app, ["inspect-sids", str(sids_case["a"]), "--dataset", str(sids_case["ds"]), "--text",
                            str(sids_case["text"]), "--html", str(page)])
    assert r.exit_code == 0, r.output
    assert "How to read the summary" in r.output and "good value" in r.output  # the terminal legend
    html_text = page.read_text(encoding="utf-8")
    doc = parse_html(page)
    text = " ".join(doc.text)
    # legend: every figure of the summary explained, with what a good value is
    for name in ("utilisation", "perplexity", "collision rate", "category purity", "lift", "good value"):
        assert name in text, name
    # level-2 drill-down under each level-1 code: <a_0> holds the even items, split by (i // 2) % 3
    assert doc.tags.count("details") == 2 and "<a_0><b_0>" in text and "<a_1><b_2>" in text
    assert "Item 0 paper" in text and "Office > Paper (100%)" in text
    # the map is its own picture, with a click-to-zoom toggle (CSS only: no script runs)
    assert len(doc.images) == 2 and 'class="zoom"' in html_text and "max-width: none" in html_text
    assert set(doc.scripts) == {"uqf-data"}


def test_usage_picture_draws_the_semantic_levels_and_names_the_dedup_code() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uqf_cli.plots.sids import draw_code_usage, draw_prefix_sizes

    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.integers(0, 8, size=(200, 3)), np.zeros((200, 1), dtype=np.int64)], axis=1)
    table = SidTable([str(i) for i in range(200)], codes, [8, 8, 8, 2], dedup_level=True)
    fig, (usage, prefixes) = plt.subplots(1, 2)
    draw_code_usage(usage, table)
    draw_prefix_sizes(prefixes, table)
    assert len(usage.get_lines()) == 3 and len(prefixes.get_lines()) == 3  # the dedup code is not a level line
    assert "3 levels + dedup" in usage.get_title()
    plt.close(fig)
