"""Trial generation: the value syntax, grid and random order, seeds, the sweep file, bad input."""

from __future__ import annotations

import pytest

from fulmen.errors import LaunchError
from fulmen.sweep.space import SweepSpace, parse_sweep_option, space_from_file_data, typed_value


def test_a_list_keeps_each_value_as_written_and_types_it_for_the_json() -> None:
    parameter = parse_sweep_option("lr=1e-3, 0.1,adam")
    assert parameter.name == "lr"
    assert parameter.texts == ("1e-3", "0.1", "adam")
    assert parameter.values == (0.001, 0.1, "adam")


def test_range_is_evenly_spaced_with_both_ends_and_whole_numbers_stay_ints() -> None:
    assert parse_sweep_option("hidden=range(8, 32, 4)").texts == ("8", "16", "24", "32")
    assert parse_sweep_option("dropout=range(0, 0.5, 3)").texts == ("0", "0.25", "0.5")
    assert parse_sweep_option("x=range(2, 9, 1)").texts == ("2",)


def test_log_range_is_evenly_spaced_on_a_log_scale() -> None:
    assert parse_sweep_option("lr=log_range(1e-4, 1e-1, 4)").values == pytest.approx((1e-4, 1e-3, 1e-2, 1e-1))


def test_grid_is_every_combination_first_parameter_slowest_and_trials_takes_the_first_n() -> None:
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01"), parse_sweep_option("hidden=8,16")))
    trials = space.generate()
    assert [t.index for t in trials] == [0, 1, 2, 3]
    assert [t.values for t in trials] == [
        {"lr": 0.1, "hidden": 8}, {"lr": 0.1, "hidden": 16}, {"lr": 0.01, "hidden": 8}, {"lr": 0.01, "hidden": 16},
    ]
    assert trials[1].script_args() == ["--lr", "0.1", "--hidden", "16"]
    first_three = SweepSpace(space.parameters, trials=3).generate()
    assert [t.values for t in first_three] == [t.values for t in trials[:3]]


def test_random_draws_are_reproducible_from_the_seed_and_differ_between_seeds() -> None:
    parameters = (parse_sweep_option("lr=log_range(1e-5, 1, 6)"), parse_sweep_option("hidden=range(8, 128, 16)"))
    draws = [SweepSpace(parameters, "random", trials=6, seed=seed).generate() for seed in (7, 7, 8)]
    assert [t.texts for t in draws[0]] == [t.texts for t in draws[1]]
    assert [t.texts for t in draws[0]] != [t.texts for t in draws[2]]
    allowed = {name: set(p.texts) for name, p in zip(("lr", "hidden"), parameters)}
    assert all(text in allowed[name] for trial in draws[0] for name, text in trial.texts)
    assert len(draws[0]) == 6


def test_the_space_round_trips_through_its_json_form_in_order() -> None:
    space = SweepSpace((parse_sweep_option("zeta=1,2"), parse_sweep_option("alpha=3")), "random", 4, 11)
    again = SweepSpace.from_dict(space.to_dict())
    assert again == space
    assert [t.texts for t in again.generate()] == [t.texts for t in space.generate()]


def test_a_sweep_file_gives_lists_ranges_and_settings() -> None:
    data = {"mode": "random", "trials": 5, "seed": 3,
            "parameters": {"lr": [0.1, 0.01], "hidden": "range(8, 16, 2)", "amp": True}}
    space = space_from_file_data(data, "sweep.yaml")
    assert (space.mode, space.trials, space.seed) == ("random", 5, 3)
    assert [p.texts for p in space.parameters] == [("0.1", "0.01"), ("8", "16"), ("true",)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "is not NAME=VALUES"),
        ("=0.1", "is not NAME=VALUES"),
        ("lr=", "has an empty value"),
        ("lr=0.1,,0.2", "has an empty value"),
        ("--lr=0.1", "is not an option name"),
        ("lr=range(1, 2)", "is not range(LOW, HIGH, COUNT)"),
        ("lr=log_range(0, 1, 3)", "LOW, HIGH > 0"),
        ("lr=range(1, 2, 0)", "COUNT >= 1"),
    ],
)
def test_malformed_sweep_options_are_refused_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(LaunchError, match="HINT") as caught:
        parse_sweep_option(text)
    assert message in str(caught.value)


def test_impossible_spaces_are_refused() -> None:
    lr = parse_sweep_option("lr=0.1")
    with pytest.raises(LaunchError, match="more than once"):
        SweepSpace((lr, parse_sweep_option("lr=0.2")))
    with pytest.raises(LaunchError, match="--trials 8"):
        SweepSpace((lr,), "random")
    with pytest.raises(LaunchError, match="--trials must be >= 1"):
        SweepSpace((lr,), trials=0)
    with pytest.raises(LaunchError, match="at least one parameter"):
        SweepSpace(())
    with pytest.raises(LaunchError, match="unknown key"):
        space_from_file_data({"parameters": {"lr": [1]}, "trails": 3}, "sweep.yaml")
    with pytest.raises(LaunchError, match="'parameters' mapping"):
        space_from_file_data([1, 2], "sweep.yaml")


def test_typed_value() -> None:
    assert [typed_value(t) for t in ("8", "-1", "0.5", "1e-3", "True", "adam")] == [8, -1, 0.5, 0.001, True, "adam"]


def test_random_draws_are_distinct_and_never_more_than_the_space_holds() -> None:
    parameters = (parse_sweep_option("lr=0.1,0.01"), parse_sweep_option("hidden=8,16,32"))
    trials = SweepSpace(parameters, "random", trials=50, seed=0).generate()
    assert len(trials) == 6
    assert len({t.texts for t in trials}) == 6
