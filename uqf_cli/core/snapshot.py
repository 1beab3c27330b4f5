"""One training loop's full state as safetensors tensors + JSON (no pickle): module weights, optimizer
state flattened into tensors, scheduler state, every random-number generator the loop draws from, and the
loop's own counters. Restoring it makes a resumed run continue exactly where the saved one stopped."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return t.detach().to("cpu").clone().contiguous()


def flatten_optimizer(prefix: str, state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors named ``<prefix>.<param>.<key>`` and a JSON part."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param}.{key}"] = _cpu_copy(value)
            else:
                scalars.setdefault(str(param), {})[key] = value
    groups = []
    for group in state_dict["param_groups"]:
        if any(isinstance(v, torch.Tensor) for v in group.values()):
            raise TypeError("optimizer param_groups holding tensors (tensor lr) cannot be checkpointed")
        groups.append(dict(group))
    return tensors, {"param_groups": groups, "scalars": scalars, "params": [str(p) for p in state_dict["state"]]}


def unflatten_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for name, t in tensors.items():
        if not name.startswith(head):
            continue
        param, key = name[len(head):].split(".", 1)
        state.setdefault(int(param), {})[key] = t
    for param, entries in meta.get("scalars", {}).items():
        state.setdefault(int(param), {}).update(entries)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def _rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global generators' states: torch CPU (+ CUDA), NumPy, Python ``random``."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for k, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{k}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def _restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))



@dataclass
class Snapshot:
    """A training loop's full state at an epoch boundary, as tensors + JSON."""

    epoch: int
    step: int = 0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(
        cls,
        epoch: int,
        *,
        step: int = 0,
        modules: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        numpy_generators: Mapping[str, np.random.Generator] | None = None,
        tensors: Mapping[str, torch.Tensor] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Copy the state of live objects. ``tensors`` are the loop's own (e.g. best weights, as
        ``{"best.<param>": t}``); ``state`` is JSON-able bookkeeping (best metric, curve, counters)."""
        out: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"optimizers": {}, "schedulers": {}, "modules": [], "generators": [],
                                "numpy_generators": {}}
        for name, module in (modules or {}).items():
            for key, t in module.state_dict().items():
                out[f"module.{name}.{key}"] = _cpu_copy(t)
            meta["modules"].append(name)
        for name, opt in (optimizers or {}).items():
            flat, opt_meta = flatten_optimizer(f"optim.{name}", opt.state_dict())
            out.update(flat)
            meta["optimizers"][name] = opt_meta
        for name, sched in (schedulers or {}).items():
            meta["schedulers"][name] = sched.state_dict()
        for name, gen in (generators or {}).items():
            out[f"generator.{name}"] = gen.get_state()
            meta["generators"].append(name)
        for name, np_gen in (numpy_generators or {}).items():
            meta["numpy_generators"][name] = np_gen.bit_generator.state  # plain dict of (big) ints
        for name, t in (tensors or {}).items():
            out[f"tensor.{name}"] = _cpu_copy(t)
        rng_tensors, meta["rng"] = _rng_states()
        out.update(rng_tensors)
        return cls(epoch=epoch, step=step, tensors=out, meta=meta, state=dict(state or {}))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The loop's own tensors (``tensors=`` of :meth:`capture`), by their names."""
        return {k[len("tensor."):]: v for k, v in self.tensors.items() if k.startswith("tensor.")}

    def restore(
        self,
        *,
        modules: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, Any] | None = None,
        generators: Mapping[str, torch.Generator] | None = None,
        numpy_generators: Mapping[str, np.random.Generator] | None = None,
    ) -> None:
        """Load the saved state into live objects (same names as at capture) and reset the global RNGs."""
        for name, module in (modules or {}).items():
            head = f"module.{name}."
            sd = {k[len(head):]: v for k, v in self.tensors.items() if k.startswith(head)}
            module.load_state_dict(sd)
        for name, opt in (optimizers or {}).items():
            sd = unflatten_optimizer(f"optim.{name}", self.tensors, self.meta["optimizers"][name])
            opt.load_state_dict(sd)  # moves state tensors to each parameter's device
        for name, sched in (schedulers or {}).items():
            sched.load_state_dict(dict(self.meta["schedulers"][name]))
        for name, gen in (generators or {}).items():
            gen.set_state(self.tensors[f"generator.{name}"])
        for name, np_gen in (numpy_generators or {}).items():
            np_gen.bit_generator.state = self.meta["numpy_generators"][name]
        _restore_rng(self.tensors, self.meta["rng"])
