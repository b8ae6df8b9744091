"""make data's helper: leaves an existing folder alone; a failed clone exits non-zero, says what to do,
and leaves no partial folder behind (which would pass the 'exists' check next time)."""

import shutil

import pytest

from experiments.pairs.biosr_download import fetch
from experiments.get_data import main


def test_existing_folder_is_left_alone(tmp_path, capsys):
    (tmp_path / "biosr_dataset").mkdir()
    assert fetch(tmp_path / "biosr_dataset", url="unused://") == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_failed_clone_explains_and_exits_non_zero(tmp_path, capsys):
    dest = tmp_path / "biosr_dataset"
    assert main(["--dest", str(dest), "--url", str(tmp_path / "no_such_repository")]) == 1
    error = capsys.readouterr().err
    assert "make data" in error and "make synthetic-data" in error and "12 GB" in error
    assert not dest.exists()
