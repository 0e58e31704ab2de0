"""Named eval configs: built-ins, config files (JSON and YAML), selection."""

import json
from pathlib import Path

import pytest

from eval.configs import BUILTIN_CONFIGS, DEFAULT_CONFIGS, read_config_file, select_configs
from eval.errors import ConfigError


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_builtins_cover_the_four_defaults():
    assert DEFAULT_CONFIGS == ("hybrid-rrf", "hybrid", "lexical", "dense")
    assert BUILTIN_CONFIGS["hybrid-convex"].params == {
        "fusion": "convex",
        "lexical_weight": 0.5,
        "lexical_stopwords": False,
        "speaker_weight": 0.0,
        "neighbour_weight": 0.0,
        "window_weight": 0.0,
        "dense_speaker_scope": False,
        "question_weight": 1.0,
        "temporal_weight": 1.0,
    }
    assert [c.name for c in select_configs(["ablation"], {})][:2] == ["hybrid-rrf", "hybrid"]
    assert BUILTIN_CONFIGS["lexical"].mode == "lexical"
    assert all(c.budget_ms == 1000.0 for c in BUILTIN_CONFIGS.values())
    assert [c.name for c in select_configs(None, {})] == list(DEFAULT_CONFIGS)


def test_file_overrides_a_builtin_and_adds_a_config(tmp_path):
    path = write(
        tmp_path / "c.json",
        {
            "configs": {
                "hybrid-convex": {"lexical_weight": 0.3},
                "rrf-k20": {"mode": "hybrid", "fusion": "rrf", "rrf_k": 20, "budget_ms": 200},
                "no-dedupe": {"mode": "dense", "dedupe_threshold": None},
            }
        },
    )
    configs = read_config_file(path)
    assert configs["hybrid-convex"].params == {
        **BUILTIN_CONFIGS["hybrid-convex"].params,
        "lexical_weight": 0.3,
    }
    assert configs["rrf-k20"].params == {"fusion": "rrf", "rrf_k": 20}
    assert configs["rrf-k20"].budget_ms == 200.0
    assert configs["no-dedupe"].params == {"dedupe_threshold": None}
    chosen = select_configs(None, configs)
    assert [c.name for c in chosen] == [*DEFAULT_CONFIGS, "hybrid-convex", "rrf-k20", "no-dedupe"]
    assert chosen[4].params["lexical_weight"] == 0.3
    assert [c.name for c in select_configs(["rrf-k20", "lexical"], configs)] == [
        "rrf-k20",
        "lexical",
    ]


def test_yaml_config_file(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("configs:\n  mine:\n    mode: lexical\n    candidates: 50\n", encoding="utf-8")
    assert read_config_file(path)["mine"].params == {"candidates": 50}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"configs": {"x": {"fusion": "rrf"}}}, "needs a mode"),
        ({"configs": {"x": {"mode": "fuzzy"}}}, "mode must be"),
        ({"configs": {"hybrid": {"rrf_k": 0}}}, "rrf_k"),
        ({"configs": {"hybrid": {"rrf_k": 2.5}}}, "integer"),
        ({"configs": {"hybrid": {"lexical_weight": 1.5}}}, "lexical_weight"),
        ({"configs": {"hybrid": {"lexical_weight": True}}}, "lexical_weight"),
        ({"configs": {"hybrid": {"fusion": "max"}}}, "fusion"),
        ({"configs": {"hybrid": {"colour": 1}}}, "unknown parameter"),
        ({"configs": {"bad name": {"mode": "dense"}}}, "config name"),
        ({"configs": {}}, "expected"),
        ({"presets": {}}, "expected"),
        ([], "expected"),
    ],
)
def test_bad_config_files(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        read_config_file(write(tmp_path / "c.json", data))


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_file(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_config_file(tmp_path / "broken.json")


def test_unknown_and_repeated_names():
    with pytest.raises(ConfigError, match="unknown config"):
        select_configs(["lexical", "bm42"], {})
    with pytest.raises(ConfigError, match="twice"):
        select_configs(["lexical", "lexical"], {})
