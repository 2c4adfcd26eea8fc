"""test_tube's ``SlurmCluster`` on fulmen: the trials and job spec it submits, and the per-trial call."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.launcher.test_tube_cluster import SlurmCluster
from fulmen.sweep import HyperOptArgumentParser
from fulmen.sweep.trial import TRIAL_VARIABLE


def _hparams(strategy: str, argv: list[str]):
    parser = HyperOptArgumentParser(strategy=strategy)
    parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.01, 0.001], tunable=True)
    parser.opt_list("--hidden", type=int, default=8, options=[8, 16], tunable=True)
    parser.opt_list("--depth", type=int, default=2, options=[2, 3], tunable=False)
    parser.add_argument("--epochs", type=int, default=1)
    return parser.parse_args(argv)


def test_a_grid_becomes_one_array_spec_with_test_tubes_settings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    hparams = _hparams("grid_search", ["--epochs", "3"])
    cluster = SlurmCluster(hyperparam_optimizer=hparams, log_path=str(tmp_path / "runs"), python_cmd="python3")
    cluster.per_experiment_nb_gpus, cluster.per_experiment_nb_nodes, cluster.per_experiment_nb_cpus = 2, 2, 4
    cluster.job_time, cluster.memory_mb_per_node, cluster.minutes_to_checkpoint_before_walltime = "1:00:00", 8000, 2
    cluster.add_slurm_cmd("partition", "low", "the preemptible one")
    cluster.load_modules(["cuda/12"])
    cluster.add_command("source venv/bin/activate")
    cluster.notify_job_status("me@example.org", on_done=False, on_fail=True)
    spec, space, trials = cluster.sweep_plan(5, "search", on_gpu=True, argv=[str(tmp_path / "train.py"), "--epochs", "3"])
    assert [t.values for t in trials] == [{"lr": lr, "hidden": h} for lr in (0.1, 0.01, 0.001) for h in (8, 16)][:5]
    assert (spec.entry, spec.args, spec.name, spec.run_root) == ("train.py", ("--epochs", "3"), "search",
                                                                  str(tmp_path / "runs"))
    assert (spec.cluster, spec.nodes, spec.gpus_per_node, spec.nproc_per_node) == ("slurm", 2, 2, None)
    assert (spec.slurm.time, spec.slurm.mem, spec.slurm.cpus_per_task, spec.slurm.signal) == ("1:00:00", "8000M", 4,
                                                                                            "USR2@120")
    assert spec.slurm.extra == (("partition", "low"), ("mail-user", "me@example.org"), ("mail-type", "FAIL"))
    assert spec.slurm.setup == ("module load cuda/12", "source venv/bin/activate")
    assert (space.mode, space.trials, [p.name for p in space.parameters]) == ("grid", 5, ["lr", "hidden"])
    cpu_spec, _, _ = cluster.sweep_plan(2, "search", on_gpu=False, argv=["train.py"])
    assert (cpu_spec.gpus_per_node, cpu_spec.nproc_per_node) == (None, 1)


def test_random_search_submits_the_trials_the_parser_draws() -> None:
    cluster = SlurmCluster(hyperparam_optimizer=_hparams("random_search", []))
    random.seed(7)
    _, space, trials = cluster.sweep_plan(4, "rand", on_gpu=False, argv=["train.py"])
    random.seed(7)
    drawn = cluster.hyperparam_optimizer.generate_trials(4)
    assert [t.values for t in trials] == [{"lr": ns.lr, "hidden": ns.hidden} for ns in drawn]
    assert space.mode == "random" and all(t.script_args()[0::2] == ["--lr", "--hidden"] for t in trials)


def test_inside_a_trial_the_train_function_gets_hparams_and_the_cluster(monkeypatch) -> None:
    monkeypatch.setenv(TRIAL_VARIABLE, json.dumps({"sweep_dir": "/s", "index": 3, "values": {"lr": 0.01}}))
    hparams = _hparams("grid_search", ["--lr", "0.01"])
    cluster = SlurmCluster(hyperparam_optimizer=hparams, log_path="runs")
    seen = []
    result = cluster.optimize_parallel_cluster_gpu(lambda h, c: seen.append((h.lr, c)) or "trained", 6, "search")
    assert result == "trained" and seen == [(0.01, cluster)]
    assert cluster.is_from_slurm_object and cluster.hpc_exp_number == 3


def test_a_gpu_type_is_refused_with_a_hint() -> None:
    cluster = SlurmCluster(hyperparam_optimizer=_hparams("grid_search", []))
    cluster.gpu_type = "a100"
    with pytest.raises(LaunchError, match="gpu_type='a100'.*\nHINT: cluster.add_slurm_cmd"):
        cluster.sweep_plan(2, "search", on_gpu=True, argv=["train.py"])
