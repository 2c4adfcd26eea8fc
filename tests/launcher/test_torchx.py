"""The torchx backend (fulmen/launcher/torchx.py): dry-run output, scheduler options, errors.

The Kubernetes dry-run is pinned against ``data/torchx_k8s_dryrun.yaml``; it is also fed to
torchx's own kubernetes scheduler (with the HTTP layer of the kubernetes client replaced), which
is what ``run`` does for real.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchx")
pytest.importorskip("kubernetes")
yaml = pytest.importorskip("yaml")

from fulmen.errors import LaunchError, MissingExtraError  # noqa: E402
from fulmen.jobs.spec import JobSpec, KubernetesOptions  # noqa: E402
from fulmen.launcher import torchx as torchx_backend  # noqa: E402
from fulmen.launcher.backends import launch  # noqa: E402

PINNED = Path(__file__).parent / "data" / "torchx_k8s_dryrun.yaml"


def k8s_spec(**overrides) -> JobSpec:
    fields = dict(
        entry="train.py",
        args=("--epochs", "2"),
        cluster="k8s",
        nodes=2,
        gpus_per_node=8,
        max_restarts=1,
        env=(("NCCL_DEBUG", "WARN"),),
        k8s=KubernetesOptions(
            image="registry.example.com/team/fulmen:0.1.0",
            namespace="ml",
            queue="gpu",
            cpu=32,
            mem_mb=240_000,
        ),
    )
    fields.update(overrides)
    return JobSpec(**fields)


def normalized(dryrun_text: str) -> str:
    """The dry-run with the parts torchx randomises or versions replaced by placeholders."""
    name = re.search(r"^  name: (\S+)$", dryrun_text, re.MULTILINE).group(1)
    text = dryrun_text.replace(name, "<app-id>")
    return re.sub(r"(torchx.pytorch.org/version: ).*", r"\1<torchx-version>", text)


@pytest.fixture
def k8s_dryrun() -> str:
    return torchx_backend.render_dryrun(k8s_spec())


def test_torchx_warnings_become_one_line_notes(capsys) -> None:
    torchx_backend.render_dryrun(k8s_spec())
    err = capsys.readouterr().err
    assert err.count("fulmen: torchx note: Role train configured with restarts: 1. As of 1.4.0 Volcano") == 1
    assert "warnings.warn" not in err


def test_k8s_dry_run_is_pinned(k8s_dryrun: str) -> None:
    assert normalized(k8s_dryrun) == PINNED.read_text()


def test_k8s_dry_run_has_one_task_per_node_with_gpus_image_command_env(k8s_dryrun: str) -> None:
    job = yaml.safe_load(k8s_dryrun)
    assert (job["apiVersion"], job["kind"]) == ("batch.volcano.sh/v1alpha1", "Job")
    assert job["spec"]["queue"] == "gpu"
    tasks = job["spec"]["tasks"]
    assert [t["name"] for t in tasks] == ["train-0", "train-1"]
    for node_rank, task in enumerate(tasks):
        pod = task["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/team/fulmen:0.1.0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["limits"]["cpu"] == "32000m"
        assert container["command"][:2] == ["bash", "-c"]
        assert f"--nodes 2 --node-rank {node_rank} --master-addr" in container["command"][2]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FULMEN_RUN_DIR"] == "/workspace/fulmen_runs/train-dry-run"
        assert env["NCCL_DEBUG"] == "WARN"
        assert pod["restartPolicy"] == "Never"  # Volcano restarts, per the policies below
        assert task["maxRetry"] == 1
        assert {"event": "PodFailed", "action": "RestartJob"} in task["policies"]
    assert job["spec"]["maxRetry"] == 1


def test_k8s_dry_run_names_namespace_and_queue_in_a_comment(k8s_dryrun: str) -> None:
    first = k8s_dryrun.splitlines()[0]
    assert first.startswith("#") and "namespace ml" in first and "queue gpu" in first


class FakeKubernetesApi:
    """Stands in for the kubernetes client's HTTP layer: records calls, answers like the API server."""

    def __init__(self, phase: str = "Running") -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.phase = phase

    def client(self):
        from kubernetes.client import ApiClient

        fake = self

        class _Client(ApiClient):
            def call_api(self, resource_path, method, path_params=None, *args, body=None, **kwargs):
                fake.calls.append((method, resource_path.format(**(path_params or {})), body))
                if method == "POST":
                    return {"metadata": {"name": body["metadata"]["name"]}}
                if method == "GET" and resource_path.endswith("/status"):
                    return {"status": {"state": {"phase": fake.phase}}}
                if method == "GET" and resource_path.endswith("/log"):
                    return "2026-01-01T00:00:00Z epoch 0 loss 1.0\n"
                return {}

        return _Client()


def test_dry_run_request_is_accepted_by_torchx_kubernetes_scheduler(k8s_dryrun: str) -> None:
    from kubernetes.client import ApiClient
    from torchx.schedulers.kubernetes_scheduler import KubernetesJob, KubernetesScheduler
    from torchx.specs import AppDryRunInfo

    resource = yaml.safe_load(k8s_dryrun)
    fake = FakeKubernetesApi()
    scheduler = KubernetesScheduler("fulmen", client=fake.client())
    info = AppDryRunInfo(KubernetesJob(images_to_push={}, resource=resource), repr)
    info._cfg = {"namespace": "ml", "queue": "gpu"}
    app_id = scheduler.schedule(info)

    assert app_id == f"ml:{resource['metadata']['name']}"
    ((method, path, body),) = fake.calls
    assert (method, path) == ("POST", "/apis/batch.volcano.sh/v1alpha1/namespaces/ml/jobs")
    assert body == resource
    # each task's template is a well-formed Pod for the kubernetes client's own model
    api = ApiClient()
    for task in resource["spec"]["tasks"]:
        pod = api._ApiClient__deserialize(task["template"], "V1Pod")
        assert pod.spec.containers[0].image == "registry.example.com/team/fulmen:0.1.0"


def test_torchx_local_dry_run_shows_the_processes_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("train.py").write_text("print('hi')\n")
    spec = JobSpec(entry="train.py", cluster="torchx-local", nproc_per_node=2, run_root=str(tmp_path / "runs"))
    request = ast.literal_eval(torchx_backend.render_dryrun(spec))  # torchx pformats a dict
    (replica,) = request["role_params"]["train"]
    run_dir = str(tmp_path / "runs" / "train-dry-run")
    assert replica["args"] == ["bash", "-c", f"exec launch --run-dir {run_dir} --nproc-per-node 2 train.py"]
    assert replica["env"]["PATH"].startswith(str(Path(sys.executable).parent))  # this venv's launch
    assert replica["env"]["FULMEN_RUN_DIR"] == run_dir
    assert not (tmp_path / "runs").exists()


def test_torchx_local_dry_run_checks_the_script_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError, match="does not exist"):
        torchx_backend.render_dryrun(JobSpec(entry="missing.py", cluster="torchx-local"))


def test_scheduler_options() -> None:
    assert torchx_backend.scheduler_cfg(k8s_spec()) == {"namespace": "ml", "queue": "gpu"}
    default_queue = k8s_spec(k8s=KubernetesOptions(image="i"))
    assert torchx_backend.scheduler_cfg(default_queue) == {"namespace": "default", "queue": "default"}
    local = JobSpec(entry="t.py", cluster="torchx-local")
    assert torchx_backend.scheduler_cfg(local, log_dir="/r/torchx") == {
        "prepend_cwd": False,
        "auto_set_cuda_visible_devices": False,
        "log_dir": "/r/torchx",
    }
    gpus = JobSpec(entry="t.py", cluster="torchx-local", nodes=2, gpus_per_node=2)
    assert torchx_backend.scheduler_cfg(gpus)["auto_set_cuda_visible_devices"] is True


def test_k8s_without_image_is_an_error_before_anything_is_created(tmp_path: Path) -> None:
    spec = k8s_spec(k8s=KubernetesOptions(), run_root=str(tmp_path))
    with pytest.raises(LaunchError, match="--image"):
        torchx_backend.render_dryrun(spec)


def test_non_torchx_cluster_is_rejected() -> None:
    with pytest.raises(LaunchError, match="not a torchx cluster"):
        torchx_backend.scheduler_for(JobSpec(entry="t.py", cluster="slurm"))


@pytest.mark.parametrize(
    ("cluster", "hidden", "package"),
    [("torchx-local", "torchx", "torchx"), ("k8s", "torchx", "torchx"), ("k8s", "kubernetes", "kubernetes")],
)
def test_missing_package_names_the_torchx_extra(monkeypatch, cluster, hidden, package) -> None:
    for name in [m for m in sys.modules if m == hidden or m.startswith(hidden + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, hidden, None)
    spec = k8s_spec(cluster=cluster)
    with pytest.raises(MissingExtraError) as info:
        launch(spec, dry_run=True)
    assert f"'{package}'" in str(info.value)
    assert "pip install 'fulmen[torchx]'" in str(info.value)


def test_k8s_dry_run_mounts_the_claim_and_asks_for_cpu_memory_and_retries(capsys) -> None:
    from fulmen.launcher import cli

    spec, _, _ = cli.parse_launch_args([
        "--cluster", "k8s", "--image", "img:1", "--nodes", "2", "--gpus", "1", "--volume", "runs-pvc:/mnt/runs",
        "--cpu", "6", "--memory", "12G", "--max-restarts", "3", "train.py",
    ])
    job = yaml.safe_load(torchx_backend.render_dryrun(spec))
    assert job["spec"]["maxRetry"] == 3
    for task in job["spec"]["tasks"]:
        assert task["maxRetry"] == 3 and {"event": "PodFailed", "action": "RestartJob"} in task["policies"]
        pod = task["template"]["spec"]
        (container,) = pod["containers"]
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"] == {"claimName": "runs-pvc"}
        assert {"name": volume["name"], "mountPath": "/mnt/runs", "readOnly": False} in container["volumeMounts"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FULMEN_RUN_DIR"] == "/mnt/runs/fulmen_runs/train-dry-run"
        assert "--run-dir /mnt/runs/fulmen_runs/train-dry-run" in container["command"][2]
        assert container["resources"]["requests"]["cpu"].endswith("m")  # torchx reserves a little for the kubelet
        assert container["resources"]["limits"]["cpu"] == "6000m"
        assert container["resources"]["limits"]["memory"] == f"{12 * 1024}M"


UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:1"}
  name: nowhere
contexts:
- context: {cluster: nowhere, user: someone}
  name: nowhere
current-context: nowhere
users:
- name: someone
  user: {token: not-a-secret}
"""


@pytest.mark.parametrize("kubeconfig", ["unreachable", "missing"])
def test_a_cluster_that_cannot_be_reached_is_one_error_and_no_run_dir(
    tmp_path: Path, subprocess_env: dict[str, str], kubeconfig: str
) -> None:
    """A process of its own: the kubernetes client reads KUBECONFIG once, when it is imported."""
    config = tmp_path / "kubeconfig"
    if kubeconfig == "unreachable":
        config.write_text(UNREACHABLE_KUBECONFIG)
    env = {**subprocess_env, "KUBECONFIG": str(config), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "train.py").write_text("print('hi')\n")
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", "launch", "--cluster", "k8s", "--image", "reg/fulmen:1",
         "--run-root", str(runs), "train.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "error: could not submit to Kubernetes: " in done.stderr
    assert ("Connection refused" in done.stderr) if kubeconfig == "unreachable" else ("kube config" in done.stderr)
    assert "HINT: check that `kubectl cluster-info` works" in done.stderr
    assert "removed its unfinished run dir" in done.stderr
    assert not runs.exists() or list(runs.iterdir()) == []
