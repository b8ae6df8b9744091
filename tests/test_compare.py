"""python -m experiments.compare: evaluations side by side with their paired gains over the bicubic input,
and the training curves; what it refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from experiments import compare, evaluate
from test_native_task import native_run  # noqa: F401  (a fixture: a tiny trained native-task run)

EVALUATE = ["--levels", "level_01,level_09", "--device", "cpu", "--no-progress"]


def test_comparison_tables_hold_the_paired_gains(native_run, tmp_path, capsys):  # noqa: F811
    run_dir, _ = native_run
    for name, flags in (("one", []), ("two", ["--samples", "2"])):
        assert evaluate.main(["--checkpoint", str(run_dir / "last.pt"), *EVALUATE, "--out", str(tmp_path / name),
                              *flags]) == 0
    out = tmp_path / "cmp"
    assert compare.main(["--out", str(out), "--evaluation", f"one={tmp_path / 'one'}", "--evaluation",
                         f"mean of 2={tmp_path / 'two'}", "--curve", f"tiny={run_dir}", "--paired", "mean of 2=one"]) == 0, \
        capsys.readouterr().err
    text = (out / "comparison.md").read_text()
    sections = {"psnr": text.split("## PSNR")[1].split("## SSIM")[0], "ssim": text.split("## SSIM")[1].split("## ")[0]}
    for name in ("one", "two"):
        levels = json.loads((tmp_path / name / "evaluation.json").read_text())["levels"]
        for level, result in levels.items():
            for metric, section in sections.items():  # the interval by scipy's t, not the project's table
                gains = np.subtract(result["per_image"]["model"][f"{metric}_fit"],
                                    result["per_image"]["bicubic"][f"{metric}_fit"])
                half = stats.t.ppf(0.975, len(gains) - 1) * gains.std(ddof=1) / np.sqrt(len(gains))
                row = next(line for line in section.splitlines() if line.startswith(f"| {level} |"))
                cells = [cell.strip() for cell in row.strip("| ").split("|")]
                assert cells[4 + 2 * ("one", "two").index(name)] == \
                    f"**{gains.mean():.3f} ± {half:.3f}** (sd {gains.std():.3f})", (name, level, metric)
    assert (out / "comparison.png").stat().st_size > 0 and (out / "epochs.png").stat().st_size > 0
    # error bars: only the evaluation with a std ("two"), each measure as its evaluation.json holds it
    bars = text.split("## Error bars")[1].split("## ")[0]
    two = json.loads((tmp_path / "two" / "evaluation.json").read_text())["levels"]["level_09"]
    row = next(line for line in bars.splitlines() if line.startswith("| level_09 | mean of 2 |"))
    assert f"| {two['calibration']['raw']['coverage90']:.2f} |" in row and "| one |" not in bars
    assert f"| {two['quality']['model']['posterior']['dispersion']:.2f} |" in row
    recorded = json.loads((out / "comparison.json").read_text())["evaluations"]
    assert recorded["one"]["levels"]["level_09"]["error_bars"] == {}
    assert recorded["mean of 2"]["levels"]["level_09"]["error_bars"]["coverage90_raw"] == two["calibration"]["raw"]["coverage90"]
    # paired: the mean of 2 minus one sample, image by image, its interval by scipy's t
    paired = text.split("## Paired differences, fitted PSNR")[1].split("## ")[0]
    for level in ("level_01", "level_09"):
        first, second = (json.loads((tmp_path / name / "evaluation.json").read_text())["levels"][level]["per_image"]
                         ["model"]["psnr_fit"] for name in ("two", "one"))
        differences = np.subtract(first, second)
        half = stats.t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / np.sqrt(len(differences))
        assert f"| {level} | {differences.mean():.3f} ± {half:.3f} |" in paired
        record = json.loads((out / "comparison.json").read_text())["paired"]["mean of 2 - one"][level]
        assert record["mean"] == pytest.approx(differences.mean())
    assert compare.main(["--out", str(tmp_path / "p"), "--evaluation", f"one={tmp_path / 'one'}", "--paired",
                         "one=nothing"]) == 1 and "--paired one=nothing" in capsys.readouterr().err
    # detail: each evaluation's high-frequency power as evaluate measured it, and the spectra figure
    detail = text.split("## Detail: power spectra")[1].split("## ")[0]
    row = next(line for line in detail.splitlines() if line.startswith("| level_09 |"))
    one = json.loads((tmp_path / "one" / "evaluation.json").read_text())["levels"]["level_09"]["quality"]
    assert row == (f"| level_09 | {one['bicubic']['hf_power_db']:+.2f} | {one['model']['hf_power_db']:+.2f} | "
                   f"{one['model']['hf_power_sample_db']:+.2f} | {two['quality']['model']['hf_power_db']:+.2f} | "
                   f"{two['quality']['model']['hf_power_sample_db']:+.2f} |")
    assert one["model"]["hf_power_db"] == one["model"]["hf_power_sample_db"]  # one sample is its own output
    assert recorded["mean of 2"]["levels"]["level_09"]["detail"]["one_sample"] == two["quality"]["model"]["hf_power_sample_db"]
    assert (out / "spectra.png").stat().st_size > 0
    # The run evaluated the same images after its last epoch (2) as "one" did, with the same seed.
    last = json.loads((tmp_path / "one" / "evaluation.json").read_text())["levels"]["level_09"]
    assert f"2: {last['model']['psnr_fit'] - last['bicubic']['psnr_fit']:+.2f} |" in text
    capsys.readouterr()
    assert compare.main(["--out", str(out), "--evaluation", f"one={tmp_path / 'one'}"]) == 1  # no --overwrite
    assert compare.main(["--out", str(tmp_path / "x"), "--evaluation", f"one={tmp_path / 'nothing'}"]) == 1
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compare", "publish"])
def test_a_name_given_twice_is_refused_naming_both(command, tmp_path, capsys):
    """Two --evaluation entries of one name: one would silently replace the other in the table or the card."""
    from experiments import publish

    entries = ["--evaluation", f"model={tmp_path / 'a'}", "--evaluation", f"model={tmp_path / 'b'}"]
    if command == "compare":
        code = compare.main([*entries, "--out", str(tmp_path / "out")])
    else:
        code = publish.main(["--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "out"), "--title", "T",
                             "--summary", "S", *entries])
    error = capsys.readouterr().err
    assert code == 1 and "names 'model' twice" in error and str(tmp_path / "a") in error and str(tmp_path / "b") in error
    assert not (tmp_path / "out").exists()


def test_evaluations_of_different_test_sets_are_not_set_side_by_side_unless_told(native_run, tmp_path, capsys):  # noqa: F811
    """A tutorial-task evaluation beside a native-task one, or 2 images beside 1, under one bicubic column and
    one image count: refused naming both and what differs; --mixed-test-sets sets them side by side, said so."""
    run_dir, _ = native_run
    for name, images in (("two", "2"), ("one", "1")):
        assert evaluate.main(["--checkpoint", str(run_dir / "last.pt"), *EVALUATE, "--max-images", images,
                              "--out", str(tmp_path / name)]) == 0
    entries = ["--evaluation", f"two={tmp_path / 'two'}", "--evaluation", f"one={tmp_path / 'one'}"]
    capsys.readouterr()
    assert compare.main([*entries, "--out", str(tmp_path / "cmp")]) == 1
    error = capsys.readouterr().err
    assert "'two' and 'one' were scored on different test sets (images [2, 2] against [1, 1])" in error, error
    assert "--mixed-test-sets" in error and not (tmp_path / "cmp").exists()
    assert compare.main([*entries, "--out", str(tmp_path / "cmp"), "--mixed-test-sets"]) == 0
    assert "**Mixed test sets**" in (tmp_path / "cmp" / "comparison.md").read_text()
