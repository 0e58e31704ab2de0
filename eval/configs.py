"""Named search configurations to evaluate: a mode plus overrides of the search parameters.

A config file (JSON, or YAML with PyYAML installed) adds configs or overrides built-in ones:

.. code-block:: yaml

    configs:
      hybrid-convex:          # a built-in: only the fields given change
        lexical_weight: 0.3
      rrf-k20:                # a new config: "mode" is required
        mode: hybrid
        fusion: rrf
        rrf_k: 20

Parameters (all optional; unset means the engine's configured value): ``fusion`` ("rrf",
"convex", or "server-rrf": fused by a tier that can, Milvus), ``rrf_k``,
``lexical_weight``, ``candidates``, ``context_turns``,
``dedupe_threshold`` (null turns near-duplicate collapsing off), the ranking stages
``lexical_stopwords`` (true/false), ``speaker_weight`` (0 off), ``neighbour_weight`` (0 off),
``neighbour_window``, ``neighbour_top``, ``mmr_lambda`` (null off), ``window_weight`` (0 off),
``dense_speaker_scope`` and ``dense_first_person`` (true/false), ``question_weight`` and
``temporal_weight`` (1 off), and ``budget_ms`` (the
latency budget of each query, 1000 by default so relevance is measured unhurried).
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

from eval.errors import ConfigError

Mode = Literal["hybrid", "lexical", "dense"]
ParamValue = str | int | float | bool | None
DEFAULT_BUDGET_MS = 1000.0
_MODES: dict[str, Mode] = {"hybrid": "hybrid", "lexical": "lexical", "dense": "dense"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class EvalConfig:
    name: str
    mode: Mode
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    budget_ms: float = DEFAULT_BUDGET_MS

    def as_dict(self) -> dict[str, ParamValue]:
        return {"mode": self.mode, **self.params, "budget_ms": self.budget_ms}


#: Every ranking stage off: the retrieval as it stood before the relevance work (issue 5).
PLAIN: dict[str, ParamValue] = {
    "lexical_stopwords": False,
    "speaker_weight": 0.0,
    "neighbour_weight": 0.0,
    "window_weight": 0.0,
    "dense_speaker_scope": False,
    "question_weight": 1.0,
    "temporal_weight": 1.0,
}

BUILTIN_CONFIGS: dict[str, EvalConfig] = {
    c.name: c
    for c in (
        # the engine's configured ranking (its defaults are the tuned, served configuration)
        EvalConfig("lexical", "lexical"),
        EvalConfig("dense", "dense"),
        EvalConfig("hybrid", "hybrid"),
        # baselines: every stage off
        EvalConfig("hybrid-rrf", "hybrid", {"fusion": "rrf", "rrf_k": 60, **PLAIN}),
        EvalConfig("hybrid-convex", "hybrid", {"fusion": "convex", "lexical_weight": 0.5, **PLAIN}),
        EvalConfig("lexical-plain", "lexical", dict(PLAIN)),
        # ablations: the served configuration with one stage off or changed
        EvalConfig("hybrid-no-stopwords", "hybrid", {"lexical_stopwords": False}),
        EvalConfig("hybrid-no-speaker", "hybrid", {"speaker_weight": 0.0}),
        EvalConfig("hybrid-no-neighbours", "hybrid", {"neighbour_weight": 0.0}),
        EvalConfig("hybrid-no-window", "hybrid", {"window_weight": 0.0}),
        EvalConfig("hybrid-no-speaker-dense", "hybrid", {"dense_speaker_scope": False}),
        EvalConfig("hybrid-no-first-person", "hybrid", {"dense_first_person": False}),
        EvalConfig("hybrid-no-question-prior", "hybrid", {"question_weight": 1.0}),
        EvalConfig("hybrid-no-temporal", "hybrid", {"temporal_weight": 1.0}),
        EvalConfig("hybrid-equal-weights", "hybrid", {"lexical_weight": 0.5}),
        EvalConfig("hybrid-rrf-fusion", "hybrid", {"fusion": "rrf"}),
        EvalConfig("hybrid-mmr", "hybrid", {"mmr_lambda": 0.85}),
    )
}
#: The first is the baseline that significance tests compare against.
DEFAULT_CONFIGS = ("hybrid-rrf", "hybrid", "lexical", "dense")
#: ``--config ablation``: every stage on and off, against the same baseline.
ABLATION_CONFIGS = (
    "hybrid-rrf",
    "hybrid",
    "hybrid-no-stopwords",
    "hybrid-no-speaker",
    "hybrid-no-neighbours",
    "hybrid-no-window",
    "hybrid-no-speaker-dense",
    "hybrid-no-first-person",
    "hybrid-no-question-prior",
    "hybrid-no-temporal",
    "hybrid-equal-weights",
    "hybrid-rrf-fusion",
    "hybrid-mmr",
    "hybrid-convex",
    "lexical-plain",
    "lexical",
    "dense",
)
GROUPS = {"ablation": ABLATION_CONFIGS, "default": DEFAULT_CONFIGS}


def _number(lo: float, hi: float, *, integer: bool = False) -> Callable[[object], ParamValue]:
    def check(value: object) -> ParamValue:
        kind = numbers.Integral if integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            number = None
        else:
            number = int(value) if integer else float(value)  # type: ignore[call-overload]  # checked Real
        if number is None or not lo <= number <= hi:
            what = "an integer" if integer else "a number"
            raise ValueError(f"must be {what} in [{lo:g}, {hi:g}], got {value!r}")
        return number

    return check


FUSIONS = ("rrf", "convex", "server-rrf")


def _fusion(value: object) -> ParamValue:
    if value not in FUSIONS:
        raise ValueError(f"must be one of {', '.join(FUSIONS)}, got {value!r}")
    return str(value)


def _flag(value: object) -> ParamValue:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _threshold(value: object) -> ParamValue:
    return None if value is None else _number(1e-9, 1.0)(value)


def _optional_number(lo: float, hi: float) -> Callable[[object], ParamValue]:
    def check(value: object) -> ParamValue:
        return None if value is None else _number(lo, hi)(value)

    return check


PARAMS: dict[str, Callable[[object], ParamValue]] = {
    "fusion": _fusion,
    "rrf_k": _number(1, 10_000, integer=True),
    "lexical_weight": _number(0.0, 1.0),
    "candidates": _number(1, 1000, integer=True),
    "context_turns": _number(0, 20, integer=True),
    "dedupe_threshold": _threshold,
    "lexical_stopwords": _flag,
    "speaker_weight": _number(0.0, 10.0),
    "neighbour_weight": _number(0.0, 1.0),
    "neighbour_window": _number(1, 10, integer=True),
    "neighbour_top": _number(1, 1000, integer=True),
    "mmr_lambda": _optional_number(0.0, 1.0),
    "window_weight": _number(0.0, 1.0),
    "dense_speaker_scope": _flag,
    "dense_first_person": _flag,
    "question_weight": _number(0.0, 1.0),
    "temporal_weight": _number(0.0, 1.0),
}


def config_from_dict(name: str, d: Mapping[str, object], base: EvalConfig | None) -> EvalConfig:
    """Build config ``name`` from a file's entry, on top of ``base`` (a built-in) if any."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"config name {name!r}: use letters, digits, '.', '_' and '-'")
    if not isinstance(d, Mapping):
        raise ConfigError(f"config {name!r} must be a mapping of parameters")
    unknown = sorted(set(d) - {"mode", "budget_ms", *PARAMS})
    if unknown:
        known = ", ".join(["mode", "budget_ms", *PARAMS])
        raise ConfigError(f"config {name!r}: unknown parameter(s) {unknown}; known: {known}")
    if base is None and "mode" not in d:
        raise ConfigError(f"config {name!r} is new, so it needs a mode (hybrid|lexical|dense)")
    config = base or EvalConfig(name, "hybrid")
    try:
        mode = d.get("mode", config.mode)
        if mode not in _MODES:
            raise ValueError(f"mode must be hybrid, lexical or dense, got {mode!r}")
        try:
            budget = _number(1.0, 10_000.0)(d.get("budget_ms", config.budget_ms))
        except ValueError as exc:
            raise ValueError(f"budget_ms {exc}") from exc
        params = dict(config.params)
        for key, check in PARAMS.items():
            if key in d:
                try:
                    params[key] = check(d[key])
                except ValueError as exc:
                    raise ValueError(f"{key} {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"config {name!r}: {exc}") from exc
    return replace(
        config, name=name, mode=_MODES[str(mode)], params=params, budget_ms=cast(float, budget)
    )


def read_config_file(path: Path) -> dict[str, EvalConfig]:
    """The configs of a JSON or YAML file, each merged onto the built-in of its name."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    data = _parse(path, text)
    if not isinstance(data, dict) or set(data) != {"configs"} or not data["configs"]:
        raise ConfigError(f'{path}: expected {{"configs": {{NAME: {{PARAMETER: VALUE}}}}}}')
    entries = data["configs"]
    if not isinstance(entries, dict):
        raise ConfigError(f'{path}: "configs" must map names to parameters')
    try:
        return {
            str(n): config_from_dict(str(n), d, BUILTIN_CONFIGS.get(str(n)))
            for n, d in entries.items()
        }
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _parse(path: Path, text: str) -> object:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{path}: YAML needs PyYAML (pip install 'convmem[eval]')") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc


def select_configs(
    names: Sequence[str] | None,
    from_file: Mapping[str, EvalConfig],
    defaults: Sequence[str] = DEFAULT_CONFIGS,
) -> list[EvalConfig]:
    """The configs to run, in order (the first is the baseline of significance tests).

    ``names`` picks configs by name (``ablation`` and ``default`` name groups); without it,
    ``defaults`` then the file's new configs.
    """
    available = {**BUILTIN_CONFIGS, **from_file}
    if names is not None:
        names = [m for n in names for m in GROUPS.get(n, (n,))]
    if names is None:
        names = [*defaults, *(n for n in from_file if n not in defaults)]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"unknown config(s) {unknown}; known: {', '.join(available)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"a config is named twice in {list(names)}")
    return [available[n] for n in names]
