"""`_launch.broadcast_shape`: the host-side broadcast every generated launch uses instead of
`torch.broadcast_shapes` (which costs more host time than a small kernel runs)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sparkc.runtime import launch

dims = st.lists(st.integers(0, 4), min_size=0, max_size=4)


@given(st.lists(dims, min_size=1, max_size=4))
def test_matches_torch_broadcast_shapes(shapes):
    try:
        want = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        with pytest.raises(RuntimeError, match="cannot be broadcast"):
            launch.broadcast_shape(*shapes)
        return
    assert launch.broadcast_shape(*shapes) == want


def test_error_names_the_shapes():
    with pytest.raises(RuntimeError, match=r"\[2, 3\], \[4\]"):
        launch.broadcast_shape((2, 3), (4,))
