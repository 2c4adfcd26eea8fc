"""JobSpec -> torchx AppDef (fulmen/launcher/torchx_appdef.py): plain data in, plain data out."""

from __future__ import annotations

import pytest

pytest.importorskip("torchx")

from torchx import specs  # noqa: E402

from fulmen.errors import LaunchError  # noqa: E402
from fulmen.jobs.spec import JobSpec, KubernetesOptions  # noqa: E402
from fulmen.launcher.torchx_appdef import (  # noqa: E402
    DEFAULT_RDZV_PORT,
    build_appdef,
    dns_label,
    launch_argv,
    pod_run_dir,
    rank_entry_script,
    role_name,
)


def _k8s_spec(**overrides) -> JobSpec:
    fields = dict(
        entry="train.py",
        args=("--lr", "0.1"),
        cluster="k8s",
        nodes=3,
        gpus_per_node=8,
        max_restarts=2,
        k8s=KubernetesOptions(image="reg.example/fulmen:1", cpu=32, mem_mb=200_000),
    )
    fields.update(overrides)
    return JobSpec(**fields)


def _replica(role: specs.Role, replica_id: int, rank0_env: str) -> specs.Role:
    """The role as torchx hands it to one replica (macros substituted)."""
    values = specs.macros.Values(
        img_root="", app_id="app-1", replica_id=str(replica_id), rank0_env=rank0_env
    )
    return values.apply(role)


def test_one_role_with_one_replica_per_node_and_gpus_as_resource() -> None:
    app = build_appdef(_k8s_spec(), image="reg.example/fulmen:1", run_dir="/workspace/runs/r1")
    (role,) = app.roles
    assert role.num_replicas == 3
    assert role.image == "reg.example/fulmen:1"
    assert (role.resource.cpu, role.resource.gpu, role.resource.memMB) == (32, 8, 200_000)
    assert role.port_map == {"c10d": DEFAULT_RDZV_PORT}


def test_max_restarts_become_application_retries() -> None:
    (role,) = build_appdef(_k8s_spec(), image="i", run_dir="/r").roles
    assert role.max_retries == 2
    assert role.retry_policy == specs.RetryPolicy.APPLICATION


def test_env_carries_run_dir_and_user_variables_through_macro_substitution() -> None:
    spec = _k8s_spec(env=(("WANDB_MODE", "offline"), ("PRICE", "$5")))
    (role,) = build_appdef(spec, image="i", run_dir="/workspace/runs/r1").roles
    env = _replica(role, 0, "TORCHX_RANK0_HOST").env
    assert env["FULMEN_RUN_DIR"] == "/workspace/runs/r1"
    assert env["WANDB_MODE"] == "offline"
    assert env["PRICE"] == "$5"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "PATH" not in env  # the image's PATH is left alone on Kubernetes


def test_path_prefix_goes_into_the_replica_path() -> None:
    (role,) = build_appdef(_k8s_spec(), image="i", run_dir="/r", path_prefix="/venv/bin").roles
    assert role.env["PATH"] == "/venv/bin"


def test_replica_command_takes_node_rank_and_rendezvous_host_from_torchx_macros() -> None:
    (role,) = build_appdef(_k8s_spec(), image="i", run_dir="/r").roles
    assert role.entrypoint == "bash"
    first = _replica(role, 0, "TORCHX_RANK0_HOST").args
    second = _replica(role, 2, "VC_TRAIN_0_HOSTS").args
    assert first == [
        "-c",
        "exec launch --run-dir /r --gpus 8 --nodes 3 --node-rank 0"
        " --master-addr ${TORCHX_RANK0_HOST:=localhost} --master-port 29500 train.py --lr 0.1",
    ]
    assert second[1] == (
        "exec launch --run-dir /r --gpus 8 --nodes 3 --node-rank 2"
        " --master-addr ${VC_TRAIN_0_HOSTS:=localhost} --master-port 29500 train.py --lr 0.1"
    )


def test_single_node_leaves_rendezvous_to_the_local_backend() -> None:
    spec = JobSpec(entry="train.py", cluster="torchx-local", nproc_per_node=2)
    assert launch_argv(spec, run_dir="/r", rendezvous_port=1234) == [
        "launch", "--run-dir", "/r", "--nproc-per-node", "2", "train.py",
    ]


def test_name_and_restarts_in_the_replica_when_the_scheduler_does_not_restart() -> None:
    spec = JobSpec(entry="t.py", cluster="torchx-local", name="exp1", max_restarts=2)
    argv = launch_argv(spec, run_dir="/r", rendezvous_port=1, restart_in_replica=True)
    assert argv == ["launch", "--run-dir", "/r", "--name", "exp1", "--max-restarts", "2", "t.py"]
    assert "--max-restarts" not in launch_argv(spec, run_dir="/r", rendezvous_port=1)


def test_module_entry_and_master_port_override() -> None:
    spec = _k8s_spec(entry="pkg.train", entry_is_module=True, master_port=23456, args=())
    (role,) = build_appdef(spec, image="i", run_dir="/r").roles
    script = _replica(role, 1, "VC_TRAIN_0_HOSTS").args[1]
    assert script.endswith("--master-port 23456 -m pkg.train")
    assert role.port_map == {"c10d": 23456}


def test_user_arguments_are_quoted_and_survive_macro_substitution() -> None:
    argv = ["launch", "t.py", "--msg", "it's $HOME ${replica_id}"]
    replica = _replica(
        specs.Role(name="t", image="i", entrypoint="bash", args=["-c", rank_entry_script(argv)]),
        1,
        "X",
    )
    assert replica.args[1] == "exec launch t.py --msg 'it'\"'\"'s $HOME ${replica_id}'"


def test_k8s_job_without_image_is_an_error_with_a_hint() -> None:
    with pytest.raises(LaunchError, match="HINT: .*--image"):
        build_appdef(_k8s_spec(), image="", run_dir="/r")


@pytest.mark.parametrize(
    ("text", "label"),
    [("my_train.py", "my-train-py"), ("Train", "train"), ("123", "fulmen-123"), ("__", "fulmen")],
)
def test_dns_label(text: str, label: str) -> None:
    assert dns_label(text) == label


def test_role_name_is_a_valid_shell_variable_fragment() -> None:
    # torchx builds VC_<ROLE>_0_HOSTS from it: a "-" there breaks ${VAR:=localhost}
    assert role_name(JobSpec(entry="scripts/my_train-v2.py")) == "mytrainv2"
    assert role_name(JobSpec(entry="9.py")) == "trainer9"


def test_pod_run_dir_resolves_relative_roots_under_the_image_workdir() -> None:
    assert pod_run_dir(JobSpec(entry="t.py"), "t-1") == "/workspace/fulmen_runs/t-1"
    assert pod_run_dir(JobSpec(entry="t.py", run_root="/mnt/runs"), "t-1") == "/mnt/runs/t-1"


def test_long_job_names_keep_pod_host_names_within_63_characters() -> None:
    spec = JobSpec(entry="a_really_long_experiment_name_for_the_sweep_number_12.py", cluster="k8s", nodes=12)
    app = build_appdef(spec, image="i", run_dir="/r")
    suffix = "x" * 14  # torchx's make_unique suffix
    pod = f"{app.name}-{suffix}-{app.roles[0].name}-{spec.nodes - 1}-0"
    assert len(pod) <= 63
    assert app.name.startswith("a-really-long") and app.roles[0].name.startswith("areallylong")


def test_volume_is_mounted_in_every_replica_and_holds_the_run_dir() -> None:
    spec = _k8s_spec(k8s=KubernetesOptions(image="i", volumes=(("runs-pvc", "/mnt/runs"), ("data", "/data"))))
    run_dir = pod_run_dir(spec, "train-20260101")
    assert run_dir == "/mnt/runs/fulmen_runs/train-20260101"
    (role,) = build_appdef(spec, image="i", run_dir=run_dir).roles
    assert role.mounts == [specs.VolumeMount(src="runs-pvc", dst_path="/mnt/runs"),
                           specs.VolumeMount(src="data", dst_path="/data")]
    assert role.env["FULMEN_RUN_DIR"] == "/mnt/runs/fulmen_runs/train-20260101"
    # an absolute --run-root is the user's choice and stays
    assert pod_run_dir(_k8s_spec(run_root="/shared/runs", k8s=spec.k8s), "r") == "/shared/runs/r"
