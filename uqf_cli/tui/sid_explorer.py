"""``uqf inspect-sids SIDS --tui``: walk a tokenization's code hierarchy in the terminal (Textual).

One pane per SIDs file (two with ``--compare``, side by side): a tree of codes, level by level, whose
children are computed when a node is first opened; below it the items of the highlighted prefix (id,
title, full SID). The search box (``/``) finds items by title; choosing a result (Enter) opens every
pane down to that item's prefix and puts the cursor on the item, so two tokenizations of the same
item can be compared at a glance (the cursor lands on the item's deepest prefix shared with another
item: its closest siblings). ``--item`` and ``--prefix`` choose where it starts. ``q`` quits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static, Tree
from textual.widgets._tree import TreeNode

from uqf_cli.evaluation.sid_browse import Child, SidBrowser

ITEMS_SHOWN = 300  # items listed for one prefix (the count above the table says how many there are)
RESULTS_SHOWN = 200


@dataclass
class NodeData:
    """What a tree node stands for: its prefix, and whether its children were added yet."""

    prefix: tuple[int, ...]
    loaded: bool = False


def node_label(child: Child) -> Text:
    text = Text()
    text.append(child.token, style="cyan")
    text.append(f" {child.items:,}")
    if child.label:
        text.append(f"  {child.label}", style="dim" if child.items == 1 else "")
    return text


class SidPane(Vertical):
    """One tokenization: the code tree and the highlighted prefix's items."""

    DEFAULT_CSS = """
    SidPane { width: 1fr; border: round $primary; }
    SidPane Tree { height: 1fr; }
    SidPane .items-title { height: 1; background: $boost; }
    SidPane DataTable { height: 1fr; }
    """

    def __init__(self, browser: SidBrowser, index: int) -> None:
        super().__init__(id=f"pane-{index}")
        self.browser = browser
        self.border_title = browser.name
        self.shown_prefix: tuple[int, ...] | None = None

    def compose(self) -> ComposeResult:
        rows = len(self.browser.table.item_ids)
        tree: Tree[NodeData] = Tree(f"all items  {rows:,}", NodeData(()), id=f"{self.id}-tree")
        tree.show_root = True
        yield tree
        yield Static("", classes="items-title", id=f"{self.id}-items-title")
        table: DataTable = DataTable(cursor_type="row", id=f"{self.id}-items")
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("item id", "SID", "title")
        root = self.tree.root
        self.load(root)
        root.expand()
        self.show_items(())

    @property
    def tree(self) -> Tree[NodeData]:
        return self.query_one(Tree)

    def load(self, node: TreeNode[NodeData]) -> None:
        """Add the node's child codes (once); full SIDs are leaves."""
        data = node.data
        if data is None or data.loaded:
            return
        data.loaded = True
        for child in self.browser.children(data.prefix):
            leaf = len(child.prefix) >= self.browser.levels
            node.add(node_label(child), NodeData(child.prefix), allow_expand=not leaf)

    def show_items(self, prefix: tuple[int, ...]) -> None:
        """List the items under ``prefix`` in the table below the tree."""
        if prefix == self.shown_prefix:
            return
        self.shown_prefix = prefix
        total = len(self.browser.rows(prefix))
        items = self.browser.items(prefix, ITEMS_SHOWN)
        more = f" (first {len(items):,})" if total > len(items) else ""
        self.query_one(".items-title", Static).update(
            f" {escape(self.browser.prefix_text(prefix))}: {total:,} item{'s' if total != 1 else ''}{more}")
        table = self.query_one(DataTable)
        table.clear()
        for item in items:
            table.add_row(item.item_id, item.sid, item.title, key=item.item_id)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeData]) -> None:
        self.load(event.node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeData]) -> None:
        if event.node.data is not None:
            self.show_items(event.node.data.prefix)

    def reveal(self, item_id: str) -> bool:
        """Open the tree down to the item's closest siblings (its deepest prefix shared with another item),
        list that prefix's items with the cursor on the item; False if this file does not hold it."""
        path = self.browser.path_of(item_id)
        if path is None:
            self.query_one(".items-title", Static).update(f" {escape(item_id)} is not in this file")
            return False
        target = self.browser.sibling_prefix(item_id)
        node = self.open_to(target)
        self.show_items(target)
        table = self.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(item_id))
        self.tree.call_after_refresh(self.tree.move_cursor, node)
        return True

    def open_to(self, prefix: tuple[int, ...]) -> TreeNode[NodeData]:
        """Load and expand the nodes down to ``prefix``; returns its node."""
        node = self.tree.root
        for depth in range(1, len(prefix) + 1):
            self.load(node)
            node.expand()
            node = next(c for c in node.children if c.data is not None and c.data.prefix == prefix[:depth])
        self.load(node)
        if node.allow_expand:
            node.expand()
        return node


class SidExplorer(App[None]):
    """Explore one or two tokenizations: code trees, items per prefix, title search."""

    TITLE = "uqf inspect-sids"
    CSS = """
    #results { height: auto; max-height: 10; display: none; }
    #results.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("slash", "search", "search titles"),
        Binding("escape", "back", "back to the tree"),
    ]

    def __init__(self, browsers: list[SidBrowser], start_item: str | None = None,
                 start_prefix: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.browsers = browsers
        self.start_item = start_item
        self.start_prefix = start_prefix
        self.sub_title = " vs ".join(b.name for b in browsers)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search item titles, Enter; then Enter on a result to jump to its prefix  (/)",
                    id="search")
        results: DataTable = DataTable(cursor_type="row", id="results")
        yield results
        with Horizontal():
            for n, browser in enumerate(self.browsers):
                yield SidPane(browser, n)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#results", DataTable).add_columns("item id", *(b.name for b in self.browsers), "title")
        self.query_one("#pane-0-tree", Tree).focus()
        if self.start_item is not None:
            self.call_after_refresh(self.jump, self.start_item)
        elif self.start_prefix:
            self.call_after_refresh(self.open_prefix, self.start_prefix)

    @property
    def panes(self) -> list[SidPane]:
        return list(self.query(SidPane))

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_back(self) -> None:
        self.query_one("#results", DataTable).remove_class("shown")
        self.query_one("#pane-0-tree", Tree).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Fill the results table with the items whose title matches (SIDs from every file)."""
        text = event.value.strip()
        results = self.query_one("#results", DataTable)
        results.clear()
        if not text:
            results.remove_class("shown")
            return
        found = self.browsers[0].search(text, RESULTS_SHOWN)
        for item in found:
            sids = [item.sid] + [self._sid_in(b, item.item_id) for b in self.browsers[1:]]
            results.add_row(item.item_id, *sids, item.title, key=item.item_id)
        self.notify(f"{len(found)} item(s) match {text!r}" + (" (first 200)" if len(found) == RESULTS_SHOWN
                                                               else ""))
        if found:
            results.add_class("shown")
            results.focus()

    @staticmethod
    def _sid_in(browser: SidBrowser, item_id: str) -> str:
        row = browser.row_of.get(item_id)
        return browser.item(row).sid if row is not None else "-"

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "results" and event.row_key.value is not None:
            self.jump(str(event.row_key.value))

    def jump(self, item_id: str) -> None:
        """Open every pane down to the item's prefix, cursor on it."""
        found = [pane.reveal(item_id) for pane in self.panes]
        if any(found):
            self.query_one("#pane-0-tree", Tree).focus()
        else:
            self.notify(f"unknown item {item_id!r}", severity="error")

    def open_prefix(self, prefix: tuple[int, ...]) -> None:
        """Open the first pane down to ``prefix`` (the ``--prefix`` start)."""
        pane = self.panes[0]
        node = pane.open_to(prefix)
        pane.show_items(prefix)
        pane.tree.call_after_refresh(pane.tree.move_cursor, node)

def explorer_app(inspections: list, item: str | None = None, prefix: tuple[int, ...] = ()) -> SidExplorer:
    """The explorer over one or two loaded tokenizations (:class:`~uqf_cli.evaluation.inspect_sids.Inspection`),
    starting at ``item`` (opened down to it) or ``prefix``."""
    return SidExplorer([SidBrowser(ins) for ins in inspections], item, prefix)
