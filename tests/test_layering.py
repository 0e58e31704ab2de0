"""``ranking`` is pure: importing it must not pull in any driver, index or model library.

Checked in a fresh interpreter, since this test process has imported them already.
"""

import json
import subprocess
import sys
from pathlib import Path

HEAVY = [
    "psycopg",
    "faiss",
    "tantivy",
    "opensearchpy",
    "sentence_transformers",
    "torch",
    "fastapi",
]

PROBE = f"""
import json, sys
import ranking
heavy = {HEAVY!r}
print(json.dumps(sorted(set(heavy).intersection(m.split(".")[0] for m in sys.modules))))
"""


def test_ranking_imports_no_heavy_dependency():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
