"""Ship a trained model: an inference-only checkpoint with its model card, as in ``pretrained/``.

    python -m experiments.publish --checkpoint runs/native-.../best.pt --out pretrained/native \\
        --evaluation "1 sample=runs/native-.../evaluation-1" --evaluation "mean of 8=runs/native-.../evaluation-8" \\
        --title "Native task, L1 diffusion" --summary "..." --limit "..."

writes ``<out>/model.pt`` (:func:`experiments.checkpoint.inference_only`), ``<out>/MODEL_CARD.md``
and ``<out>/card.json`` (:mod:`experiments.publishing.model_card`; the numbers come from the named
``evaluation.json`` files). ``--example PATH`` also writes an example input: a camera-grid widefield
image of the held-out test cell 003 (OME-TIFF, 62.6 nm pixels), made as the native task's inputs are.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

import tifffile

from ddpm.settings import UsageError
from experiments.checkpoint import inference_only, write_checkpoint
from experiments.config.schema import RunConfig
from experiments.command import CommandParser, run_command
from experiments.microscope.biosr_sim import CELL_SPLIT, example_widefield
from experiments.data.task import BIOSR_CAMERA_PIXEL_UM
from experiments.evaluation.report import read_named_evaluations
from experiments.integrity.atomic import atomic_path
from experiments.integrity.json_files import write_json
from experiments.integrity.outputs import check_output_folder, check_outputs
from experiments.publishing.model_card import (
    CARD_FILE,
    MODEL_FILE,
    card_json,
    model_card,
    read_robustness,
    shipped_calibration,
)
from experiments.trust.calibration import CALIBRATION_METHODS

EXAMPLE_CELL, EXAMPLE_SIDE, EXAMPLE_LEVEL = CELL_SPLIT["test"][0], 512, 9  # 512 SIM px = 16 um, 256 camera px


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m experiments.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run's best.pt or last.pt")
    parser.add_argument("--out", type=Path, required=True, help="folder for model.pt, MODEL_CARD.md and card.json")
    parser.add_argument("--evaluation", action="append", default=[], metavar="NAME=FOLDER",
                        help="an evaluation folder of experiments.evaluate (its evaluation.json), named in the card")
    parser.add_argument("--title", required=True)
    parser.add_argument("--summary", required=True, help="what the model is, in a sentence or two")
    parser.add_argument("--limit", action="append", default=[], help="a limit of this model (repeatable)")
    parser.add_argument("--trained-on", help="the machine the model was trained on, for the card (e.g. '2 CPU cores')")
    parser.add_argument("--robustness", metavar="NAME=FILE",
                        help="the model's gain across microscopes: its entry NAME in the JSON of experiments.bench.robustness")
    parser.add_argument("--calibration", choices=CALIBRATION_METHODS,
                        help="ship the std map's error model of this method, fitted on the validation split by the first "
                             "--evaluation with a std (2 or more samples, or a probabilistic regression; docs/trust.md)")
    parser.add_argument("--example", type=Path, help="also write the example input (an .ome.tif) here")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier publication in --out")
    return parser


def run(args: argparse.Namespace) -> None:
    evaluations = read_named_evaluations(args.evaluation, "--evaluation")
    robustness = read_robustness(args.robustness) if args.robustness else None
    if not evaluations:
        raise UsageError("a model card needs measured metrics: pass --evaluation NAME=FOLDER at least once")
    model, card, numbers = args.out / MODEL_FILE, args.out / CARD_FILE, args.out / "card.json"
    outputs = [model, card, numbers] + ([args.example] if args.example else [])
    check_output_folder(args.out, [args.checkpoint])
    check_outputs(outputs, [args.checkpoint], args.overwrite)
    shipped = inference_only(args.checkpoint)
    calibrated_by = None
    if args.calibration:
        steps = RunConfig.from_dict(shipped.config).diffusion.steps
        calibrated_by, calibration = shipped_calibration(evaluations, args.calibration, steps)
        shipped = replace(shipped, calibration=asdict(calibration))
    args.out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(shipped, model)
    text = model_card(args.title, args.summary, shipped, evaluations, args.limit, model, model.stat().st_size,
                      args.trained_on, robustness, calibrated_by)
    with atomic_path(card) as temporary:
        temporary.write_text(text)
    write_json(numbers, card_json(shipped, evaluations, robustness, calibrated_by))
    print(f"wrote {model} ({model.stat().st_size / 1e6:.1f} MB), {card} and {numbers}")
    if args.example:
        image = example_widefield(EXAMPLE_CELL, EXAMPLE_SIDE, EXAMPLE_LEVEL)
        size = BIOSR_CAMERA_PIXEL_UM
        with atomic_path(args.example) as temporary:
            tifffile.imwrite(temporary, image, ome=True, metadata={
                "axes": "YX", "PhysicalSizeX": size, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": size,
                "PhysicalSizeYUnit": "µm", "Description": f"widefield of held-out BioSR {EXAMPLE_CELL}, level_0"
                f"{EXAMPLE_LEVEL}, made from its SIM image by experiments/microscope/widefield.py (BioSR, CC BY 4.0)"})
        print(f"wrote {args.example} ({image.shape[0]} x {image.shape[1]} px of {size * 1000:.1f} nm)")


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
