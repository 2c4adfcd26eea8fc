"""pl.strategies: Lightning's import path for the strategies fulmen has, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fulmen as pl


def test_lightning_names_resolve_to_the_runtime_classes() -> None:
    from fulmen.runtime.distributed import DDPStrategy
    from fulmen.runtime.fsdp import FSDPStrategy
    from fulmen.runtime.strategy import ParallelStrategy, SingleDeviceStrategy, Strategy

    assert pl.strategies.DDPStrategy is DDPStrategy and pl.strategies.FSDPStrategy is FSDPStrategy
    assert pl.strategies.SingleDeviceStrategy is SingleDeviceStrategy and pl.strategies.Strategy is Strategy
    assert issubclass(FSDPStrategy, DDPStrategy) and issubclass(DDPStrategy, ParallelStrategy)
    assert sorted(pl.strategies.__all__) == sorted(
        ["Strategy", "ParallelStrategy", "SingleDeviceStrategy", "DDPStrategy", "FSDPStrategy"])


@pytest.mark.parametrize("name", ["DeepSpeedStrategy", "ModelParallelStrategy"])
def test_lightning_strategies_fulmen_lacks_say_what_to_use(name: str) -> None:
    with pytest.raises(AttributeError, match=f"fulmen.strategies has no {name}(.|\n)*HINT: use FSDPStrategy"):
        getattr(pl.strategies, name)
    with pytest.raises(AttributeError, match="has no attribute 'Nonsense'"):
        pl.strategies.Nonsense  # noqa: B018


def test_importing_strategies_loads_no_strategy_module(subprocess_env: dict[str, str]) -> None:
    probe = ("import sys, fulmen.strategies\n"
             "print(sorted(m for m in ('fulmen.runtime.fsdp', 'fulmen.runtime.distributed', "
             "'torch.distributed.fsdp') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], env=subprocess_env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
