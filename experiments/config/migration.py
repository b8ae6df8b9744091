"""Reading configurations that older versions wrote: what they held is a fixed fact, declared here.

    data = upgrade(json.loads(path.read_text()))    # then RunConfig.from_dict(data)
"""

from __future__ import annotations

from typing import Any

# Configs written before sampling had its own section kept these fields in "eval".
SAMPLING_FIELDS_IN_EVAL = ("sampler", "variance", "sampling_steps", "eta", "samples")
# Run folders written before networks had names hold a U-Net's fields and no "kind".
LEGACY_KIND = "unet"


def upgrade(data: Any) -> Any:
    """``data`` (a ``config.json`` object) in today's layout: the sampling fields of older files moved from
    ``eval`` to their own section, and a network section without a kind named the U-Net's. Anything that
    is not an object is returned as it is, for the schema to refuse."""
    if not isinstance(data, dict):
        return data
    evaluation = data.get("eval")
    if "sampling" not in data and isinstance(evaluation, dict):
        moved = {key: value for key, value in evaluation.items() if key in SAMPLING_FIELDS_IN_EVAL}
        if moved:
            kept = {key: value for key, value in evaluation.items() if key not in SAMPLING_FIELDS_IN_EVAL}
            data = {**data, "eval": kept, "sampling": moved}
    network = data.get("network")
    if isinstance(network, dict) and "kind" not in network:
        data = {**data, "network": {"kind": LEGACY_KIND, **network}}
    return data
