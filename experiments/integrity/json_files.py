"""Every JSON file the project writes: strict (no NaN or infinity, an undefined value noted), replaced
atomically, and holding no path of the machine that wrote it (:func:`portable_path`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from experiments.integrity.atomic import atomic_path

NOTE_SUFFIX = "_note"


def portable_path(path: str | Path) -> str:
    """``path`` as a record states it: relative to the working directory when it lies inside it (a run folder
    or a checkpoint of the checkout), else as given, so that records written and committed in a checkout hold
    no path of the machine that wrote them."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def strict_json(data):
    """``data`` with every NaN or infinite float replaced by ``None`` and, inside an object, a sibling
    ``"<key>_note"`` saying which value was undefined: JSON has no NaN or infinity (``json.dumps`` would
    write the invalid tokens ``NaN`` and ``Infinity``). A producer that knows why a measure is undefined
    writes ``None`` and its own note; this catches the rest."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        cleaned = {}
        for key, value in data.items():
            cleaned[key] = strict_json(value)
            if isinstance(value, float) and not math.isfinite(value):
                cleaned.setdefault(f"{key}{NOTE_SUFFIX}", f"undefined (the measure came out as {value})")
        return cleaned
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def json_text(data, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (:func:`strict_json`), ending in a newline when indented."""
    text = json.dumps(strict_json(data), indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`) to ``path``, replaced atomically (:func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json_text(data, indent), encoding="utf-8")
    return path
