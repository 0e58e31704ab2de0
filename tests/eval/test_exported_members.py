import subprocess
import sys
import types
from pathlib import Path

import eval as eval_pkg


def test_all_lists_every_public_member():
    # Submodules (eval.recall, eval.trec, ...) are attributes too; they are not API.
    public = {
        name
        for name, value in vars(eval_pkg).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(eval_pkg.__all__) == public
    assert len(eval_pkg.__all__) == len(set(eval_pkg.__all__))


def test_all_holds_the_eval_api():
    for name in (
        "evaluate",
        "mean",
        "Retriever",
        "RetrievedList",
        "read_locomo_dataset",
        "read_jsonl_dataset",
        "paired_randomization_test",
        "read_run",
        "write_run",
    ):
        assert name in eval_pkg.__all__


def test_eval_imports_neither_query_service_nor_convmem():
    probe = (
        "import sys, eval, eval.jsonl_dataset, eval.locomo, eval.runner, eval.artifacts,"
        " eval.compare\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'query_service', 'convmem'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert out.stdout.strip() == "[]"
