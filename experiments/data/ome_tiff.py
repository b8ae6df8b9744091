"""Physical pixel sizes in and out of TIFs: read them from OME, ImageJ or resolution tags; write OME-TIFF.

All sizes are in micrometres per pixel (OME's default unit, ``PhysicalSizeXUnit="µm"``). Outputs are
OME-TIFF (OME-XML in the first page's ImageDescription, the OME 2016-06 schema as tifffile writes it), so
Fiji / Bio-Formats, napari and QuPath show them at their true scale; our JSON metadata then lives in the
OME ``Image/Description`` element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import tifffile

# OME's length units (the ones microscopes use) in micrometres.
_UNITS_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
# TIFF ResolutionUnit: 2 inch, 3 centimetre (micrometres per unit).
_RESOLUTION_UNIT_UM = {2: 25400.0, 3: 1e4}


def ome_metadata(axes: str, pixel_size_um: float | None, description: str) -> dict:
    """tifffile's ``metadata`` for an OME-TIFF of ``axes`` (e.g. "YX", "TYX") with square pixels of ``pixel_size_um``."""
    metadata = {"axes": axes, "Description": description}
    if pixel_size_um is not None:
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


def pixel_size_um(tif: tifffile.TiffFile) -> float | None:
    """The x pixel size of an open TIF in µm, or None when the file does not say.

    Looked up in order: OME ``Pixels/@PhysicalSizeX`` (with its unit, µm by default); ImageJ's ``unit``
    with the XResolution tag (pixels per unit); the XResolution tag with ResolutionUnit inch or cm.
    """
    page = tif.pages[0]
    if tif.is_ome:
        pixels = next((e for e in ElementTree.fromstring(tif.ome_metadata).iter() if e.tag.endswith("}Pixels")), None)
        if pixels is not None and pixels.get("PhysicalSizeX"):
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            if unit in _UNITS_UM:
                return float(pixels.get("PhysicalSizeX")) * _UNITS_UM[unit]
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
