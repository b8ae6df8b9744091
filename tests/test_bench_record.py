"""Every benchmark JSON says which commit and which machine its figures come from, and holds no path of
the machine that wrote it."""

import json
import re
import subprocess
from pathlib import Path

import torch

from experiments.bench.record import commit_of, write_record

ROOT = Path(__file__).resolve().parents[1]


def test_a_record_names_the_commit_and_the_machine_and_holds_portable_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = write_record(tmp_path / "bench.json", {"checkpoint": ROOT / "pretrained" / "native" / "model.pt",
                                                  "rows": [{"input": str(ROOT / "docs")}], "seconds": [1.5, 2.0]})
    record = json.loads(path.read_text())
    assert record["checkpoint"] == "pretrained/native/model.pt" and record["rows"] == [{"input": "docs"}]
    assert record["seconds"] == [1.5, 2.0]
    assert record["machine"]["torch_version"] == torch.__version__ and record["machine"]["device"] == "cpu"
    assert "flags" not in record["machine"] and record["machine"]["logical_cores"] >= 1
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head:  # a git checkout: the commit measured, + for uncommitted changes
        assert re.fullmatch(r"[0-9a-f]{40}\+?", record["commit"]) and record["commit"].startswith(head)


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path):
    assert commit_of(tmp_path) is None
