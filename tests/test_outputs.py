"""The one output guard (experiments.integrity.outputs.check_outputs / check_output_folder): inputs are never
outputs, existing files are replaced only when asked, two outputs never share a file."""

from pathlib import Path

import pytest

from experiments.image_io.tif_io import output_path_for
from experiments.integrity.outputs import OverwriteError, check_output_folder, check_outputs


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_output_equal_to_an_input_is_refused_however_it_is_spelled(tmp_path):
    source = touch(tmp_path / "cells" / "a.tif")
    sneaky = tmp_path / "out" / ".." / "cells" / "a.tif"
    with pytest.raises(OverwriteError, match="would overwrite the input") as error:
        check_outputs([tmp_path / "out" / "a_sr.tif", sneaky], [source], overwrite=True)
    assert str(sneaky) in str(error.value) and str(source) in str(error.value)
    link = tmp_path / "link.tif"
    link.symlink_to(source)
    with pytest.raises(OverwriteError, match="would overwrite the input"):
        check_outputs([link], [source], overwrite=True)
    check_outputs([output_path_for(source, tmp_path / "cells", "_sr")], [source])  # another name: fine


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
    root = tmp_path / "data"
    (root / "test_wf").mkdir(parents=True)
    with pytest.raises(OverwriteError, match="inside the input folder"):
        check_outputs([root / "test_wf" / "evaluation.json"], [root])
    with pytest.raises(OverwriteError, match="inside, the input"):
        check_output_folder(root / "evaluation", [root])
    with pytest.raises(OverwriteError, match="inside, the input"):
        check_output_folder(root, [root])
    check_output_folder(tmp_path / "elsewhere", [root])


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    existing = touch(tmp_path / "model.zip")
    with pytest.raises(OverwriteError, match="--overwrite"):
        check_outputs([existing])
    with pytest.raises(OverwriteError, match="--replace"):
        check_outputs([existing], flag="--replace")
    check_outputs([existing], overwrite=True)
    assert existing.read_text() == "x"  # the check writes nothing


def test_folders_and_files_are_not_taken_for_each_other(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    with pytest.raises(OverwriteError, match="is a folder"):
        check_outputs([folder], overwrite=True)
    with pytest.raises(OverwriteError, match="is a file"):
        check_output_folder(touch(tmp_path / "notes.txt"))


def test_two_inputs_with_one_output_name_are_refused(tmp_path):
    inputs = [tmp_path / "day1" / "a.tif", tmp_path / "day2" / "a.tif"]
    outputs = [output_path_for(path, tmp_path / "out", "_sr") for path in inputs]
    with pytest.raises(OverwriteError, match="same file"):
        check_outputs(outputs, inputs)
