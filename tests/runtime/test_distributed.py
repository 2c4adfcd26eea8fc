"""DDPStrategy pieces that run in one process: validation, configuration, sharding, 1-rank collectives.

The 2-rank behaviour (shards per rank, sync_dist, identical replicas) is pinned by
tests/integration/local/ with real processes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from fulmen.errors import ClusterMismatchError, MisconfigurationException
from fulmen.jobs import ports
from fulmen.runtime.data_sharding import distributed_loader
from fulmen.runtime.distributed import DDPStrategy, destroy_process_group, resolve_topology, validate_launch
from fulmen.runtime.environments import SLURMEnvironment, TorchElasticEnvironment
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import select_strategy

TWO_RANKS = RankInfo(global_rank=1, local_rank=1, world_size=2, local_world_size=2, master_port=1, source="env")


def test_devices_mismatch_names_both_values_and_hint_before_any_group() -> None:
    strategy = DDPStrategy(rank_info=TWO_RANKS, accelerator="cpu", devices=4, num_nodes=1)
    with pytest.raises(ClusterMismatchError) as exc:
        strategy.setup_environment()
    message = str(exc.value)
    assert "Trainer(devices=4)" in message and "one of 2 ranks per node" in message and "HINT" in message
    assert not dist.is_initialized()


def test_num_nodes_mismatch() -> None:
    with pytest.raises(ClusterMismatchError, match=r"(?s)num_nodes=2.*1 node\(s\).*HINT"):
        validate_launch(TWO_RANKS, 2, 2)


def test_auto_devices_accepts_what_the_launcher_started() -> None:
    validate_launch(TWO_RANKS, None, 1)
    assert DDPStrategy(rank_info=TWO_RANKS, devices="auto").devices_per_node is None


def test_strategy_names_and_ddp_kwargs() -> None:
    strategy = DDPStrategy(strategy="ddp_find_unused_parameters_true", rank_info=TWO_RANKS, accelerator="cpu")
    assert strategy.find_unused_parameters and not strategy.static_graph
    custom = DDPStrategy(static_graph=True, gradient_as_bucket_view=True)
    assert custom.ddp_kwargs == {"gradient_as_bucket_view": True} and custom.static_graph


def test_select_strategy_configures_a_user_built_strategy() -> None:
    user = DDPStrategy(static_graph=True)
    chosen = select_strategy("cpu", user, devices=2, rank_info=TWO_RANKS.__class__(**{**TWO_RANKS.__dict__}))
    assert chosen is user
    assert (chosen.global_rank, chosen.world_size, chosen.root_device.type) == (1, 2, "cpu")
    assert chosen.devices_per_node == 2


def test_select_strategy_picks_ddp_for_several_ranks() -> None:
    chosen = select_strategy("cpu", "ddp_find_unused_parameters_true", devices=2, rank_info=TWO_RANKS)
    assert isinstance(chosen, DDPStrategy) and chosen.find_unused_parameters


def test_sync_batchnorm_on_cpu_has_hint() -> None:
    strategy = DDPStrategy(rank_info=TWO_RANKS, accelerator="cpu", sync_batchnorm=True)
    with pytest.raises(MisconfigurationException, match="HINT"):
        strategy.setup_module(torch.nn.BatchNorm1d(2))


def _loader(**kwargs: object) -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_are_disjoint_and_cover_the_dataset(shuffle: bool) -> None:
    shards = []
    for rank in range(2):
        loader = distributed_loader(_loader(shuffle=shuffle), num_replicas=2, rank=rank)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.shuffle is shuffle
        assert loader.batch_size == 2
        shards.append([int(x) for (batch,) in loader for x in batch])
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_shuffle_seed_comes_from_the_samplers_generator() -> None:
    loader = distributed_loader(_loader(shuffle=True, generator=torch.Generator().manual_seed(123)),
                                num_replicas=2, rank=0)
    assert loader.sampler.seed == 123


def test_loaders_that_must_not_be_touched() -> None:
    already = _loader(sampler=DistributedSampler(TensorDataset(torch.arange(4.0)), num_replicas=2, rank=0))
    assert distributed_loader(already, num_replicas=2, rank=0) is already
    custom = DataLoader(TensorDataset(torch.arange(4.0)), sampler=[3, 2, 1, 0])
    assert distributed_loader(custom, num_replicas=2, rank=0) is custom
    not_a_loader = [1, 2, 3]
    assert distributed_loader(not_a_loader, num_replicas=2, rank=0) is not_a_loader


def test_use_distributed_sampler_false_keeps_the_loader() -> None:
    loader = _loader()
    strategy = DDPStrategy(rank_info=TWO_RANKS, accelerator="cpu")
    assert strategy.process_dataloader(loader, training=True, use_distributed_sampler=False) is loader
    assert strategy.process_dataloader(loader, training=True, use_distributed_sampler=True) is not loader


def test_one_rank_group_collectives_and_teardown() -> None:
    port, _ = ports.choose_port("test-one-rank-group", environ={})
    try:
        info = RankInfo(master_port=port, source="env")
        strategy = DDPStrategy(rank_info=info, accelerator="cpu", devices=1, timeout=timedelta(seconds=30))
        strategy.setup_environment()
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        assert strategy.reduce(torch.tensor(3), "mean").item() == 3.0
        assert strategy.reduce(torch.tensor([1.0, 5.0]), "max").tolist() == [1.0, 5.0]
        assert strategy.all_gather(torch.tensor([1.0, 2.0])).shape == (1, 2)
        assert strategy.broadcast({"a": 1}) == {"a": 1}
        assert strategy.reduce_boolean_decision(True) and not strategy.reduce_boolean_decision(False, all=False)
        strategy.barrier()
        strategy._control_group = dist.new_group(backend="gloo")  # what an nccl run sets up
        assert strategy.reduce_boolean_decision(True) and strategy.broadcast([3]) == [3]
        wrapped = strategy.setup_module(torch.nn.Linear(2, 1))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        strategy.teardown()
        assert dist.is_initialized()  # kept for the next run in this process (as in Lightning)
    finally:
        destroy_process_group()  # what atexit does
        ports.release_port(port)
    assert not dist.is_initialized()


def test_multi_rank_trainer_in_slurm_batch_shell_is_refused_not_relaunched(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fulmen.slurm.environment")
    for key, value in {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "2"}.items():
        monkeypatch.setenv(key, value)
    for key in ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    strategy = DDPStrategy(rank_info=RankInfo(), accelerator="cpu", devices=2)
    with pytest.raises(ClusterMismatchError, match="srun"):
        strategy.setup_environment()
    assert not dist.is_initialized()


def test_slurm_step_mismatch_uses_slurm_wording() -> None:
    pytest.importorskip("fulmen.slurm.environment")
    info = RankInfo(world_size=2, local_world_size=2, master_port=1, job_id="9", source="slurm")
    with pytest.raises(ClusterMismatchError, match="SLURM step"):
        DDPStrategy(rank_info=info, accelerator="cpu", devices=4).setup_environment()


def test_one_rank_ddp_without_launcher_finds_its_own_port() -> None:
    strategy = DDPStrategy(rank_info=RankInfo(), accelerator="cpu", devices=1)
    try:
        strategy.setup_environment()
        assert dist.is_initialized() and dist.get_world_size() == 1
        assert strategy.reduce(torch.tensor([2.0]), "sum").tolist() == [2.0]
    finally:
        strategy.teardown()
        destroy_process_group()
    assert not dist.is_initialized()


def test_teardown_keeps_the_group_and_the_next_trainer_reuses_it() -> None:
    """fit then test: the second run must not re-initialise on the same port (that hung)."""
    port, _ = ports.choose_port("test-reuse-group", environ={})
    info = RankInfo(master_port=port, source="env")
    try:
        first = DDPStrategy(rank_info=info, accelerator="cpu", devices=1, timeout=timedelta(seconds=30))
        first.setup_environment()
        group = dist.group.WORLD
        first.teardown()
        second = DDPStrategy(rank_info=info, accelerator="cpu", devices=1, timeout=timedelta(seconds=30))
        second.setup_environment()
        assert dist.group.WORLD is group and second.reduce(torch.tensor([4.0]), "sum").tolist() == [4.0]
        second.teardown()
    finally:
        destroy_process_group()
        ports.release_port(port)
    assert not dist.is_initialized()


def test_a_later_trainer_with_another_world_size_gets_a_hint() -> None:
    port, _ = ports.choose_port("test-other-world", environ={})
    try:
        DDPStrategy(rank_info=RankInfo(master_port=port, source="env"), accelerator="cpu", devices=1).setup_environment()
        other = RankInfo(global_rank=0, world_size=2, local_world_size=2, master_port=port, source="env")
        with pytest.raises(ClusterMismatchError, match=r"rank 0 of 1.*rank 0 of 2(.|\n)*HINT: .*same devices"):
            DDPStrategy(rank_info=other, accelerator="cpu", devices=2).setup_environment()
    finally:
        destroy_process_group()
        ports.release_port(port)


# --- topology: what the script left out comes from the launch; what it said must match ----------

TWO_BY_TWO = RankInfo(global_rank=3, local_rank=1, world_size=4, local_world_size=2, node_rank=1, num_nodes=2,
                      master_port=1, source="env")


@pytest.mark.parametrize(
    ("devices", "num_nodes", "expected"),
    [(None, None, (2, 2)), (2, None, (2, 2)), (None, 2, (2, 2)), (4, 1, (4, 1))],
)
def test_resolve_topology_takes_what_the_script_left_out_from_the_launch(
    devices: int | None, num_nodes: int | None, expected: tuple[int, int]
) -> None:
    assert resolve_topology(TWO_BY_TWO, devices, num_nodes) == expected


def test_implicit_topology_passes_validation_explicit_contradiction_does_not() -> None:
    validate_launch(TWO_BY_TWO, None, None)
    validate_launch(TWO_BY_TWO, 2, 2)
    with pytest.raises(ClusterMismatchError) as exc:
        validate_launch(TWO_BY_TWO, None, 1)
    message = str(exc.value)
    assert message.startswith("Trainer(num_nodes=1) does not match the 2 node(s)")
    assert message.count("\n") == 1 and "HINT: leave num_nodes out to take the launch's 2" in message


class ReachedRendezvous(Exception):
    """Raised instead of init_process_group: every check before the rendezvous passed."""


_TORCHRUN_2X2 = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}


@pytest.mark.parametrize("launcher", ["launch/torchrun", "srun"])
@pytest.mark.parametrize("flags", [{}, {"devices": "auto"}, {"accelerator": "auto", "devices": "auto"}])
def test_trainer_defaults_take_the_launched_topology(
    monkeypatch: pytest.MonkeyPatch, launcher: str, flags: dict[str, str]
) -> None:
    """An unchanged Lightning script (no num_nodes, devices='auto' or nothing) under a 2 x 2 launch."""
    from fulmen import Trainer
    from fulmen.runtime import distributed
    from tests.slurm.test_environment import STEP_TASK_RANK3

    for name in ("FULMEN_CLUSTER", "RANK", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (_TORCHRUN_2X2 if launcher == "launch/torchrun" else STEP_TASK_RANK3).items():
        monkeypatch.setenv(name, value)

    def reached(*args: object, **kwargs: object) -> None:
        raise ReachedRendezvous

    monkeypatch.setattr(distributed.dist, "init_process_group", reached)
    trainer = Trainer(**{"accelerator": "cpu", **flags}, logger=False, enable_checkpointing=False)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size, trainer.global_rank) == (2, 2, 4, 3)
    with pytest.raises(ReachedRendezvous):
        trainer.strategy.setup_environment()


def test_explicit_num_nodes_that_contradicts_the_launch_fails_before_any_group() -> None:
    strategy = DDPStrategy(rank_info=TWO_BY_TWO, accelerator="cpu", devices="auto", num_nodes=1)
    with pytest.raises(ClusterMismatchError, match=r"^Trainer\(num_nodes=1\) does not match the 2 node\(s\)"):
        strategy.setup_environment()
    assert not dist.is_initialized()


def test_explicit_num_nodes_under_slurm_uses_slurms_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulmen.slurm.environment import rank_info_from_slurm
    from tests.slurm.test_environment import STEP_TASK_RANK3

    info = rank_info_from_slurm(STEP_TASK_RANK3)
    assert info is not None and (info.num_nodes, info.local_world_size) == (2, 2)
    DDPStrategy(rank_info=info, accelerator="cpu", devices="auto", num_nodes=None)  # builds without complaint
    strategy = DDPStrategy(rank_info=info, accelerator="cpu", devices="auto", num_nodes=1)
    with pytest.raises(ClusterMismatchError, match=r"^Trainer\(num_nodes=1\) expects 1 node\(s\), but this SLURM step"):
        strategy.setup_environment()
    assert not dist.is_initialized()


# --- the strategy asks "the" cluster environment -------------------------------------------------


class RefusingEnvironment(TorchElasticEnvironment):
    """An environment with its own rule: the strategy must apply it without knowing its name."""

    def validate(self, devices_per_node: int | None, num_nodes: int | None) -> None:
        raise ClusterMismatchError(f"refused devices={devices_per_node} num_nodes={num_nodes}")


def test_setup_checks_through_the_cluster_environment_before_any_group() -> None:
    environment = RefusingEnvironment(rank_info=TWO_BY_TWO)
    strategy = DDPStrategy(rank_info=TWO_BY_TWO, cluster_environment=environment, accelerator="cpu", devices=2)
    assert strategy.cluster_environment is environment
    with pytest.raises(ClusterMismatchError, match="^refused devices=2 num_nodes=None$"):
        strategy.setup_environment()
    assert not dist.is_initialized()


def test_select_strategy_hands_the_detected_environment_to_ddp() -> None:
    from tests.slurm.test_environment import STEP_TASK_RANK3

    strategy = select_strategy(accelerator="cpu", devices="auto", environ=STEP_TASK_RANK3)
    assert isinstance(strategy, DDPStrategy) and isinstance(strategy.cluster_environment, SLURMEnvironment)
    assert strategy.rank_info == strategy.cluster_environment.rank_info()
    user_built = select_strategy(accelerator="cpu", strategy=DDPStrategy(), environ=STEP_TASK_RANK3)
    assert isinstance(user_built.cluster_environment, SLURMEnvironment)  # type: ignore[attr-defined]
