"""Plug-ins by import path: user functions that extend the RF rules (`reward.extra_rules`) and
the local judge's rubric heuristics (`judge.extra_items[].heuristic`) without a package edit.

A spec is `package.module:function` (the module must be importable wherever it runs:
installed, on PYTHONPATH, or shipped with a Ray job's `working_dir` / `py_modules`; the
rule-checker actors rebuild their config, and so import the module, in their own process)
or `path/to/file.py:function` (resolved to an absolute path at config load; the file must
exist at that path on every node, so it suits one machine or shared storage).

Ground floor on purpose: the config validators resolve specs here, so a bad import path or
a wrong signature fails at config load; the rule registry (reward_actors/rules) reads the
plug-in rules registered here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# name -> function of every plug-in rule a config of this process has loaded. The config is
# validated again in each rule-checker actor, which fills this registry in that process.
PLUGIN_RULES: dict[str, Callable[..., Any]] = {}
PLUGIN_RULE_SPECS: dict[str, str] = {}  # name -> the spec it came from (error messages)

_SHIP_HINT = "install it, put it on PYTHONPATH, or ship it with the Ray job's working_dir / py_modules"


class PluginError(ValueError):
    """A spec cannot be used; the message is one line naming the spec and the reason."""


def split_spec(spec: str) -> tuple[str, str]:
    """(module or file, function name) of `module:function` / `file.py:function`."""
    if not isinstance(spec, str):
        raise PluginError(f"{spec!r}: expected a string 'package.module:function'")
    target, sep, attr = spec.strip().rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise PluginError(f"{spec!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    return target, attr


def canonical_spec(spec: str) -> str:
    """The spec with a file path made absolute (so it means the same in every process)."""
    target, attr = split_spec(spec)
    if target.endswith(".py"):
        return f"{Path(target).expanduser().resolve()}:{attr}"
    return f"{target}:{attr}"


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise PluginError(f"{spec!r}: file {path} not found")
    # one module per file path, cached, so validating a config again does not re-run the file
    name = f"repo_ray_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise PluginError(f"{spec!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise PluginError(f"{spec!r}: importing {path} failed: {type(err).__name__}: {_first_line(err)}") from None
    return module


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""


def resolve(spec: str, params: tuple[str, ...], what: str) -> Callable[..., Any]:
    """The function a spec names, checked to be callable as `fn(*params)` (the names are for
    the message). Raises PluginError with a one-line reason."""
    target, attr = split_spec(spec)
    if target.endswith(".py"):
        module = _import_file(Path(target).expanduser().resolve(), spec)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            missing = err.name or target
            raise PluginError(f"{spec!r}: cannot import {target!r} (no module named {missing!r}; {_SHIP_HINT})") \
                from None
        except Exception as err:  # the user's module raised while importing
            raise PluginError(f"{spec!r}: importing {target!r} failed: {type(err).__name__}: {_first_line(err)}") \
                from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise PluginError(f"{spec!r}: module {target!r} has no attribute {attr!r}")
    if not callable(fn):
        raise PluginError(f"{spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn  # a builtin without a signature: trust it
    try:
        sig.bind(*params)
    except TypeError:
        has = ", ".join(str(p).split(":")[0].split("=")[0] for p in sig.parameters.values())
        raise PluginError(f"{spec!r}: {attr}({has}) cannot be called as {attr}({', '.join(params)}), "
                          f"the signature of {what}") from None
    return fn


def plugin_rule_name(spec: str) -> str:
    """The rule name of a plug-in rule: its function's name."""
    return split_spec(spec)[1]


def load_rules(specs: list[str], builtin: dict[str, str]) -> list[str]:
    """Resolve and register plug-in rules; returns the canonical specs. Each must be callable
    as fn(response, ctx); its name (the function's) must not shadow a built-in rule or repeat."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for spec in specs:
        canon = canonical_spec(spec)
        name = plugin_rule_name(canon)
        if name in builtin:
            raise PluginError(f"{spec!r}: the rule name {name!r} is a built-in rule's")
        if name in seen:
            raise PluginError(f"{spec!r}: the rule name {name!r} is already taken by {seen[name]!r}")
        fn = resolve(canon, ("response", "ctx"), "an RF rule")
        bonus = getattr(fn, "bonus", 0.0)
        if isinstance(bonus, bool) or not isinstance(bonus, (int, float)) or not math.isfinite(bonus) or bonus < 0:
            raise PluginError(f"{spec!r}: its `bonus` attribute must be a number >= 0, got {bonus!r}")
        seen[name] = canon
        PLUGIN_RULES[name] = fn  # the last config loaded in a process wins a name
        PLUGIN_RULE_SPECS[name] = canon
        out.append(canon)
    return out


def resolve_heuristic(spec: str) -> Callable[..., Any]:
    """A rubric item's scoring callable for the local heuristic judge: fn(payload)."""
    return resolve(canonical_spec(spec), ("payload",), "a rubric item heuristic")
