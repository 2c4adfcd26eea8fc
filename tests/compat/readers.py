"""Read back what a logger wrote, the way a user would (csv module, TensorBoard's reader)."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path
from typing import Any

from tests.compat.normalise import plain


def csv_rows(path: Path) -> list[list[str]]:
    """metrics.csv as raw text cells, header first."""
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def tensorboard_scalars(log_dir: str) -> dict[str, list[list[Any]]]:
    """tag -> [[step, value], ...] as TensorBoard reads them back from the tfevents files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return {tag: [[event.step, plain(event.value)] for event in events.Scalars(tag)] for tag in sorted(events.Tags()["scalars"])}


def mlflow_run(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """One MLflow run read back through mlflow's client: metric histories ([step, value] in
    logging order), params, tags, status and the artifact files (paths inside the run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    histories = {
        key: [[entry.step, plain(entry.value)] for entry in client.get_metric_history(run_id, key)]
        for key in sorted(run.data.metrics)
    }
    artifacts = _mlflow_artifacts(client, run_id, None)
    return {
        "metrics": histories,
        "params": dict(sorted(run.data.params.items())),
        "tags": dict(sorted(run.data.tags.items())),
        "status": run.info.status,
        "artifacts": artifacts,
        "artifact_texts": _mlflow_texts(client, run_id, [path for path in artifacts if path.endswith((".yaml", ".txt"))]),
    }


def _mlflow_texts(client: Any, run_id: str, paths: list[str]) -> dict[str, str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return {path: Path(client.download_artifacts(run_id, path, folder)).read_text() for path in paths}


def _mlflow_artifacts(client: Any, run_id: str, path: str | None) -> list[str]:
    files: list[str] = []
    for info in client.list_artifacts(run_id, path):
        files.extend(_mlflow_artifacts(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(files)


_WANDB_BLOCK = 32 * 1024  # the offline .wandb file is a LevelDB-style log: 32 KiB blocks of records
_WANDB_HEADER = 7  # ":W&B", a 2-byte magic number, a version byte
_WANDB_RECORD_HEADER = 7  # CRC32, length (2 bytes), type (1 = full, 2 = first, 3 = middle, 4 = last)


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file (what ``wandb sync`` uploads),
    read without wandb's own reader (not shipped with wandb 0.31)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    records, position, pending = [], _WANDB_HEADER, b""
    while position + _WANDB_RECORD_HEADER <= len(data):
        left_in_block = _WANDB_BLOCK - position % _WANDB_BLOCK
        if left_in_block < _WANDB_RECORD_HEADER:  # the block's tail is padding
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _WANDB_RECORD_HEADER])
        position += _WANDB_RECORD_HEADER
        pending += data[position : position + length]
        position += length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_offline_run(run_dir: Path) -> dict[str, Any]:
    """An offline run's history rows, final summary, config and metric definitions as wandb wrote
    them; wandb's own bookkeeping keys (``_timestamp``, ``_runtime``, ``_wandb``) are left out."""
    (path,) = run_dir.glob("run-*.wandb")
    history, summary, config, defined = [], {}, {}, []
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_wandb_items(record.history.item))
        elif kind == "summary":
            summary.update(_wandb_items(record.summary.update))
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "metric":
            metric = record.metric
            defined.append({"name": metric.name or metric.glob_name, "step_metric": metric.step_metric})
    config.pop("_wandb", None)
    return {"history": history, "summary": dict(sorted(summary.items())), "config": plain(config), "defined": defined}


def _wandb_items(items: Any) -> dict[str, Any]:
    values = {"/".join(item.nested_key) or item.key: plain(json.loads(item.value_json)) for item in items}
    return {key: value for key, value in sorted(values.items()) if key.split("/")[0] not in _WANDB_OWN_KEYS}


_WANDB_OWN_KEYS = {"_timestamp", "_runtime", "_wandb"}
