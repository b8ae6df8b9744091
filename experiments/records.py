"""A run's records as data: the metric vocabulary and one typed record per epoch, with its scores per split.

Training appends an :class:`EpochRecord` per epoch; the run folder writes them to ``metrics.json`` (one
object per epoch, scores nested by split) and ``metrics.csv`` (one row per epoch, a ``<split>/<metric>``
column per score, for spreadsheets); the report and the Model Zoo export read them back with
:func:`read_records`. The flat column names are made and parsed here only.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from experiments.integrity.atomic import atomic_path

from experiments.integrity.json_files import write_json

MetricName = Literal["mae", "nrmse", "ssim", "ms_ssim", "psnr"]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
HIGHER_IS_BETTER: dict[str, bool] = {"mae": False, "nrmse": False, "ssim": True, "ms_ssim": True, "psnr": True}
METRIC_LABELS: dict[str, str] = {
    "mae": "MAE", "nrmse": "NRMSE", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "psnr": "PSNR (dB)"
}  # fmt: skip
# The paper's rows (Table 1: the MSE and the L1 run) a run can be compared with.
PaperKey = Literal["mse", "l1"]
PAPER_KEYS: tuple[str, ...] = get_args(PaperKey)
# The split whose scores choose best.pt; test splits are named by their level (level_01 .. level_09).
VALIDATION = "validate"

JSON_FILE = "metrics.json"
CSV_FILE = "metrics.csv"

# The scores of one split: MetricAccumulator.compute()'s {metric, metric_mean, metric_std, images}.
Scores = dict[str, float]


@dataclass
class EpochRecord:
    """One epoch of a run: its mean training loss, its training seconds, and the scores of every split
    evaluated after it (none on epochs without evaluation), keyed by split name."""

    epoch: int
    loss: float
    seconds: float
    scores: dict[str, Scores] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loss": self.loss, "seconds": self.seconds,
                "scores": {split: dict(values) for split, values in self.scores.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EpochRecord":
        """The record of :meth:`to_json`, or of a flat row (``"<split>/<metric>"`` keys, as ``metrics.csv``
        and runs written before records were nested)."""
        if not isinstance(data, Mapping) or not {"epoch", "loss", "seconds"} <= set(data):
            raise ValueError(f"an epoch record needs epoch, loss and seconds, got {data!r:.200}")
        scores: dict[str, Scores] = {split: dict(values) for split, values in data.get("scores", {}).items()}
        for key, value in data.items():
            if "/" in key:
                split, metric = key.split("/", 1)
                scores.setdefault(split, {})[metric] = value
        return cls(int(data["epoch"]), float(data["loss"]), float(data["seconds"]), scores)

    def row(self) -> dict[str, float]:
        """The flat form of ``metrics.csv``: epoch, loss, seconds, then ``<split>/<metric>`` per score."""
        flat: dict[str, float] = {"epoch": self.epoch, "loss": self.loss, "seconds": self.seconds}
        for split, values in self.scores.items():
            flat.update({f"{split}/{metric}": value for metric, value in values.items()})
        return flat


def last_scores(records: list[EpochRecord], split: str) -> tuple[int, Scores] | None:
    """The epoch and scores of the last record that evaluated ``split``, or None."""
    return next(((r.epoch, r.scores[split]) for r in reversed(records) if split in r.scores), None)


def evaluated(records: list[EpochRecord], split: str) -> list[tuple[int, Scores]]:
    """Every (epoch, scores) of ``split``, in epoch order."""
    return [(record.epoch, record.scores[split]) for record in records if split in record.scores]


def write_records(folder: Path, records: list[EpochRecord]) -> None:
    """``metrics.json`` and ``metrics.csv`` of ``records`` in ``folder``, each replaced atomically."""
    write_json(folder / JSON_FILE, [r.to_json() for r in records])
    rows = [record.row() for record in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    _write_text(folder / CSV_FILE, text.getvalue())


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(text.encode())


def read_records(folder: Path) -> list[EpochRecord]:
    """The records of ``folder/metrics.json``; raises OSError or ValueError when it cannot be read."""
    data = json.loads((folder / JSON_FILE).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{folder / JSON_FILE}: expected a list of epoch records, got {type(data).__name__}")
    return [EpochRecord.from_json(entry) for entry in data]
