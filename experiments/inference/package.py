"""A BioImage Model Zoo package this project exported, run as deepImageJ runs it: its TorchScript weights
between the pre- and post-processing its rdf declares (:func:`preprocess`, :func:`postprocess`).

    module = load_package("model.zip")
    output = run_package(module, frame)        # frame [h, w] in any units -> [H, W] in [0, 1]

The weights hold the whole deterministic chain (:mod:`experiments.inference.scripted_sampler`), with the
sampler, steps and seed fixed at export; run here step by step through its exported parts, so a caller can
stop between network calls. Nothing but torch is needed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from experiments.data.normalization import from_model_range, min_max_to_model_range
from experiments.inference.loading import InferenceError
from experiments.inference.scripted_sampler import load_scripted

WEIGHTS_NAME = "sampler.pt"  # the TorchScript weights' name inside a package (experiments.export writes it)


def preprocess(image: np.ndarray) -> np.ndarray:
    """The package's pre-processing in numpy: :func:`~experiments.data.normalization.min_max_to_model_range`."""
    return min_max_to_model_range(image)


def postprocess(output: np.ndarray) -> np.ndarray:
    """The package's post-processing ``(v + 1) / 2``: :func:`~experiments.data.normalization.from_model_range`."""
    return from_model_range(output)


def load_package(path: str | Path) -> torch.jit.ScriptModule:
    """The weights of the package at ``path``; an :class:`InferenceError` naming it when it is not a zip of
    this project's (no ``sampler.pt``) or its weights cannot be loaded."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as package:
            weights = package.read(WEIGHTS_NAME)
    except (OSError, zipfile.BadZipFile) as error:
        raise InferenceError(f"{path}: cannot be read as a Model Zoo package ({error}); give the .zip that "
                             "experiments.export wrote, or a checkpoint (.pt)") from error
    except KeyError as error:
        raise InferenceError(f"{path}: a zip without {WEIGHTS_NAME}: not a package of this project; give the .zip "
                             "that experiments.export wrote, or a checkpoint (.pt)") from error
    try:
        return load_scripted(weights)
    except RuntimeError as error:
        raise InferenceError(f"{path}: its weights {WEIGHTS_NAME} cannot be loaded ({error}); export it again") from error


def run_package(module: torch.jit.ScriptModule, frame: np.ndarray,
                on_call: Callable[[int, int], None] | None = None) -> np.ndarray:
    """One frame [h, w] through the package: min / max scaling, the weights, ``(v + 1) / 2``.

    ``on_call(done, total)`` is called after each network call: the weights are stepped through their
    exported parts (``start``, ``step``, which ``forward`` itself runs), so an exception raised there stops
    the chain within one call. A package exported before those parts existed runs whole, as one call."""
    widefield = torch.from_numpy(preprocess(frame[None]))[None]
    with torch.no_grad():
        if not hasattr(module, "step"):
            output = module(widefield)
            if on_call is not None:
                on_call(1, 1)
        else:
            padded, x, previous, height, width, top, left = module.start(widefield)
            total = module.count()
            for i in range(total):
                x, previous = module.step(i, padded, x, previous)
                if on_call is not None:
                    on_call(i + 1, total)
            output = x[:, :, top : top + height, left : left + width]
    return postprocess(output[0, 0].numpy())
