"""Job logs: every failure reaches the job's log, training progress reaches the terminal."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from simbridge.errors import SimBridgeInputError
from simbridge.logs import job_logging, progress_logger
from simbridge.models.training import FitSettings, fit


def test_unexpected_exception_reaches_the_job_log_with_its_traceback(tmp_path, capsys):
    log_file = tmp_path / "logs" / "job.log"

    def failing_job() -> None:
        logging.getLogger("simbridge.test").info("reading the batch")
        {"a": 1}["missing_key"]

    with pytest.raises(SystemExit) as exit_info, job_logging(log_file):
        failing_job()
    assert exit_info.value.code == 1
    log = log_file.read_text()
    assert "reading the batch" in log
    assert "Traceback (most recent call last)" in log
    assert "in failing_job" in log and "KeyError: 'missing_key'" in log
    terminal = capsys.readouterr().err
    assert "KeyError" in terminal and str(log_file.resolve()) in terminal
    assert "Traceback" not in terminal  # the terminal gets a pointer, the log the traceback
    assert len(terminal.strip().splitlines()) <= 2


def test_simbridge_errors_stay_a_clean_message(tmp_path, capsys):
    log_file = tmp_path / "job.log"
    with pytest.raises(SystemExit), job_logging(log_file):
        raise SimBridgeInputError("chunk is missing", tmp_path / "snap.0.hdf5", "download it")
    log = log_file.read_text()
    assert "SimBridge error: chunk is missing" in log and "Traceback" not in log
    assert "SimBridge error: chunk is missing" in capsys.readouterr().err


def test_progress_records_reach_log_and_terminal_only_inside_a_job(tmp_path, capsys):
    with job_logging(tmp_path / "job.log"):
        progress_logger("test").info("step 1 of 3")
        logging.getLogger("simbridge.other").info("detail for the log only")
    terminal = capsys.readouterr().err
    assert "step 1 of 3" in terminal and "detail for the log only" not in terminal
    log = (tmp_path / "job.log").read_text()
    assert "step 1 of 3" in log and "detail for the log only" in log
    progress_logger("test").info("outside a job")  # no terminal handler left behind
    assert "outside a job" not in capsys.readouterr().err


def _tiny_regression() -> tuple[nn.Module, list, list]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 16, 8)]
    return nn.Linear(3, 1), batches, [(x[16:], y[16:])]


def _step(model, batch, generator, epoch):
    x, y = batch
    return {"loss": nn.functional.mse_loss(model(x), y), "n": torch.tensor(len(x))}


def test_training_prints_one_progress_line_per_epoch_on_the_terminal(tmp_path, capsys):
    torch.manual_seed(0)
    model, train, val = _tiny_regression()
    settings = FitSettings(epochs=3, batch_size=8, learning_rate=1e-2, patience=10, seed=1)
    with job_logging(tmp_path / "train.log"):
        result = fit(model, _step, lambda epoch: train, lambda: val, settings,
                     tmp_path / "checkpoints", "hash", desc="toy model")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "toy model epoch" in ln]
    assert [ln.split("epoch ")[1].split(":")[0] for ln in lines] == ["1/3", "2/3", "3/3"]
    for line, row in zip(lines, result.history.itertuples(), strict=True):
        assert f"train loss {row.train_loss:.5g}" in line
        assert f"validation loss {row.val_loss:.5g}" in line
        assert f"{row.train_samples_per_s:.0f} samples/s" in line
    log = (tmp_path / "train.log").read_text()
    assert sum("toy model epoch" in ln and "samples/s" in ln for ln in log.splitlines()) == 3
