"""``inspect-sids --tui``: the SID explorer, driven headless with Textual's pilot, and its data model."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.evaluation.inspect_sids import load_inspection
from uqf_cli.evaluation.sid_browse import SidBrowser
from uqf_cli.files import SidTable, write_sids

pytest.importorskip("textual")

runner = CliRunner()


@pytest.fixture
def two_files(tmp_path: Path, tiny_ds: Path) -> dict[str, Path]:
    """The tiny dataset (odd items are pens, even ones paper) tokenized by category (a) and by id (b)."""
    from uqf_cli.data.dataset import Dataset

    ids = Dataset.load(tiny_ds).item_ids
    by_cat = np.array([[int(i) % 2, int(i) // 2 % 3, int(i)] for i in ids])
    by_id = np.array([[int(i) % 3, int(i) % 4] for i in ids])
    out = {"ds": tiny_ds}
    for name, codes in (("a", by_cat), ("b", by_id)):
        sizes = [int(codes[:, k].max()) + 1 for k in range(codes.shape[1])]
        out[name] = write_sids(tmp_path / f"{name}.jsonl", SidTable(ids, codes, sizes))
    return out


def test_browser_children_items_search_and_path(two_files: dict[str, Path]) -> None:
    b = SidBrowser(load_inspection(two_files["a"], two_files["ds"]))
    top = b.children(())
    assert [(c.token, c.items, c.label) for c in top] == [("<a_0>", 6, "Office > Paper (100%)"),
                                                           ("<a_1>", 6, "Office > Pens (100%)")]
    assert [c.prefix for c in b.children((1,))] == [(1, 0), (1, 1), (1, 2)]
    assert b.children((1, 0, 7)) == []  # a full SID has no children
    assert [i.item_id for i in b.items((1, 0))] == ["1", "7"]
    assert b.items((1, 0))[1].sid == "<a_1><b_0><c_7>" and b.items((1, 0))[1].title == "Item 7 pen"
    assert [i.item_id for i in b.search("ITEM 1")] == ["1", "10", "11"]
    assert [i.item_id for i in b.search("pen 3")] == ["3"]  # every word, any order
    assert b.path_of("7") == (1, 0, 7) and b.path_of("nope") is None
    assert b.sibling_prefix("7") == (1, 0)  # <a_1><b_0> holds 1 and 7
    wide = SidBrowser(load_inspection(two_files["b"], two_files["ds"]))
    assert wide.sibling_prefix("7") == (1,)  # its full SID is its own; <a_1> holds 1, 4, 7, 10


def _run(app_obj, steps, size: tuple[int, int] = (140, 40)) -> None:
    async def go() -> None:
        async with app_obj.run_test(size=size) as pilot:
            await pilot.pause()
            await steps(app_obj, pilot)

    asyncio.run(go())


def test_tree_opens_level_by_level_and_lists_items(two_files: dict[str, Path]) -> None:
    from textual.widgets import DataTable, Static, Tree

    from uqf_cli.tui.sid_explorer import explorer_app

    explorer = explorer_app([load_inspection(two_files["a"], two_files["ds"])])

    async def steps(a, pilot) -> None:
        tree = a.query_one("#pane-0-tree", Tree)
        items = a.query_one("#pane-0-items", DataTable)
        assert [str(n.label) for n in tree.root.children] == ["<a_0> 6  Office > Paper (100%)",
                                                              "<a_1> 6  Office > Pens (100%)"]
        assert items.row_count == 12  # the root: every item
        pens = tree.root.children[1]
        assert not pens.children and not pens.data.loaded  # children are computed only when opened
        await pilot.press("down", "down", "enter")  # cursor to <a_1>, open it
        await pilot.pause()
        assert tree.cursor_node is pens and pens.is_expanded
        assert [str(n.label).split("  ")[0] for n in pens.children] == ["<b_0> 2", "<b_1> 2", "<b_2> 2"]
        assert items.row_count == 6 and {items.get_row_at(r)[0] for r in range(6)} == {"1", "3", "5", "7", "9", "11"}
        assert "<a_1>: 6 items" in str(a.query_one("#pane-0-items-title", Static).render())
        await pilot.press("down", "enter", "down")  # open <a_1><b_0>, highlight its first full SID
        await pilot.pause()
        assert tree.cursor_node.data.prefix == (1, 0, 1) and not tree.cursor_node.allow_expand
        assert [items.get_row_at(r) for r in range(items.row_count)] == [["1", "<a_1><b_0><c_1>", "Item 1 pen"]]

    _run(explorer, steps)


def test_search_jumps_to_the_item_in_both_files(two_files: dict[str, Path]) -> None:
    from textual.widgets import DataTable, Tree

    from uqf_cli.tui.sid_explorer import explorer_app

    explorer = explorer_app([load_inspection(two_files["a"], two_files["ds"]),
                             load_inspection(two_files["b"], two_files["ds"])])

    async def steps(a, pilot) -> None:
        assert [p.border_title for p in a.panes] == ["a.jsonl", "b.jsonl"]  # side by side
        await pilot.press("slash", *"item 7", "enter")
        await pilot.pause()
        results = a.query_one("#results", DataTable)
        assert results.row_count == 1 and a.focused is results
        assert results.get_row_at(0) == ["7", "<a_1><b_0><c_7>", "<a_1><b_3>", "Item 7 pen"]  # SID in each file
        await pilot.press("enter")
        await pilot.pause()
        await pilot.pause()
        for n, prefix in ((0, (1, 0)), (1, (1,))):  # the deepest prefix shared with others
            tree = a.query_one(f"#pane-{n}-tree", Tree)
            items = a.query_one(f"#pane-{n}-items", DataTable)
            assert tree.cursor_node.data.prefix == prefix
            assert items.get_row_at(items.cursor_row)[0] == "7"
        a_items, b_items = (a.query_one(f"#pane-{n}-items", DataTable) for n in (0, 1))
        assert [a_items.get_row_at(r)[0] for r in range(a_items.row_count)] == ["1", "7"]
        assert [b_items.get_row_at(r)[0] for r in range(b_items.row_count)] == ["1", "4", "7", "10"]  # i % 3 = 1

    _run(explorer, steps)


def test_start_at_item_and_unknown_search(two_files: dict[str, Path]) -> None:
    from textual.widgets import DataTable, Tree

    from uqf_cli.tui.sid_explorer import explorer_app

    explorer = explorer_app([load_inspection(two_files["a"], two_files["ds"])], item="4")

    async def steps(a, pilot) -> None:
        await pilot.pause()
        assert a.query_one("#pane-0-tree", Tree).cursor_node.data.prefix == (0, 2)
        await pilot.press("slash", *"no such thing", "enter")
        await pilot.pause()
        results = a.query_one("#results", DataTable)
        assert results.row_count == 0 and not results.has_class("shown")

    _run(explorer, steps)


def test_cli_tui_refusals(two_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["inspect-sids", str(two_files["a"]), "--dataset", str(two_files["ds"]), "--tui"]
    r = runner.invoke(app, base)  # the test runner's stdin/stdout are not a terminal
    assert r.exit_code == 2 and "needs an interactive terminal" in r.output
    r = runner.invoke(app, [*base, "--json"])
    assert r.exit_code == 2 and "leave out --json" in r.output
    r = runner.invoke(app, [*base, "--html", str(two_files["a"].parent / "r.html")])
    assert r.exit_code == 2 and "draws no pictures" in r.output and not (two_files["a"].parent / "r.html").exists()
    monkeypatch.setitem(sys.modules, "textual", None)  # what `import textual` sees when it is absent
    r = runner.invoke(app, base)
    assert r.exit_code == 2 and r.output.strip() == ("error: --tui: needs textual, the optional 'tui' extra: "
                                                      "pip install 'uqf-cli[tui]'")


def test_cli_tui_starts_the_explorer_with_the_options(two_files: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from uqf_cli.cli import inspect_sids as cli_module
    from uqf_cli.tui import sid_explorer

    started = {}
    monkeypatch.setattr(cli_module, "interactive_terminal", lambda: True)
    monkeypatch.setattr(sid_explorer.SidExplorer, "run", lambda self: started.update(
        names=[b.name for b in self.browsers], item=self.start_item, prefix=self.start_prefix))
    r = runner.invoke(app, ["inspect-sids", str(two_files["a"]), "--dataset", str(two_files["ds"]), "--tui",
                            "--compare", str(two_files["b"]), "--prefix", "<a_1><b_0>"])
    assert r.exit_code == 0, r.output
    assert started == {"names": ["a.jsonl", "b.jsonl"], "item": None, "prefix": (1, 0)}
    r = runner.invoke(app, ["inspect-sids", str(two_files["a"]), "--tui", "--item", "nope"])
    assert r.exit_code == 2 and "unknown item" in r.output


def test_start_at_prefix(two_files: dict[str, Path]) -> None:
    from textual.widgets import DataTable, Tree

    from uqf_cli.tui.sid_explorer import explorer_app

    explorer = explorer_app([load_inspection(two_files["a"], two_files["ds"])], prefix=(1, 0))

    async def steps(a, pilot) -> None:
        await pilot.pause()
        tree = a.query_one("#pane-0-tree", Tree)
        assert tree.cursor_node.data.prefix == (1, 0) and tree.cursor_node.is_expanded
        items = a.query_one("#pane-0-items", DataTable)
        assert [items.get_row_at(r)[0] for r in range(items.row_count)] == ["1", "7"]

    _run(explorer, steps)
