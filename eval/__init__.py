"""eval: relevance metrics (per query, ranx style), datasets, runs, significance and reports.

Imports numpy, the standard library and ``indexer``'s domain types (never ``query_service``
or ``convmem``); matplotlib and PyYAML are imported only when a report or a YAML config
file needs them.
"""

from eval.average_precision import average_precision
from eval.configs import BUILTIN_CONFIGS, EvalConfig, read_config_file, select_configs
from eval.dataset import Dataset, EvalQuery
from eval.errors import ConfigError, DatasetError, EvalError, ResultsError
from eval.hit_rate import hit_rate
from eval.jsonl_dataset import read_jsonl_dataset, write_jsonl_dataset
from eval.locomo import read_locomo_dataset
from eval.metrics import evaluate, mean, parse_metric
from eval.mrr import reciprocal_rank
from eval.ndcg import ndcg
from eval.precision import precision
from eval.recall import recall
from eval.runner import ConfigRun, RetrievedList, Retriever, run_all
from eval.significance import paired_randomization_test, paired_randomization_tests
from eval.trec import read_qrels, read_run, write_qrels, write_run
from eval.ttest import paired_t_test

__all__ = [
    "BUILTIN_CONFIGS",
    "ConfigError",
    "ConfigRun",
    "Dataset",
    "DatasetError",
    "EvalConfig",
    "EvalError",
    "EvalQuery",
    "ResultsError",
    "RetrievedList",
    "Retriever",
    "average_precision",
    "evaluate",
    "hit_rate",
    "mean",
    "ndcg",
    "paired_randomization_test",
    "paired_randomization_tests",
    "paired_t_test",
    "parse_metric",
    "precision",
    "read_config_file",
    "read_jsonl_dataset",
    "read_locomo_dataset",
    "read_qrels",
    "read_run",
    "recall",
    "reciprocal_rank",
    "run_all",
    "select_configs",
    "write_jsonl_dataset",
    "write_qrels",
    "write_run",
]
