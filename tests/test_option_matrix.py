"""Every numeric option of every command, every --device and every UQF_* variable, walked from the app itself.

Nothing here lists options by hand: the cases come from ``typer.main.get_command(app)`` (Click's view of
every command and parameter), from each command's declared ranges (``number_options``, built by
``uqf_cli.cli.options.shared_options``) and from ``uqf_cli.core.env.ENV_VARS``. An option or a variable
added later is covered without a new test, and one added without a declared range fails
``test_every_numeric_option_declares_its_range``.

Each case runs the real entry point (``uqf_cli.cli.run``) in an empty working directory whose required
inputs do not even exist: the refusal must come before any file is read or written. The checks: exit
code 2, exactly one line on stderr naming the option (or variable), no traceback, no file created.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import typer

from uqf_cli.cli import app, run
from uqf_cli.cli.option_checks import NumberOption
from uqf_cli.core.bounds import Range
from uqf_cli.core.env import ENV_VARS, machine_cpus

ROOT = typer.main.get_command(app)
COMMANDS = dict(ROOT.commands)


def _numeric_params() -> list[tuple[str, object]]:
    """(command, Click parameter) for every int or float option of every command (flags excluded)."""
    found = []
    for name, cmd in COMMANDS.items():
        for p in cmd.params:
            annotation = p.type_descriptor.annotation
            if annotation in (int, float) and not getattr(p, "is_flag", False):
                found.append((name, p))
    return found


NUMERIC = _numeric_params()
DEVICE_OPTIONS = sorted((name, flag) for name, cmd in COMMANDS.items() for p in cmd.params for flag in p.opts
                        if flag in ("--device", "--devices"))


def _declared(command: str) -> dict[str, NumberOption]:
    """The numeric options ``shared_options`` checks for ``command`` (none for a command registered around it)."""
    return getattr(COMMANDS[command].callback, "number_options", {})


def _required_args(command: str, work: Path) -> list[str]:
    """Values for the command's required parameters: paths inside ``work`` that do not exist, or a word."""
    args: list[str] = []
    for p in COMMANDS[command].params:
        if not p.required:
            continue
        value = str(work / f"missing_{p.name}") if p.type_descriptor.annotation is Path else "x"
        args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return args


def _outside(allowed: Range, kind: type) -> list[str]:
    """Values just outside each declared bound."""
    step = 1 if kind is int else 0.5
    values = []
    if allowed.ge is not None:
        values.append(allowed.ge - step)
    if allowed.gt is not None:
        values.append(allowed.gt)
    if allowed.le is not None:
        values.append(allowed.le + step)
    if allowed.lt is not None:
        values.append(allowed.lt)
    return [str(kind(v)) for v in values]


def _bad_values(spec: NumberOption) -> list[str]:
    values = ["nan", "inf", "-inf", *_outside(spec.allowed, spec.kind)]
    if spec.kind is int:
        values += [str(2**64), str(-(2**64)), "1.5"]
    else:
        values += ["1e999", "-1e999"]  # overflow to +-inf when parsed
    return values


def _assert_refused(capsys: pytest.CaptureFixture[str], work: Path, argv: list[str], named: str) -> None:
    code = run(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, f"{argv}: exit {code}\n{captured.err}"
    assert len(lines) == 1, f"{argv}: expected one line on stderr, got:\n{captured.err}"
    assert named in lines[0], f"{argv}: {named!r} not in {lines[0]!r}"
    assert "Traceback" not in captured.err + captured.out
    assert not list(work.iterdir()), f"{argv}: left {sorted(p.name for p in work.iterdir())}"


def test_the_walk_finds_the_commands_and_their_numbers() -> None:
    """The walk itself cannot come back empty (which would make the matrix below vacuous)."""
    assert {"train-gcn", "fuse", "quantize", "train-rec"} <= {c for c, _ in NUMERIC}
    assert len(NUMERIC) >= 60
    assert {"embed-text", "train-gcn", "train-rec", "evaluate", "recommend", "demo"} <= {c for c, _ in DEVICE_OPTIONS}


@pytest.mark.parametrize(("command", "param"), NUMERIC, ids=[f"{c}{p.opts[0]}" for c, p in NUMERIC])
def test_every_numeric_option_declares_its_range(command: str, param) -> None:
    spec = _declared(command).get(param.name)
    assert spec is not None, f"{command} {param.opts[0]} is numeric but not checked"
    assert spec.allowed.declared, f"{command} {param.opts[0]}: declare its range (min=/max=, Range or opt(ge=...))"
    assert spec.flag in param.opts


@pytest.mark.parametrize(("command", "param"), NUMERIC, ids=[f"{c}{p.opts[0]}" for c, p in NUMERIC])
def test_numeric_option_refuses_non_finite_oversized_and_out_of_range_values(
        command: str, param, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = _declared(command)[param.name]
    for value in _bad_values(spec):
        _assert_refused(capsys, work, [command, *_required_args(command, work), f"{spec.flag}={value}"], spec.flag)
    # the same with the value as a separate word (a negative number must not read as an option)
    _assert_refused(capsys, work, [command, *_required_args(command, work), spec.flag, "-inf"], spec.flag)


@pytest.mark.parametrize(("command", "param"), NUMERIC, ids=[f"{c}{p.opts[0]}" for c, p in NUMERIC])
def test_the_declared_bounds_themselves_pass_the_check(command: str, param) -> None:
    """The range check is not stricter than declared: each closed bound (or a value next to an open one) passes."""
    from uqf_cli.cli.option_checks import check_values

    spec = _declared(command)[param.name]
    a = spec.allowed
    inside = [v for v in (a.ge, a.le) if v is not None]
    inside += [a.gt + (1 if spec.kind is int else 1e-6)] if a.gt is not None else []
    inside += [a.lt - (1 if spec.kind is int else 1e-6)] if a.lt is not None else []
    for v in inside:
        check_values({param.name: spec.kind(v)}, {param.name: spec})


def _unavailable_devices() -> list[str]:
    """Device names this machine does not have (what a user may type from the docs)."""
    names = ["tpu", "cuda:-1", "gpu"]
    if not torch.cuda.is_available():
        names += ["cuda", "cuda:0"]
    names.append(f"cuda:{max(torch.cuda.device_count(), 7)}")
    if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        names.append("mps")
    return names


@pytest.mark.parametrize(("command", "flag"), DEVICE_OPTIONS, ids=[f"{c}{f}" for c, f in DEVICE_OPTIONS])
def test_an_unavailable_device_is_refused_in_one_line(command: str, flag: str, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for device in _unavailable_devices():
        value = f"cpu,{device}" if flag == "--devices" else device
        _assert_refused(capsys, tmp_path, [command, *_required_args(command, tmp_path), flag, value], flag)


def _bad_env_values(kind: type, allowed: Range | None) -> list[str]:
    if kind is bool:
        return ["maybe", "2", "enabled"]
    values = ["abc", "nan", "inf", "-inf", "1e999"] + (["2.5", str(2**64)] if kind is int else [])
    return values + (_outside(allowed, kind) if allowed is not None and allowed.declared else [])


ENV_CASES = [(name, value) for name, var in ENV_VARS.items() for value in _bad_env_values(var.kind, var.allowed)]


@pytest.mark.parametrize(("name", "value"), ENV_CASES, ids=[f"{n}={v}" for n, v in ENV_CASES])
def test_a_garbage_environment_variable_is_refused_in_one_line(name: str, value: str, tmp_path: Path,
                                                               monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    for command in COMMANDS:
        _assert_refused(capsys, tmp_path, [command, *_required_args(command, tmp_path)], name)


def test_every_uqf_variable_the_code_reads_is_declared() -> None:
    """A ``UQF_*`` name in the package's source that ENV_VARS lacks would escape the checks above."""
    package = Path(__file__).resolve().parents[1] / "uqf_cli"
    used = {m for f in package.rglob("*.py") for m in re.findall(r"\bUQF_[A-Z_]+\b", f.read_text())}
    assert used, "the scan found no variable at all"
    assert used <= set(ENV_VARS), f"read but not declared in uqf_cli.core.env.ENV_VARS: {sorted(used - set(ENV_VARS))}"


def test_threads_beyond_the_machine_are_clamped_with_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    from uqf_cli.core.env import threads

    monkeypatch.setenv("UQF_THREADS", str(machine_cpus() * 1000))
    assert threads() == machine_cpus()
    assert "is more than this machine's" in capsys.readouterr().err
    monkeypatch.setenv("UQF_THREADS", "1")
    assert threads() == 1 and capsys.readouterr().err == ""


def test_a_clamped_thread_count_still_runs_the_command(tmp_path: Path, monkeypatch, capsys) -> None:
    """The whole command goes on after the warning (the value that crashed torch never reaches it)."""
    before = torch.get_num_threads()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UQF_THREADS", "100000")
    try:
        code = run(["prepare", "builtin:office", "-o", str(tmp_path / "ds"), "-q"])
        assert code == 0, capsys.readouterr().err
        assert torch.get_num_threads() == min(machine_cpus(), 100000)
        assert "UQF_THREADS=100000" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)



def _library_configs() -> list[tuple[str, object]]:
    """(name, default instance) of the option dataclasses library callers build directly."""
    from uqf_cli.quantize import QuantizeConfig
    from uqf_cli.rec.lcrec.options import LcRecOptions
    from uqf_cli.rec.sasrec import SasRecOptions
    from uqf_cli.rec.tiger.options import TigerOptions

    return [("quantize", QuantizeConfig()), ("tiger", TigerOptions()), ("lcrec", LcRecOptions()),
            ("sasrec", SasRecOptions())]


@pytest.mark.parametrize("config_class", ["GcnConfig", "FuseOptions"])
def test_option_dataclasses_check_their_declared_ranges_for_library_callers(config_class: str) -> None:
    """``opt(..., ge=...)`` fields: validate() refuses NaN and out-of-range values naming the flag, as the CLI."""
    from dataclasses import replace

    from uqf_cli.collab.config import GcnConfig
    from uqf_cli.core.config_field import field_range, flag_of, option_fields
    from uqf_cli.core.errors import OptionError
    from uqf_cli.fuse import FuseOptions

    cls = {"GcnConfig": GcnConfig, "FuseOptions": FuseOptions}[config_class]
    checked = 0
    for f in option_fields(cls):
        allowed = field_range(f)
        if allowed is None:
            continue
        kind = type(getattr(cls(), f.name))
        for bad in [*(["nan", "inf"] if kind is float else []), *_outside(allowed, kind)]:
            with pytest.raises(OptionError, match=re.escape(flag_of(f))):
                replace(cls(), **{f.name: kind(bad)}).validate()
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("name", ["quantize", "tiger", "lcrec", "sasrec"])
def test_backbone_and_quantizer_options_refuse_non_finite_floats(name: str) -> None:
    from dataclasses import fields, replace

    from uqf_cli.core.errors import OptionError

    config = dict(_library_configs())[name]
    floats = [f.name for f in fields(config) if isinstance(getattr(config, f.name), float)]
    assert floats
    for field_name in floats:
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(OptionError, match="finite"):
                replace(config, **{field_name: bad}).validate()


def test_an_allocation_beyond_the_machine_is_one_line_not_a_traceback(capsys) -> None:
    """How much fits depends on the machine (``quantize --hidden 99999999999`` asks torch for 143,051 GiB): the
    allocator's error becomes one line; any other RuntimeError stays a traceback (a bug must not pass as input)."""
    from uqf_cli.cli.common import cli_command

    def failing(exc: BaseException):
        @cli_command
        def command() -> None:
            raise exc

        return command

    message = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
               "to allocate 153599999998464 bytes. Error code 12 (Cannot allocate memory)")
    with pytest.raises(typer.Exit) as stopped:
        failing(RuntimeError(message))()
    assert stopped.value.exit_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: out of memory: 143,051.1 GiB were asked for (lower the sizes or the batch size asked for)"]
    with pytest.raises(RuntimeError, match="shape mismatch"):
        failing(RuntimeError("shape mismatch"))()
