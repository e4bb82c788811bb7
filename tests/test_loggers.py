"""Experiment loggers (``logger=``): each backend read back with its own library's reader."""

from __future__ import annotations

import glob
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from mmbench.loggers.base import MissingBackendError, flatten
from mmbench.loggers.group import LoggerGroup, build_logger
from mmbench.train import fit

TINY = [
    "trainer.limit_train_batches=2",
    "trainer.epochs=2",
    "trainer.telemetry_every=1",
    "trainer.batch_size=16",
    "dataset.build.val_per_class=5",
    "dataset.build.test_per_class=5",
]
STEPS_PER_EPOCH = 2  # limit_train_batches
TODAY = {"checkpoint.pt", "history.csv", "metrics.json", "telemetry.csv"}


def run(compose_cfg, tmp_path: Path, *overrides: str) -> Path:
    cfg = compose_cfg([*TINY, f"paths.output_dir={tmp_path / 'outputs'}", *overrides])
    run_dir = tmp_path / "run"
    fit(cfg, run_dir)
    return run_dir


def test_default_csv_logger_changes_nothing_and_imports_no_backend(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
import mmbench.train
with initialize_config_dir(config_dir={str(Path(__file__).parent.parent / "conf")!r},
                           version_base="1.3"):
    cfg = compose(config_name="train", overrides={TINY!r})
assert "csv" in cfg.logger and len(cfg.logger) == 1
mmbench.train.fit(cfg, Path({str(tmp_path / "run")!r}))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorboard", "mlflow", "wandb"))
print("BACKENDS", loaded)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BACKENDS []" in out.stdout
    assert {p.name for p in (tmp_path / "run").iterdir()} == TODAY


def test_tensorboard_scalars_read_back(compose_cfg, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run(compose_cfg, tmp_path, "logger=tensorboard")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    history = pd.read_csv(run_dir / "history.csv")
    test_acc = events.Scalars("epoch/test_acc")
    assert [e.step for e in test_acc] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [e.value for e in test_acc] == pytest.approx(list(history["test_acc"]), abs=1e-6)
    telemetry = pd.read_csv(run_dir / "telemetry.csv")
    cos = telemetry[telemetry["encoder"] == "gray"]
    logged = events.Scalars("telemetry/gray/cos")
    assert [e.step for e in logged] == list(cos["step"]) == [0, 1, 2, 3]
    assert [e.value for e in logged] == pytest.approx(list(cos["cos"]), abs=1e-6)
    assert len(events.Scalars("train/loss")) == 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    last = events.Scalars("last/acc")
    assert [e.value for e in last] == pytest.approx([metrics["protocols"]["last"]["acc"]])
    assert "config" in "".join(events.Tags()["tensors"])
    assert TODAY <= {p.name for p in run_dir.iterdir()}


def test_mlflow_params_metrics_artifacts_read_back(compose_cfg, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run_dir = run(compose_cfg, tmp_path, "logger=mlflow", "strategy=mmpareto")
    db = tmp_path / "outputs" / "mlflow.db"
    assert db.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("mmbench")
    (found,) = client.search_runs([experiment.experiment_id])
    run_id = found.info.run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    params = found.data.params
    assert params["strategy.name"] == "mmpareto" and params["strategy.method.gamma"] == "1.5"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert params["run.config_hash"] == metrics["config_hash"]
    history = pd.read_csv(run_dir / "history.csv")
    test_acc = client.get_metric_history(run_id, "epoch/test_acc")
    assert [m.step for m in test_acc] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [m.value for m in test_acc] == pytest.approx(list(history["test_acc"]))
    steps = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in steps) == [0, 1, 2, 3]
    assert found.data.metrics["val/acc"] == pytest.approx(metrics["protocols"]["val"]["acc"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "history.csv", "telemetry.csv"} <= artifacts
    stored = Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path / "dl")))
    assert json.loads(stored.read_text())["config_hash"] == metrics["config_hash"]


def wandb_records(path: Path) -> list:
    """Every record of a ``.wandb`` file, decoded with wandb's own protobuf ``Record``.

    The file is a LevelDB log (a 7-byte ``:W&B`` header, then 32 KiB blocks of records
    ``crc32 <I, length <H, type <B, data``; types full 1, first 2, middle 3, last 4), the
    format described in wandb/sdk/internal/datastore.py (wandb/wandb); wandb >= 0.2x writes
    it from its Go core and no longer ships that Python reader.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    index, pending, records = 7, b"", []
    while index < len(data):
        if 32768 - index % 32768 < 7:
            index += 32768 - index % 32768
            continue
        checksum, length, kind = struct.unpack("<IHB", data[index : index + 7])
        chunk = data[index + 7 : index + 7 + length]
        index += 7 + length
        assert checksum == zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
        pending += chunk
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_read_back(compose_cfg, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    run_dir = run(compose_cfg, tmp_path, "logger=wandb")
    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = wandb_records(Path(path))
    kinds = [record.WhichOneof("record_type") for record in records]
    assert "exit" in kinds, f"the .wandb file was not flushed when the run ended: {kinds}"
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item_key(i): json.loads(i.value_json) for i in record.history.item}
            history[record.history.step.num] = row
    assert sorted(history) == [0, 1, 2, 3, 4]
    expected = pd.read_csv(run_dir / "history.csv")["test_acc"]
    assert [history[s]["epoch/test_acc"] for s in (2, 4)] == pytest.approx(list(expected))
    assert all("train/loss" in history[s] for s in range(4))
    config = {
        item_key(i): json.loads(i.value_json)
        for record in records
        if record.WhichOneof("record_type") == "config"
        for i in record.config.update
    }
    assert config["strategy.name"] == "mmpareto" and config["seed"] == 0
    saved = {
        f.path
        for record in records
        if record.WhichOneof("record_type") == "files"
        for f in record.files.files
    }
    assert {"metrics.json", "history.csv", "telemetry.csv"} <= saved
    (exit_record,) = [r for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit.exit_code == 0


def test_chosen_backend_missing_fails_at_start(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # import raises ImportError
    cfg = compose_cfg([*TINY, f"paths.output_dir={tmp_path / 'outputs'}", "logger=mlflow"])
    with pytest.raises(MissingBackendError, match=r"logger=mlflow .*pip install mlflow-skinny"):
        fit(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "history.csv").exists()


def test_failed_run_ends_the_mlflow_run_failed(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    def boom(self) -> None:
        raise RuntimeError("simulated failure in training")

    monkeypatch.setattr("mmbench.train.Engine.fit", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run(compose_cfg, tmp_path, "logger=mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("mmbench").experiment_id])
    assert found.info.status == "FAILED"


def test_many_loggers_preset_composes_three_backends(compose_cfg) -> None:
    cfg = compose_cfg(["logger=many_loggers"])
    assert list(cfg.logger) == ["csv", "tensorboard", "mlflow"]
    assert all("_target_" in entry for entry in cfg.logger.values())


def test_logger_config_without_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"conf/logger/\*\.yaml.*logger=csv"):
        build_logger(OmegaConf.create({"csv": {"subdir": "x"}}), tmp_path)
    assert build_logger(None, tmp_path).loggers == []


def test_group_closes_every_logger_even_if_one_fails() -> None:
    closed = []

    class Failing:
        def close(self, status: str) -> None:
            raise OSError("store gone")

    class Recording:
        def close(self, status: str) -> None:
            closed.append(status)

    with pytest.raises(OSError, match="store gone"):
        LoggerGroup([Failing(), Recording()]).close("completed")
    assert closed == ["completed"]


def test_flatten_gives_dotted_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }
