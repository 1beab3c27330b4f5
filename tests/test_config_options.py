"""Options built from a config dataclass: names, order, defaults, negated flags, the built config."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass

import pytest
import typer
from typer.testing import CliRunner

from uqf_cli.cli.config_options import build_config, config_parameters
from uqf_cli.cli.options import RunOptions, command
from uqf_cli.core.config_field import comma_list, opt


@dataclass
class ToyConfig:
    width: int = opt(8, "Width.")
    rate: float = 0.5
    depth: int = opt(2, "Depth.", flag="--layers", panel="Model", before="width")
    gate: bool = opt(True, "Drop the gate.", flag="--no-gate")
    seed: int = 0
    device: str = "auto"


@dataclass
class ListConfig:
    hidden: list[int] = opt([4, 2])


def test_parameters_follow_field_order_with_before_and_flags():
    params = config_parameters(ToyConfig)
    assert [p.name for p in params] == ["depth", "width", "gate"]
    option = typing.get_args(params[0].annotation)[1]
    assert (option.help, option.rich_help_panel) == ("Depth.", "Model")  # the flag: see the command test
    assert [p.default for p in params] == [2, 8, False]  # --no-gate is off by default


def test_build_config_negates_and_takes_seed_and_device_from_the_run():
    values = {"width": 3, "depth": 5, "gate": True, "other": 1}
    cfg = build_config(ToyConfig, values, RunOptions(seed=7, device="cpu"))
    assert cfg == ToyConfig(width=3, rate=0.5, depth=5, gate=False, seed=7, device="cpu")
    assert values == {"other": 1}  # the config's values are taken out, the rest is left for the command
    assert list(asdict(cfg)) == ["width", "rate", "depth", "gate", "seed", "device"]  # field order kept


def test_list_defaults_are_not_shared_between_instances():
    ListConfig().hidden.append(1)
    assert ListConfig().hidden == [4, 2]


def test_a_command_receives_the_config_built_from_its_options():
    app = typer.Typer()
    seen: list[tuple[str, ToyConfig]] = []

    @command(app, "toy", "seed", "quiet")
    def toy(name: str = "x", cfg: ToyConfig = ToyConfig(), run: RunOptions = RunOptions()) -> None:
        seen.append((name, cfg))

    @app.command("other")
    def other() -> None:  # a second command keeps Typer from running "toy" as the whole app
        pass

    result = CliRunner().invoke(app, ["toy", "--layers", "4", "--no-gate", "--seed", "3", "--name", "y"])
    assert result.exit_code == 0, result.output
    assert seen == [("y", ToyConfig(width=8, depth=4, gate=False, seed=3))]


@dataclass
class CsvConfig:
    ks: tuple[int, ...] = opt((1, 5), "K values.", flag="--k", spelled=comma_list(int, tuple))
    names: list[str] | None = opt(None, "Names.", spelled=comma_list())
    top: int = opt(3, "How many.", short="-t", ge=1)


def test_comma_lists_and_short_aliases_come_from_the_field():
    app = typer.Typer()
    seen: list[CsvConfig] = []

    @command(app, "toy", "quiet")
    def toy(cfg: CsvConfig = CsvConfig(), run: RunOptions = RunOptions()) -> None:
        seen.append(cfg)

    @app.command("other")
    def other() -> None:
        pass

    runner = CliRunner()
    assert runner.invoke(app, ["toy"]).exit_code == 0
    assert seen[-1] == CsvConfig(ks=(1, 5), names=None, top=3)  # defaults kept as the field holds them
    assert runner.invoke(app, ["toy", "--k", "10, 20", "--names", "a,b", "-t", "7"]).exit_code == 0
    assert seen[-1] == CsvConfig(ks=(10, 20), names=["a", "b"], top=7)
    assert "1,5" in runner.invoke(app, ["toy", "--help"]).output  # the default, shown as it is typed
    bad = runner.invoke(app, ["toy", "--k", "1,x"])
    assert bad.exit_code == 2 and "--k: expected comma-separated integers" in bad.output


def _stage_configs() -> dict[str, type]:
    from uqf_cli.data.prepare import PrepareConfig
    from uqf_cli.embed import EmbedConfig
    from uqf_cli.evaluation import EvaluateConfig
    from uqf_cli.evaluation.inspect_sids import TreeView
    from uqf_cli.evaluation.recommend import RecommendConfig

    return {c.__name__: c for c in (PrepareConfig, EmbedConfig, EvaluateConfig, RecommendConfig, TreeView)}


@pytest.mark.parametrize("name", ["PrepareConfig", "EmbedConfig", "EvaluateConfig", "RecommendConfig", "TreeView"])
def test_stage_configs_refuse_out_of_range_values_naming_the_flag(name: str) -> None:
    """The library's validate() refuses what the CLI refuses, so a notebook call fails in the same one line."""
    from dataclasses import replace

    from uqf_cli.core.config_field import field_range, flag_of, option_fields
    from uqf_cli.core.errors import OptionError

    cls = _stage_configs()[name]
    cls().validate()
    ranged = [f for f in option_fields(cls) if field_range(f) is not None]
    assert ranged
    for f in ranged:
        allowed = field_range(f)
        outside = allowed.ge - 1 if allowed.ge is not None else allowed.gt if allowed.gt is not None else None
        if outside is None:
            continue
        with pytest.raises(OptionError, match=f.metadata.get("flag") or flag_of(f)):
            replace(cls(), **{f.name: outside}).validate()
