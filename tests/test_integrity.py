"""The one atomic writer (experiments.integrity.atomic) and the one NaN / inf counter (.finite)."""

import numpy as np
import pytest
import torch

from experiments.integrity.atomic import atomic_path, temporaries_of

from experiments.integrity.finite import count_non_finite


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert temporaries_of(target) == []


@pytest.mark.parametrize("durable", [False, True])
def test_a_finished_write_replaces_the_file_with_the_usual_mode(tmp_path, durable):
    target = tmp_path / "sub" / "out.bin"
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    with atomic_path(target, durable=durable) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".out.bin.")
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode == plain.stat().st_mode
    assert temporaries_of(target) == []


def test_non_finite_values_are_counted_in_arrays_and_tensors():
    values = [0.0, np.nan, np.inf, -np.inf, 1e30]
    assert count_non_finite(np.array(values, dtype=np.float32)) == 3
    assert count_non_finite(torch.tensor(values, dtype=torch.float16)) == 4  # 1e30 overflows float16 to inf
    assert count_non_finite(np.arange(5)) == 0
    assert count_non_finite(torch.arange(5)) == 0
