"""Default hook implementations of ``fulmen.core.hooks``: Lightning 1.x's ``tbptt_split_batch``."""

from __future__ import annotations

import pytest
import torch

from fulmen.core.hooks import split_along_time
from fulmen.errors import MisconfigurationException


def test_tensors_split_along_dim_1_and_sequences_item_by_item() -> None:
    x = torch.arange(2 * 5 * 3).reshape(2, 5, 3)
    items = [torch.arange(5), torch.arange(10, 15)]
    splits = split_along_time([x, items], 2)
    assert len(splits) == 3
    assert [list(s[0].shape) for s in splits] == [[2, 2, 3], [2, 2, 3], [2, 1, 3]]
    assert torch.equal(splits[1][0], x[:, 2:4])
    assert [[i.tolist() for i in s[1]] for s in splits] == [[[0, 1], [10, 11]], [[2, 3], [12, 13]], [[4], [14]]]


def test_a_batch_whose_sequences_differ_in_length_is_a_clear_error() -> None:
    with pytest.raises(MisconfigurationException, match=r"(?s)time lengths \[4, 5\].*HINT: override tbptt_split_batch"):
        split_along_time([torch.zeros(2, 5), torch.zeros(2, 4)], 2)
