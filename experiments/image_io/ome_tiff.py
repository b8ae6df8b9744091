"""Physical pixel sizes in and out of TIFs: read them from OME, ImageJ or resolution tags; write OME-TIFF.

All sizes are in micrometres per pixel (OME's default unit, ``PhysicalSizeXUnit="µm"``). Outputs are
OME-TIFF (OME-XML in the first page's ImageDescription, the OME 2016-06 schema as tifffile writes it), so
Fiji / Bio-Formats, napari and QuPath show them at their true scale; our JSON metadata then lives in the
OME ``Image/Description`` element.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree

import tifffile

from ddpm.settings import Range, check_value

# The valid pixel sizes in µm, wherever a size comes from: a file's metadata, --pixel-size, what is written.
PIXEL_SIZES_UM = Range(0.0, None, low_open=True)
# OME's length units (the ones microscopes use) in micrometres.
_UNITS_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
# TIFF ResolutionUnit: 2 inch, 3 centimetre (micrometres per unit).
_RESOLUTION_UNIT_UM = {2: 25400.0, 3: 1e4}


def ome_metadata(axes: str, pixel_size_um: float | None, description: str) -> dict:
    """tifffile's ``metadata`` for an OME-TIFF of ``axes`` (e.g. "YX", "TYX") with square pixels of ``pixel_size_um``."""
    metadata = {"axes": axes, "Description": description}
    if pixel_size_um is not None:
        check_value(pixel_size_um, PIXEL_SIZES_UM, "the output pixel size in µm")
        for axis in ("X", "Y"):
            metadata[f"PhysicalSize{axis}"] = pixel_size_um
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    return metadata


def _ome_image(description: str) -> ElementTree.Element | None:
    root = ElementTree.fromstring(description)
    return next((element for element in root.iter() if element.tag.endswith("}Image")), None)


def ome_description(description: str) -> str | None:
    """The text of the first OME ``Image/Description`` in an OME-XML string, or None."""
    image = _ome_image(description)
    if image is None:
        return None
    element = next((child for child in image if child.tag.endswith("}Description")), None)
    return None if element is None else element.text


def valid_pixel_size(stated: float | None) -> tuple[float | None, str | None]:
    """``(size, None)`` for a stated size in :data:`PIXEL_SIZES_UM`; ``(None, reason)`` for any other (0,
    negative, NaN, infinite: metadata a microscope or a script got wrong); ``(None, None)`` for none."""
    if stated is None or PIXEL_SIZES_UM.contains(stated):
        return stated, None
    return None, f"its metadata states a pixel size of {stated:g} µm, which is not {PIXEL_SIZES_UM.describe()} µm"


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan  # not a number: refused with the rest by valid_pixel_size


def pixel_size_um(tif: tifffile.TiffFile) -> float | None:
    """The x pixel size an open TIF states, in µm (any number, checked by :func:`valid_pixel_size`; NaN
    for text that is no number), or None when the file does not say.

    Looked up in order: OME ``Pixels/@PhysicalSizeX`` (with its unit, µm by default); ImageJ's ``unit``
    with the XResolution tag (pixels per unit); the XResolution tag with ResolutionUnit inch or cm.
    """
    page = tif.pages[0]
    if tif.is_ome:
        pixels = next((e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("}Pixels")), None)
        if pixels is not None and pixels.get("PhysicalSizeX"):
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            if unit in _UNITS_UM:
                return _number(pixels.get("PhysicalSizeX")) * _UNITS_UM[unit]
    x_resolution = page.tags.get("XResolution")
    if x_resolution is None:
        return None
    numerator, denominator = x_resolution.value
    if numerator == 0 or denominator == 0:
        return None
    per_pixel = denominator / numerator  # units per pixel
    imagej_unit = (tif.imagej_metadata or {}).get("unit")
    if imagej_unit is not None:
        unit = str(imagej_unit).replace("\\u00B5", "µ")
        return per_pixel * _UNITS_UM[unit] if unit in _UNITS_UM else None
    unit_tag = page.tags.get("ResolutionUnit")
    unit_code = int(unit_tag.value) if unit_tag is not None else 2
    return per_pixel * _RESOLUTION_UNIT_UM[unit_code] if unit_code in _RESOLUTION_UNIT_UM else None
