"""The parity comparison forgives another CPU's rounding and nothing else."""

from __future__ import annotations

from tests.compat.normalise import agree


def test_last_digit_float_differences_agree() -> None:
    assert agree({"losses": [12.550585, 0.050817]}, {"losses": [12.550588, 0.050818]})
    assert agree(1, 1.0)


def test_behavioural_differences_do_not_agree() -> None:
    assert not agree([0.1, 0.2], [0.1, 0.2, 0.3])  # an extra step
    assert not agree({"lr": 0.001}, {"lr": 0.0011})  # a wrong learning rate
    assert not agree({"lr": 1e-06}, {"lr": 1e-05})  # small values are not all "close"
    assert not agree({"a": 1.0}, {"b": 1.0})
    assert not agree(3, 4)
    assert not agree(True, 1.0)
    assert not agree("nan", 0.0)
    assert not agree({"step": 5}, {"step": 5.5})
