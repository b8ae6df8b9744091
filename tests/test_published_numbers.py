"""Every published number against a second route to it: the spreads and intervals of the fitted protocol,
the model cards' cells, the report's fitted rows, the study's tables, and the README's tables against the
records they were copied from. Expectations are computed here with numpy and scipy (least squares, sample
standard deviations, Student's t), never with the project's own helpers; docs/architecture.md lists which
test holds which number."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats  # the dev extra: t quantiles independent of the project's table

from experiments.evaluation.metrics import MetricAccumulator
from experiments.publishing.model_card import level_rows
from experiments.evaluation.report import (
    ROW_BICUBIC_FIT,
    ROW_GAIN,
    ROW_GAIN_FIT,
    ROW_RUN_FIT,
    comparison_rows,
    format_table,
)
from experiments.records import METRIC_NAMES

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("native", "tutorial-l1", "regression", "probabilistic")
ROUNDING = 0.005 + 1e-9  # a number printed with 2 decimals
T_TABLE = 1e-4  # the project's t table has 3 decimals: a relative 5e-5 at most
NUMBER = r"([+\-−]?\d+\.\d+)"


def interval_by_hand(values) -> tuple[float, float, float]:
    """(mean, half-width of the 95 % t interval of the mean, population sd) of ``values``, by numpy and scipy."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half), float(values.std(ddof=0))


def from_summary(mean: float, population_sd: float, n: int) -> tuple[float, float, float]:
    """The same three numbers from a mean, its population sd and the count (cards without per-image values)."""
    return mean, float(stats.t.ppf(0.975, n - 1) * population_sd * math.sqrt(n / (n - 1)) / math.sqrt(n)), population_sd


def number(text: str) -> float:
    return float(text.replace("−", "-"))


def assert_printed(printed: list[str], expected, where: str) -> None:
    """Each printed 2-decimal number within rounding of its expectation; the second of three (an interval's
    half-width) also within the precision of the project's t table."""
    assert len(printed) == len(expected), where
    for index, (text, value) in enumerate(zip(printed, expected)):
        slack = T_TABLE * abs(value) if (index, len(expected)) == (1, 3) else 0.0
        assert abs(number(text) - value) <= ROUNDING + slack, f"{where}: printed {text}, expected {value:.4f}"


# -- The fitted protocol's spread, by least squares in numpy --------------------------------------------------


def fitted_by_hand(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE, NRMSE and PSNR of one image after the least-squares affine fit to its target (numpy lstsq)."""
    design = np.stack([pred.ravel(), np.ones(pred.size)], axis=1)
    solution = np.linalg.lstsq(design, target.ravel(), rcond=None)[0]
    error = design @ solution - target.ravel()
    mse = float(np.mean(error**2))
    return {"mae": float(np.mean(np.abs(error))), "nrmse": math.sqrt(mse) / float(np.ptp(target)),
            "psnr": 10 * math.log10(4.0 / mse)}


def test_the_fitted_spread_is_the_population_std_over_every_image_of_every_batch():
    generator = torch.Generator().manual_seed(5)
    targets = torch.rand(5, 1, 32, 32, generator=generator) * 2 - 1
    # Predictions of unequal quality, so the spread over images is far from 0 and from any batch's own.
    noise = torch.randn(5, 1, 32, 32, generator=generator) * torch.tensor([0.05, 0.1, 0.2, 0.4, 0.8]).view(5, 1, 1, 1)
    preds = 0.6 * targets + 0.1 + noise
    accumulator = MetricAccumulator()
    accumulator.update(preds[:3], targets[:3])  # batches of 3 and 2: the std is over images, not batches
    accumulator.update(preds[3:], targets[3:])
    result, per_image = accumulator.compute(), accumulator.per_image()
    by_hand = [fitted_by_hand(p[0].double().numpy(), t[0].double().numpy()) for p, t in zip(preds, targets)]
    for name in ("mae", "nrmse", "psnr"):
        values = np.array([image[name] for image in by_hand])
        assert result[f"{name}_fit"] == pytest.approx(values.mean(), rel=1e-5)
        assert result[f"{name}_fit_std"] == pytest.approx(values.std(ddof=0), rel=1e-4)
        np.testing.assert_allclose(per_image[f"{name}_fit"], values, rtol=1e-5)  # in the order images were added
    assert result["psnr_fit_std"] > 1.0  # the test can tell a spread from none


# -- The model card's cells ------------------------------------------------------------------------------------


def card_cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def interval_numbers(cell: str) -> list[str]:
    match = re.fullmatch(rf"{NUMBER} ± {NUMBER} \(sd {NUMBER}\)", cell)
    assert match, f"not 'mean ± half (sd spread)': {cell!r}"
    return list(match.groups())


def gain_numbers(cell: str) -> list[str]:
    # the card's "**+2.48** ± 0.26 (sd 0.89)" or the README's "**+2.48 ± 0.26** (sd 0.89)", or a bare "**+1.60**"
    match = re.fullmatch(rf"\*\*{NUMBER}(?:\*\* ± {NUMBER}| ± {NUMBER}\*\*) \(sd {NUMBER}\)|\*\*{NUMBER}\*\*", cell)
    assert match, f"not a gain cell: {cell!r}"
    return [group for group in match.groups() if group is not None]


def expected_card_row(result: dict) -> dict[str, tuple]:
    """What the card's row of one level must say, from its evaluation.json entry: the per-image values where it
    holds them, else the means and population sds."""
    model, bicubic, per_image = result["model"], result["bicubic"], result.get("per_image")
    n = int(model["images"])
    expected = {}
    for metric in ("psnr", "ssim"):
        for name, scores in (("model", model), ("bicubic", bicubic)):
            if per_image:
                values = per_image[name][f"{metric}_fit"]
                assert len(values) == n
                expected[f"{metric} {name}"] = interval_by_hand(values)
            else:
                expected[f"{metric} {name}"] = from_summary(scores[f"{metric}_fit"], scores[f"{metric}_fit_std"], n)
    if per_image:
        gains = np.subtract(per_image["model"]["psnr_fit"], per_image["bicubic"]["psnr_fit"])
        expected["gain"] = interval_by_hand(gains)
    else:
        expected["gain"] = (model["psnr_fit"] - bicubic["psnr_fit"],)
    expected["tutorial"] = (model["psnr"], bicubic["psnr"])
    return expected


def check_card_row(row: str, level: str, result: dict) -> None:
    cells = card_cells(row)
    expected = expected_card_row(result)
    assert cells[0] == level and int(cells[1]) == int(result["model"]["images"])
    assert_printed(interval_numbers(cells[2]), expected["psnr model"], f"{level} PSNR fitted, model")
    assert_printed(interval_numbers(cells[3]), expected["psnr bicubic"], f"{level} PSNR fitted, bicubic")
    assert_printed(gain_numbers(cells[4]), expected["gain"], f"{level} gain")
    assert_printed(interval_numbers(cells[5]), expected["ssim model"], f"{level} SSIM fitted, model")
    assert_printed(interval_numbers(cells[6]), expected["ssim bicubic"], f"{level} SSIM fitted, bicubic")
    assert_printed(cells[7:9], expected["tutorial"], f"{level} PSNR tutorial")


def synthetic_level(seed: int, images: int) -> dict:
    """An evaluation.json level whose summary keys agree with its per-image values (as evaluate writes them)."""
    rng = np.random.default_rng(seed)
    per_image = {"model": {"psnr_fit": list(25 + 2 * rng.standard_normal(images)),
                           "ssim_fit": list(0.7 + 0.1 * rng.standard_normal(images))},
                 "bicubic": {"psnr_fit": list(22 + 1.5 * rng.standard_normal(images)),
                             "ssim_fit": list(0.5 + 0.08 * rng.standard_normal(images))}}
    level = {"per_image": per_image}
    for name in ("model", "bicubic"):
        scores = {"images": images, "psnr": float(20 + rng.random())}
        for metric in ("psnr", "ssim"):
            values = np.array(per_image[name][f"{metric}_fit"])
            scores[f"{metric}_fit"], scores[f"{metric}_fit_std"] = float(values.mean()), float(values.std())
        level[name] = scores
    return level


@pytest.mark.parametrize("per_image", [True, False], ids=["per-image values", "summaries only"])
def test_each_cell_of_a_model_card_row_is_its_hand_computed_interval(per_image):
    evaluation = {"levels": {"level_02": synthetic_level(1, 7), "level_08": synthetic_level(2, 12)}}
    if not per_image:
        for result in evaluation["levels"].values():
            del result["per_image"]
    rows = level_rows(evaluation)
    for row, (level, result) in zip(rows, evaluation["levels"].items()):
        check_card_row(row, level, result)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_cell_of_a_shipped_model_card_is_its_card_json(name):
    card = (REPO / "pretrained" / name / "MODEL_CARD.md").read_text()
    evaluations = json.loads((REPO / "pretrained" / name / "card.json").read_text())["evaluations"]
    sections = card.split("\n### ")[1:]
    assert len(sections) >= len(evaluations)
    for (title, evaluation), section in zip(evaluations.items(), sections):
        assert section.startswith(title), f"section {section.splitlines()[0]!r} is not evaluation {title!r}"
        sampling = evaluation["sampling"]
        if sampling["sampler"] != "regression":
            assert f"({sampling['sampler']}, {sampling['sampling_steps']} steps" in section.splitlines()[0]
        for level, result in evaluation["levels"].items():
            row = next(line for line in section.splitlines() if line.startswith(f"| {level} |"))
            check_card_row(row, level, result)


# -- The report's fitted rows ----------------------------------------------------------------------------------


def accumulator_result(offset: float) -> dict[str, float]:
    """A MetricAccumulator-shaped result whose per-image, fitted and tutorial values all differ."""
    result: dict[str, float] = {"images": 4}
    for index, name in enumerate(METRIC_NAMES):
        base = offset + index
        result |= {name: base, f"{name}_mean": base + 0.1, f"{name}_std": 0.01 * (index + 1),
                   f"{name}_fit": base + 0.3, f"{name}_fit_std": 0.02 * (index + 1) + offset / 100}
    return result


def test_the_report_fitted_rows_show_the_fitted_means_their_spreads_and_the_fitted_gain():
    ours, bicubic = accumulator_result(10.0), accumulator_result(7.0)
    rows = comparison_rows(ours, bicubic, paper_key=None)
    for label, source in ((ROW_RUN_FIT, ours), (ROW_BICUBIC_FIT, bicubic)):
        for name in METRIC_NAMES:
            assert rows[label][name] == source[f"{name}_fit"]
            assert rows[label][f"{name}_std"] == source[f"{name}_fit_std"]
    # Higher is better for SSIM, MS-SSIM and PSNR, lower for MAE and NRMSE: + means better.
    signs = {"mae": -1, "nrmse": -1, "ssim": 1, "ms_ssim": 1, "psnr": 1}
    for name in METRIC_NAMES:
        assert rows[ROW_GAIN_FIT][name] == pytest.approx(signs[name] * (ours[f"{name}_fit"] - bicubic[f"{name}_fit"]))
        assert rows[ROW_GAIN][name] == pytest.approx(signs[name] * (ours[name] - bicubic[name]))
    line = next(line for line in format_table(rows).splitlines() if line.startswith(f"| {ROW_RUN_FIT} |"))
    assert card_cells(line)[METRIC_NAMES.index("psnr") + 1] == f"{ours['psnr_fit']:.3f} ± {ours['psnr_fit_std']:.3f}"


# -- The study's tables, from evaluation.json files written here ----------------------------------------------


def test_the_study_tables_hold_the_per_seed_intervals_and_the_paired_difference(tmp_path):
    from experiments.studies import runner
    from experiments.studies.config import Arm, StudyConfig
    from experiments.studies.summary import SUMMARY_JSON, SUMMARY_MD, write_summary

    config = StudyConfig(name="hand", arms=(Arm("mse", "demo"), Arm("l1", "demo")), seeds=(0, 1, 2),
                         train_flags=(), mean_samples=0)
    rng = np.random.default_rng(4)
    filler = {f"{name}{suffix}": 0.1 for name in METRIC_NAMES for suffix in ("", "_fit")}  # the other metrics
    bicubic = {"psnr": 20.0, "psnr_fit": 21.0, "ssim": 0.3, "ssim_fit": 0.4}  # the same input for every run
    written = {}  # (arm, seed) -> the model's scores
    for run in runner.plan(config, tmp_path):
        model = {key: value + rng.random() for key, value in bicubic.items()}
        if run.arm.name == "l1":  # better by a seed-dependent margin, so the paired spread is not the arms'
            model = {key: value + 0.5 + 0.2 * run.seed for key, value in model.items()}
        written[run.arm.name, run.seed] = model
        level = {"model": filler | model, "bicubic": filler | bicubic,
                 "quality": {"model": {"frc_px": 3.0 + run.seed}, "bicubic": {"frc_px": 6.0}}}
        folder = run.folder / runner.SINGLE
        folder.mkdir(parents=True)
        (folder / "evaluation.json").write_text(json.dumps({"levels": {"level_05": level}}))

    summary = write_summary(config, tmp_path, {}, "test machine")[runner.SINGLE]["level_05"]
    for protocol, suffix in (("tutorial", ""), ("fitted", "_fit")):
        for metric in ("psnr", "ssim"):
            key = f"{metric}{suffix}"
            for arm in ("mse", "l1"):
                mean, half, _ = interval_by_hand([written[arm, seed][key] for seed in (0, 1, 2)])
                assert summary[arm][protocol][metric].mean == pytest.approx(mean)
                assert summary[arm][protocol][metric].half_width == pytest.approx(half, rel=1e-3)
            differences = [written["l1", seed][key] - written["mse", seed][key] for seed in (0, 1, 2)]
            mean, half, _ = interval_by_hand(differences)
            paired = summary["l1 - mse (paired)"][protocol][metric]
            assert paired.mean == pytest.approx(mean) and paired.half_width == pytest.approx(half, rel=1e-3)
            assert summary["bicubic"][protocol][metric].mean == pytest.approx(bicubic[key])
    frc = interval_by_hand([3.0, 4.0, 5.0])
    assert summary["mse"]["fitted"]["frc_px"].mean == pytest.approx(frc[0])
    assert "frc_px" not in summary["mse"]["tutorial"]
    recorded = json.loads((tmp_path / SUMMARY_JSON).read_text())["results"][runner.SINGLE]["level_05"]
    assert recorded["l1 - mse (paired)"]["fitted"]["psnr"]["mean"] == pytest.approx(summary["l1 - mse (paired)"]
                                                                                     ["fitted"]["psnr"].mean)
    text = (tmp_path / SUMMARY_MD).read_text()
    paired = summary["l1 - mse (paired)"]["fitted"]["psnr"]
    assert f"{paired.mean:.3f} ± {paired.half_width:.3f}" in text


# -- The README's tables against the records they were copied from --------------------------------------------


def readme_rows(heading: str, name: str = "README.md") -> list[list[str]]:
    """The body rows of the first Markdown table from the line holding ``heading`` on, in document ``name``."""
    lines = (REPO / name).read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if heading in line)
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append(card_cells(line))
        elif table:
            break
    return table[2:]


def readme_header(heading: str, name: str = "README.md") -> list[str]:
    """The header cells of the first Markdown table from the line holding ``heading`` on."""
    lines = (REPO / name).read_text().splitlines()
    return card_cells(next(line for line in lines if heading in line))


def test_the_readme_result_table_is_the_robustness_record():
    """README's result: the fitted gain of each model at each microscope, as docs/bench/robustness.json (the
    benchmark's record, the README figure's source) holds it; the shipped model's card holds the same rows."""
    record = json.loads((REPO / "docs" / "bench" / "robustness.json").read_text())
    models = list(record["models"])
    rows = readme_rows("| PSF | background | photons |")
    assert len(rows) >= 8
    for cells in rows:
        optics = "gaussian" if cells[0].startswith("Gaussian") else "measured"
        fwhm = number(re.search(r"(\d+) nm", cells[0]).group(1) + ".0")
        background, level = number(cells[1].split(" %")[0] + ".0") / 100, int(cells[2].strip("`")[-2:])
        for name, cell in zip(models, cells[3:]):
            row = next(r for r in record["models"][name]["conditions"]
                       if (r["optics"], r["fwhm_nm"], r["background"], r["level"]) == (optics, fwhm, background, level))
            assert_printed(re.findall(NUMBER, cell), [row["mean"], row["ci95_half_width"]], f"README {cells[:3]} {name}")
    shipped = json.loads((REPO / "pretrained" / "native" / "card.json").read_text())
    assert shipped["robustness"]["conditions"] == record["models"][models[-1]]["conditions"]
    for pretrained in readme_rows("| model | task | size |"):  # each shipped model's gain, from its card
        name = re.search(r"pretrained/([\w-]+)", pretrained[0]).group(1)
        card = next(iter(json.loads((REPO / "pretrained" / name / "card.json").read_text())["evaluations"].values()))
        level = card["levels"]["level_09"]["per_image"]
        gains = np.subtract(level["model"]["psnr_fit"], level["bicubic"]["psnr_fit"])
        assert_printed(re.findall(NUMBER, pretrained[3])[:1], [gains.mean()], f"README pretrained table, {name}")


def doc_text(name: str = "README.md") -> str:
    """A committed document with its line breaks and runs of spaces collapsed, so a phrase is found across lines."""
    return " ".join((REPO / name).read_text().split())


def signed(value: float, digits: int = 1) -> str:
    """``+0.8`` / ``−0.1`` as the README writes them (a true minus sign)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def test_the_study_reading_says_what_the_study_record_says():
    """Each number of docs/study.md's reading of the study, rebuilt from docs/study/study.json and the paper's
    table: a claim whose number moved fails here."""
    from experiments.config.presets import DEMO
    from experiments.evaluation.report import PAPER_RESULTS

    results = json.loads((REPO / "docs" / "study" / "study.json").read_text())
    single, mean = results["results"]["evaluation-1"], results["results"]["evaluation-mean"]
    levels = sorted(single)

    def value(record, level, arm, protocol="fitted", metric="psnr"):
        return record[level][arm][protocol][metric]["mean"]

    def gain(record, level, arm, protocol="fitted", metric="psnr"):
        return value(record, level, arm, protocol, metric) - value(record, level, "bicubic", protocol, metric)

    paired = [single[level]["l1 - mse (paired)"]["fitted"] for level in levels]
    psnr = [row["psnr"]["mean"] for row in paired]
    assert all(row["psnr"]["mean"] - row["psnr"]["ci95_half_width"] > 0 for row in paired)  # "clear of 0 at every level"
    ssim = [row["ssim"]["mean"] for row in paired]
    clear = [level for level, row in zip(levels, paired) if row["ssim"]["mean"] - row["ssim"]["ci95_half_width"] > 0]
    assert clear == levels[: len(clear)]  # a run of levels from level_01
    tutorial = [single[level]["l1 - mse (paired)"]["tutorial"]["psnr"]["mean"] for level in levels]
    paper = PAPER_RESULTS["l1"]["psnr"] - PAPER_RESULTS["mse"]["psnr"]
    claims = [
        f"By {signed(min(psnr))} to {signed(max(psnr))} dB fitted PSNR with one sample, with an interval clear of 0 "
        "at every level.",
        f"The fitted SSIM gain is {signed(min(ssim), 2)} to {signed(max(ssim), 2)}, and its interval clears 0 at "
        f"`{clear[0]}`-`{clear[-1]}` only.",
        f"In the tutorial protocol the gap is {signed(min(tutorial))} to {signed(max(tutorial))} dB.",
        f"The paper's gap is {signed(paper)} dB at `level_09`.",
        f"Tutorial protocol, L1, one sample: {signed(gain(single, 'level_01', 'l1', 'tutorial'))} dB at `level_01` and "
        f"{signed(gain(single, 'level_09', 'l1', 'tutorial'))} dB at `level_09`. Fitted protocol: "
        f"{signed(gain(single, 'level_01', 'l1'))} dB and {signed(gain(single, 'level_09', 'l1'))} dB.",
        f"(L1 + min-SNR {signed(gain(single, 'level_01', 'l1-min-snr'))} dB, L1 {signed(gain(single, 'level_01', 'l1'))}"
        f" dB, MSE {-gain(single, 'level_01', 'mse'):.1f} dB worse). The mean of 4 samples reaches "
        f"{signed(gain(mean, 'level_01', 'l1'))} dB (L1).",
        f"At `level_09` the fitted gain of L1 is {signed(gain(single, 'level_09', 'l1'))} dB with one sample and "
        f"{signed(gain(mean, 'level_09', 'l1'))} dB as the mean of 4.",
        f"By {signed(value(single, 'level_01', 'regression') - value(single, 'level_01', 'l1'))} dB (`level_01`) to "
        f"{signed(value(single, 'level_09', 'regression') - value(single, 'level_09', 'l1'))} dB (`level_09`) fitted "
        "PSNR over L1's single sample",
        f"({results['config']['train_flags'][results['config']['train_flags'].index('--train.epochs') + 1]} epochs, "
        f"{int(results['config']['train_flags'][results['config']['train_flags'].index('--data.max_train_pairs') + 1]):,}"
        " pairs)",
        f"It also uses {DEMO.sampling.sampling_steps}x fewer network evaluations.",
    ]
    text = doc_text("docs/study.md")
    for claim in claims:
        assert claim in text, f"docs/study.md does not say: {claim}"
    assert results["config"]["mean_samples"] == 4 and DEMO.sampling.sampler == "ddim"
    for metric, bound in (("psnr", 0.25), ("ssim", 0.01)):  # "within 0.25 dB and 0.01 SSIM of L1 at every level"
        assert all(abs(value(single, level, "l1-min-snr", metric=metric) - value(single, level, "l1", metric=metric))
                   < bound for level in levels)
    assert "within 0.25 dB and 0.01 SSIM of L1 at every level" in text


def test_the_readme_model_facts_are_the_shipped_models():
    """Parameter counts of the presets' networks, the native model's training time and the files' sizes."""
    from experiments.build import build_model
    from experiments.config.presets import DEMO, NATIVE

    for config, documents in ((NATIVE, ("README.md", "docs/training.md")),
                              (DEMO, ("docs/training.md", "docs/study.md", "docs/data.md"))):
        parameters = sum(p.numel() for p in build_model(config, torch.device("cpu")).parameters())
        for name in documents:
            assert f"{parameters:,} parameters" in doc_text(name), (config.name, name)
    text = doc_text()
    card = json.loads((REPO / "pretrained" / "native" / "card.json").read_text())
    assert f"{card['config']['train']['epochs']} epochs, {card['source']['training_seconds'] / 60:.0f} min of " \
           "training" in text
    for cells in readme_rows("| model | task | size |"):
        name = re.search(r"pretrained/([\w-]+)", cells[0]).group(1)
        size = (REPO / "pretrained" / name / "model.pt").stat().st_size / 1e6
        assert cells[2] == f"{size:.1f} MB", name


def test_the_training_curve_and_the_sampler_figures_are_their_records():
    """The epoch gains of docs/study.md against docs/native/comparison.md's curve table; docs/sampling.md's
    speed table against the rounds of docs/bench/samplers_2048.json (numpy's medians and extremes) and its
    quality table against docs/bench/solvers.json."""
    study = doc_text("docs/study.md")
    curves = {(cells[0], cells[1]): dict(point.split(": ") for point in cells[2].split(", "))
              for cells in (card_cells(line) for line in (REPO / "docs" / "native" / "comparison.md").read_text()
                            .split("## Training curves")[1].splitlines() if line.startswith("| native"))}
    wide, demo = curves["native (952,705 parameters)", "level_09"], curves["native, demo network (244,417)", "level_09"]
    last = max(wide, key=int)
    assert f"{signed(number(wide[last]))} dB at `level_09` on the 32 windows evaluated while training, from " \
           f"{signed(number(wide['10']))} at epoch 10" in study and last == "60"
    assert f"{signed(number(demo['40']))} dB after 40 epochs" in study

    bench = json.loads((REPO / "docs" / "bench" / "samplers_2048.json").read_text())["samplers"]
    sampling = (REPO / "docs" / "sampling.md").read_text()

    def figure(values, digits):
        return f"{np.median(values):.{digits}f} s ({np.min(values):.{digits}f}-{np.max(values):.{digits}f})"

    def ratio(values):
        return f"**{np.median(values):.2f}x** ({np.min(values):.2f}-{np.max(values):.2f})"

    for label, workflow, digits in (("| one sample |", "one_sample", 1), ("| `--samples 8 --std --check` |", "trust", 0)):
        row = next(line for line in sampling.splitlines() if line.startswith(label))
        seconds = bench[workflow]["seconds"]
        assert card_cells(row)[1:4] == [figure(seconds["baseline"], digits), figure(seconds["fast"], digits),
                                        ratio(bench[workflow]["speedup"])], row

    solvers = json.loads((REPO / "docs" / "bench" / "solvers.json").read_text())
    rows = {(row["model"], row["level"], row["sampler"], row["evaluations"]): row for row in solvers["rows"]}
    names = {"DDIM 10": ("ddim", 10), "DPM-Solver++ 4": ("dpmpp2m", 4)}
    table = readme_rows("| model | level | sampler |", "docs/sampling.md")
    assert len(table) == 12
    for model, level, sampler, *cells in table:
        row = rows[(model, level, *names[sampler])]
        expected = [f"{row['psnr_fit']:.2f}", f"{row['ssim_fit']:.3f}", f"{row['psnr_fit_mean']:.2f}",
                    f"{row['psnr_tutorial']:.2f}", f"{row['frc_px']:.2f}"]
        assert cells == expected, (model, level, sampler)


def test_the_paper_table_of_the_training_docs_is_the_papers():
    from experiments.evaluation.report import PAPER_RESULTS

    rows = {cells[0]: cells[1:] for cells in readme_rows("| loss | MAE | NRMSE | MS-SSIM | SSIM | PSNR (dB) |",
                                                         "docs/training.md")}
    for key, label in (("mse", "MSE (paper)"), ("l1", "L1 (paper)")):
        assert [float(cell) for cell in rows[label]] == [PAPER_RESULTS[key][name]
                                                         for name in ("mae", "nrmse", "ms_ssim", "ssim", "psnr")]


def test_the_t_table_behind_every_interval_is_students():
    """Every interval the project prints multiplies by t_quantile_975: its table (df 1 to 30) and its expansion
    beyond, against scipy's quantile."""
    from experiments.evaluation.stats import t_quantile_975

    for degrees in range(1, 201):
        assert t_quantile_975(degrees) == pytest.approx(stats.t.ppf(0.975, degrees), abs=6e-4), degrees


STUDY_RECORDS = ("study", "study-residual")  # docs/<folder>: the summaries a study wrote, copied with their records


@pytest.mark.parametrize("folder", STUDY_RECORDS)
def test_the_study_docs_are_the_study_record(folder):
    """docs/<folder>/study.md (the summary the study wrote) holds study.json's intervals in every summary table:
    the metrics of both protocols, the error bars' measures and the detail."""
    from experiments.studies.summary import DETAIL, DETAIL_METRICS, TRUST, TRUST_METRICS

    record = json.loads((REPO / "docs" / folder / "study.json").read_text())["results"]
    written = (REPO / "docs" / folder / "study.md").read_text()
    measures = {**{label: (TRUST, metric) for metric, (label, _) in TRUST_METRICS.items()},
                **{label: (DETAIL, metric) for metric, label in DETAIL_METRICS.items()}}
    checked = 0
    for block in written.split("\n## ")[1:]:
        title = block.splitlines()[0]
        if not title.startswith("Summary, "):
            continue
        evaluation = record["evaluation-1" if title == "Summary, one sample per image" else "evaluation-mean"]
        for table in block.split("\n\n")[1:]:
            lines = [line for line in table.splitlines() if line.startswith("|")]
            if not lines:
                continue  # a subsection's heading or its prose
            header = card_cells(lines[0])
            if header[0] in measures:
                protocol, metric = measures[header[0]]
            else:
                metric = {"PSNR (dB) ↑": "psnr", "SSIM ↑": "ssim", "FRC (px) ↓": "frc_px"}[header[0].split(",")[0]]
                protocol = header[0].split(", ")[1]
            for cells in map(card_cells, lines[2:]):
                for row, cell in zip(header[1:], cells[1:]):
                    interval = evaluation[cells[0]].get(row, {}).get(protocol, {}).get(metric)
                    if interval is None:
                        assert cell == "–"
                        continue
                    half = interval["ci95_half_width"]
                    assert cell == (f"{interval['mean']:.3f}" if half is None else
                                    f"{interval['mean']:.3f} ± {half:.3f}"), (title, header[0], cells[0], row)
                    checked += 1
    assert checked > 450  # every cell of the summary tables (9 levels x 6 columns x 5 tables, and the mean of N)


def test_the_study_page_copies_its_tables_from_the_study_records():
    """Every level row of docs/study.md is a row of one of the summaries the studies wrote."""
    written = [(REPO / "docs" / folder / "study.md").read_text() for folder in STUDY_RECORDS]
    rows = [line for line in (REPO / "docs" / "study.md").read_text().splitlines() if line.startswith("| level_")]
    assert len(rows) >= 45 and all(any(row in text for text in written) for row in rows)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_card_states_its_models_parameters_and_training_time(name):
    from experiments.inference.loading import load_for_inference

    folder = REPO / "pretrained" / name
    card = (folder / "MODEL_CARD.md").read_text()
    source = json.loads((folder / "card.json").read_text())["source"]
    model = load_for_inference(folder / "model.pt", "cpu").model
    assert f"; {sum(p.numel() for p in model.parameters()):,} parameters." in card
    assert f"; {source['training_seconds'] / 60:.0f} min of training" in card
    assert f"`model.pt`: {(folder / 'model.pt').stat().st_size / 1e6:.1f} MB" in card


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_card_is_what_publish_writes_from_its_records(name, monkeypatch):
    """The committed MODEL_CARD.md regenerated by the card's writer from the shipped model.pt and card.json
    (title, summary, limits and machine, which publish takes from its flags, read back from the card): a card
    edited by hand, or records replaced without it, fails here."""
    from experiments.checkpoint import read_checkpoint
    from experiments.microscope.biosr_sim import CELL_SPLIT
    from experiments.publishing.model_card import model_card

    monkeypatch.chdir(REPO)
    folder = Path("pretrained") / name
    card = (folder / "MODEL_CARD.md").read_text()
    title = card.splitlines()[0].removeprefix("# ")
    summary = card.split("\n\n")[1]
    limits = card.split("## Limits\n")[1].split("\n- Trained on synthetic widefield")[0].splitlines()
    trained_on = re.search(r"min of training on (.+?) \(the epochs", card)
    numbers = json.loads((folder / "card.json").read_text())
    written = model_card(title, summary, read_checkpoint(folder / "model.pt"), numbers["evaluations"],
                         [line.removeprefix("- ") for line in limits], folder / "model.pt",
                         (folder / "model.pt").stat().st_size, trained_on.group(1) if trained_on else None,
                         numbers.get("robustness"), numbers.get("calibration", {}).get("evaluation"))
    # The data line names the cells of the data set's windows.csv, which make real-data writes and the checkout
    # does not hold: checked against the split the data set is cut by instead.
    data_line = re.compile(r"^- Data: .*$", re.MULTILINE)
    assert data_line.sub("", written) == data_line.sub("", card)
    cells = {split: ", ".join(cell.removeprefix("Cell_") for cell in sorted(CELL_SPLIT[split]))
             for split in ("train", "validate", "test")}
    assert (f"windows of real BioSR SIM cells {cells['train']} degraded to widefield by the physical model of "
            "`experiments/microscope/widefield.py`") in card
    assert f"validation cell(s) {cells['validate']}; test cells {cells['test']}, held out whole" in card


def test_the_2048_prediction_table_is_its_record():
    """docs/benchmarks.md's table of experiments.predict on a 2048 x 2048 frame: medians and extremes of the
    rounds in docs/bench/predict_2048.json, by numpy."""
    record = json.loads((REPO / "docs" / "bench" / "predict_2048.json").read_text())
    rows = {cells[0]: cells[1] for cells in readme_rows("| figure | median (min-max over", "docs/benchmarks.md")}

    def figure(values, text):
        return f"{text(np.median(values))} ({text(np.min(values))}-{text(np.max(values))})"

    one_decimal, two = (lambda x: f"{x:.1f}"), (lambda x: f"{x:.2f}")
    assert rows["`experiments.predict`, 2048 x 2048, DDIM 10 steps"] == f"**{one_decimal(np.median(record['predict_seconds']))} s** (" \
        f"{one_decimal(np.min(record['predict_seconds']))}-{one_decimal(np.max(record['predict_seconds']))})"
    assert rows["output pixels per second"] == figure(record["output_pixels_per_s"], lambda x: f"{round(x, -2):,.0f}")
    assert rows["bare network, batches of 16 tiles of 128 x 128"] == figure(
        [x / 1e6 for x in record["bare_network_pixels_per_s"]], two).replace(")", ")").replace(" (", " Mpx/s (", 1)
    overhead = next(value for key, value in rows.items() if key.startswith("overhead"))
    assert overhead == figure(record["overhead"], two).replace(" (", "x (", 1)
    rest = next(value for key, value in rows.items() if key.startswith("... and the rest"))
    assert rest == figure([value / record["redundancy"] for value in record["overhead"]], two).replace(" (", "x (", 1)
    assert record["commit"] and record["machine"]["cpu_model"]


def test_the_error_bar_table_of_the_trust_docs_is_the_uncertainty_record():
    """docs/trust.md's sampler table, each cell from docs/bench/uncertainty.json: the dispersion with its
    interval, the raw and calibrated (interval model) coverage, the worst bin and the rank correlation."""
    record = json.loads((REPO / "docs" / "bench" / "uncertainty.json").read_text())["candidates"]
    dear = json.loads((REPO / "docs" / "bench" / "uncertainty-ancestral.json").read_text())["candidates"]
    names = {"DPM-Solver++(2M)": "dpmpp2m-4", "DDIM, eta 1": "ddim-eta1-25", "Appendix B (ancestral)": "ancestral"}
    rows = readme_rows("| sampler | evaluations | level |", "docs/trust.md")
    assert len(rows) == sum(len(candidate["levels"]) for candidate in [*record.values(), *dear.values()])
    for cells in rows:
        candidate = {**record, **dear}[names[cells[0]]]
        row = candidate["levels"][cells[2].strip("`")]
        assert int(cells[1]) == candidate["evaluations"], cells
        posterior = row["posterior"]
        expected = [posterior["dispersion"], posterior["dispersion_ci95"], row["raw"]["coverage90"],
                    row["interval"]["coverage90"], row["interval"]["worst_gap"], row["rank_correlation"]]
        assert_printed(re.findall(NUMBER, " ".join(cells[3:])), expected, f"docs/trust.md {cells[:3]}")
    # the reading below the table, from the same record
    text, rows = doc_text("docs/trust.md"), [level for c in record.values() for level in c["levels"].values()]
    raw = [r["raw"]["coverage90"] for r in rows]
    calibrated = [r["interval"]["coverage90"] for r in rows]
    rank = [r["rank_correlation"] for r in rows]
    fast = record["dpmpp2m-4"]["models"]["interval"]
    assert f"holds {100 * min(raw):.0f} to {100 * max(raw):.0f} % of the pixels" in text
    assert f"coverage on the held-out cells to {min(calibrated):.2f} to {max(calibrated):.2f}" in text
    assert f"rank correlation {min(rank):.2f} to {max(rank):.2f}" in text
    assert f"(scale {fast['scale']:.1f}, floor {fast['floor']:.2f} for DPM-Solver++)" in text
    ancestral = dear["ancestral"]["levels"]
    assert f"(rank correlation {ancestral['level_09']['rank_correlation']:.2f})" in text
    assert f"holds {ancestral['level_09']['interval']['coverage90']:.2f} of the pixels at `level_09` with its worst bin " \
           f"within {ancestral['level_09']['interval']['worst_gap']:.2f}; at `level_01` it covers " \
           f"{ancestral['level_01']['interval']['coverage90']:.2f}" in text


def test_the_tutorial_task_robustness_table_is_its_record():
    """docs/benchmarks.md's verdicts of the tutorial-task models and the Gaussian rows of its reading, from
    docs/bench/robustness-tutorial.json."""
    record = json.loads((REPO / "docs" / "bench" / "robustness-tutorial.json").read_text())
    table = [card_cells(line) for line in (REPO / "docs" / "benchmarks.md").read_text().splitlines()
             if line.startswith(("| previous tutorial", "| shipped tutorial", "| previous regression", "| shipped regression",
                                 "| shipped probabilistic"))]
    names = ("previous-tutorial-l1", "tutorial-l1", "previous-regression", "regression", "probabilistic")
    assert len(table) == len(names) == len(record["verdicts"])
    for cells, name in zip(table, names):
        verdict = record["verdicts"][name]
        assert_printed(re.findall(NUMBER, " ".join(cells[1:3])), [verdict["least_gain_db"], verdict["spread_db"]], name)
        assert cells[3].startswith("met") == verdict["met"], name
    gaussian = {name: next(c["mean"] for c in model["conditions"] if c["optics"] == "gaussian")
                for name, model in record["models"].items()}
    text = doc_text("docs/benchmarks.md")
    for new, old in (("tutorial-l1", "previous-tutorial-l1"), ("regression", "previous-regression")):  # "more ... but"
        pairs = zip(record["models"][new]["conditions"], record["models"][old]["conditions"])
        assert all(n["mean"] > o["mean"] for n, o in pairs if n["optics"] == "measured"), new
    assert (f"the L1 model falls from {gaussian['previous-tutorial-l1']:+.2f} to {gaussian['tutorial-l1']:+.2f} dB and the "
            f"regression from {gaussian['previous-regression']:+.2f} to {gaussian['regression']:+.2f} dB") in text


def test_a_shipped_models_error_bar_table_is_its_calibrated_evaluation():
    """Each row of a card's "Error bars" table, from the card.json evaluation its calibration names: raw and
    calibrated coverage, the interval's width, ENCE, worst bin and the posterior check's dispersion; and the
    stored error model is that evaluation's validation fit."""
    shipped = [folder for folder in sorted((REPO / "pretrained").iterdir())
               if (folder / "card.json").is_file() and "calibration" in json.loads((folder / "card.json").read_text())]
    assert shipped, "no shipped model carries a calibration"
    for folder in shipped:
        numbers = json.loads((folder / "card.json").read_text())
        calibration = numbers["calibration"]
        evaluation = numbers["evaluations"][calibration["evaluation"]]
        fitted = evaluation["calibration"][calibration["method"]]
        assert (calibration["scale"], calibration["floor"]) == (fitted["scale"], fitted["floor"])
        rows = readme_rows("| level | coverage 90 %, raw |", str((folder / "MODEL_CARD.md").relative_to(REPO)))
        assert [cells[0] for cells in rows] == list(evaluation["levels"])
        for cells in rows:
            level = evaluation["levels"][cells[0]]
            row, raw = level["calibration"][calibration["method"]], level["calibration"]["raw"]
            posterior = level["quality"]["model"].get("posterior")  # none for a predicted std: no samples
            expected = [raw["coverage90"], row["coverage90"], row["width90"], row["ence"], row["worst_gap"],
                        *([] if posterior is None else [posterior["dispersion"]])]
            assert_printed(re.findall(NUMBER, " ".join(cells[1:])), expected, f"{folder.name} {cells[0]}")


ERROR_BAR_TABLES = {  # docs/trust.md's tables of accuracy and error bars: the header's start -> the record
    "| | regression | probabilistic regression |": "error-bars-tutorial",
    "| | native diffusion, mean of 8 | native probabilistic regression |": "error-bars-native",
}


@pytest.mark.parametrize("header", ERROR_BAR_TABLES)
def test_the_probabilistic_regression_tables_are_their_comparison_records(header):
    """Each cell of docs/trust.md's tables of the models' accuracy and error bars: the least and the most over
    the levels of its docs/bench/error-bars-*/comparison.json, for the evaluations the header names."""
    record = json.loads((REPO / "docs" / "bench" / ERROR_BAR_TABLES[header] / "comparison.json").read_text())["evaluations"]
    names = tuple(readme_header(header, "docs/trust.md")[1:])
    keys = {"fitted PSNR": None, "coverage of the raw": "coverage90_raw", "coverage, calibrated": "coverage90",
            "calibrated interval's width": "width90", "calibrated curve's worst bin": "worst_gap",
            "rank correlation": "rank_correlation"}
    rows = readme_rows(header, "docs/trust.md")
    assert len(rows) == len(keys) and set(names) == set(record)
    for cells, (label, key) in zip(rows, keys.items()):
        assert cells[0].startswith(label), cells
        for cell, name in zip(cells[1:], names):
            levels = record[name]["levels"].values()
            values = [level["model"]["psnr_fit"] if key is None else level["error_bars"].get(key) for level in levels]
            if None in values:  # no std at all, or a measure that evaluation did not record
                has_std = bool(record[name]["levels"]["level_09"]["error_bars"])
                assert cell.startswith("– (not recorded") if has_std else cell == "no std", (label, name, cell)
                continue
            assert_printed(re.findall(NUMBER, cell)[-2:], [min(values), max(values)], f"{label}, {name}")


def test_the_2048_error_bar_table_is_its_record():
    """docs/benchmarks.md's timing of an output with error bars, two ways: medians and extremes of the rounds in
    docs/bench/error_bars_2048.json, by numpy."""
    record = json.loads((REPO / "docs" / "bench" / "error_bars_2048.json").read_text())["error_bars"]
    rows = {cells[0]: cells[1] for cells in readme_rows("| workflow | median (min-max over", "docs/benchmarks.md")}

    def figure(values, digits):
        return f"{np.median(values):.{digits}f} ({np.min(values):.{digits}f}-{np.max(values):.{digits}f})"

    assert rows["diffusion, `--samples 8 --std --check`"] == figure(record["seconds"]["samples"], 0) + " s"
    assert rows["probabilistic regression, `--std --check`"] == figure(record["seconds"]["predicted"], 1) + " s"
    speedup = figure(record["speedup"], 2)
    assert rows["speed-up, round by round"] == "**" + speedup.replace(" (", "x** (", 1)
    assert record["verdict"] == "gain" and min(record["speedup"]) > 1


def test_the_predict_and_refine_tables_are_their_records():
    """docs/trust.md's tables of the residual model: each cell the least and the most over the levels of
    docs/bench/residual-tutorial/comparison.json (per evaluation, and its paired differences), and each sampler's
    row as docs/bench/uncertainty-residual*.json holds it."""
    record = json.loads((REPO / "docs" / "bench" / "residual-tutorial" / "comparison.json").read_text())
    header = "| | regression | probabilistic regression | L1 diffusion, one sample |"
    names = tuple(readme_header(header, "docs/trust.md")[1:])
    assert set(names) == set(record["evaluations"])
    keys = {"fitted PSNR": ("model", "psnr_fit"), "posterior dispersion": ("error_bars", "dispersion"),
            "coverage, calibrated": ("error_bars", "coverage90"), "rank correlation": ("error_bars", "rank_correlation"),
            "power above 1/4 cycle": ("detail", "one_sample"), "the same, output": ("detail", "output")}
    rows = readme_rows(header, "docs/trust.md")
    assert len(rows) == len(keys)
    for cells, (label, (part, key)) in zip(rows, keys.items()):
        assert cells[0].startswith(label), cells
        for cell, name in zip(cells[1:], names):
            values = [level[part].get(key) for level in record["evaluations"][name]["levels"].values()]
            if None in values:
                assert cell == "–", (label, name, cell)
                continue
            assert_printed(re.findall(NUMBER, cell), [min(values), max(values)], f"{label}, {name}")
    paired = {cells[0]: cells[1:] for cells in readme_rows("| paired difference, `level_01` to `level_09` |",
                                                           "docs/trust.md")}
    assert set(paired) == set(record["paired"])
    for pair, (means, halves) in paired.items():
        levels = record["paired"][pair].values()
        for cell, key in ((means, "mean"), (halves, "ci95_half_width")):
            values = [level[key] for level in levels]
            assert_printed(re.findall(NUMBER, cell), [min(values), max(values)], f"{pair} {key}")
    titles = {"dpmpp2m": "DPM-Solver++(2M)", "ddim": "DDIM, eta 1", "x0": "Appendix B (ancestral)"}
    rows = readme_rows("| sampler | evaluations | level | dispersion | coverage calibrated | one sample's", "docs/trust.md")
    expected = []
    for name in ("uncertainty-residual.json", "uncertainty-residual-ancestral.json"):
        for candidate in json.loads((REPO / "docs" / "bench" / name).read_text())["candidates"].values():
            for level, row in candidate["levels"].items():
                if level in ("level_01", "level_09"):
                    expected.append((titles[candidate["sampler"]], str(candidate["evaluations"]), f"`{level}`",
                                     [row["posterior"]["dispersion"], row["posterior"]["dispersion_ci95"],
                                      row["interval"]["coverage90"], row["hf_power_sample_db"]]))
    assert len(rows) == len(expected)
    for cells, (title, evaluations, level, values) in zip(rows, expected):
        assert cells[:3] == [title, evaluations, level], cells
        assert_printed(re.findall(NUMBER, " ".join(cells[3:])), values, " ".join(cells[:3]))


def test_the_predict_and_refine_study_reading_says_what_its_record_says():
    """Each range of docs/study.md's reading of the residual study, the least and the most over the levels of
    docs/study-residual/study.json, and the posterior check's verdict per level from its intervals."""
    results = json.loads((REPO / "docs" / "study-residual" / "study.json").read_text())["results"]
    text = doc_text("docs/study.md").split("## Predict and refine")[1].split("## The native task")[0]

    def values(evaluation, row, protocol, metric, minus=None):
        found = []
        for rows in results[evaluation].values():
            value = rows[row][protocol][metric]["mean"]
            found.append(value - rows[minus][protocol][metric]["mean"] if minus else value)
        return min(found), max(found)

    def stated(low, high, digits=2):
        return f"{low:.{digits}f} to {high:.{digits}f}"

    paired = values("evaluation-mean", "residual - regression (paired)", "fitted", "psnr")
    assert f"stays {stated(-paired[1], -paired[0])} dB below the 12-epoch regression" in text
    assert all(rows["residual - regression (paired)"]["fitted"]["psnr"]["mean"]
               + rows["residual - regression (paired)"]["fitted"]["psnr"]["ci95_half_width"] < 0
               for rows in results["evaluation-mean"].values())  # "the paired interval clears 0 at every level"
    base = values("evaluation-mean", "residual", "fitted", "psnr", minus="regression-6")
    assert f"and {stated(-base[1], -base[0])} dB below its own 6-epoch base" in text
    one = values("evaluation-1", "residual - regression (paired)", "fitted", "psnr")
    assert f"Its single sample is {stated(-one[1], -one[0])} dB behind the regression" in text
    ahead = values("evaluation-1", "residual", "fitted", "psnr", minus="l1")
    assert f"diffusion's single sample by {stated(*ahead)} dB" in text
    for arm, words in (("residual", "one residual sample holds"), ("l1", "L1's sample"), ("regression", "the regression")):
        low, high = values("evaluation-mean", arm, "detail", "hf_power_sample_db")
        assert f"{words} {stated(-high, -low)} dB less" in text, arm
    for arm, words in (("residual", "dispersion"), ("l1", "against L1's")):
        assert f"{words} {stated(*values('evaluation-mean', arm, 'trust', 'dispersion'))}" in text, arm
    reaches = {arm: [level for level, rows in results["evaluation-mean"].items()
                     if rows[arm]["trust"]["dispersion"]["mean"] + rows[arm]["trust"]["dispersion"]["ci95_half_width"] >= 0.8]
               for arm in ("residual", "l1")}
    assert reaches["residual"] == [] and reaches["l1"] == ["level_07", "level_08", "level_09"]
    sharper = [level for level, rows in results["evaluation-mean"].items()
               if rows["residual"]["detail"]["hf_power_sample_db"]["mean"] > rows["l1"]["detail"]["hf_power_sample_db"]["mean"]]
    assert sharper == [f"level_0{index}" for index in range(1, 8)]  # "more up to level_07, a little less above"
    readme = doc_text()
    assert f"{ahead[0]:.1f} to {ahead[1]:.1f} dB closer to the target" in readme
    assert f"its mean of 8 stays {stated(-paired[1], -paired[0])} dB below the regression" in readme
