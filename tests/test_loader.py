"""The training loader: batches against brute-force h5py reads, in-memory and block modes alike,
the block-local order of (seed, epoch), workers, memory budget and bad files."""

from __future__ import annotations

import logging
import re

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simbridge.errors import SimBridgeInputError  # noqa: E402
from simbridge.models import data  # noqa: E402
from simbridge.models.data import ExsituMapDataset, batch_loader, block_order  # noqa: E402
from simbridge.models.exsitu import sample_loader, train_cvae  # noqa: E402
from simbridge.models.training import epoch_order  # noqa: E402
from tests.toy_splits import toy_settings, write_toy_split  # noqa: E402


@pytest.fixture(autouse=True)
def _budget_restored():
    """Every test starts and ends with the automatic budget."""
    data.set_memory_budget(None)
    yield
    data.set_memory_budget(None)


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of 4 samples, windows of 3 blocks, items of 2 batches: a 50-sample toy split
    spans several windows and batches straddle windows."""
    monkeypatch.setattr(data, "BLOCK_SAMPLES", 4)
    monkeypatch.setattr(data, "WINDOW_BLOCKS", 3)
    monkeypatch.setattr(data, "GROUP_SAMPLES", 14)


def _brute_force(path, indices):
    """The samples at ``indices``, one h5py read per sample and dataset."""
    with h5py.File(path) as h5:
        cond = np.stack([h5["conditions"][int(i)] for i in indices])
        target = np.stack([h5["exsitu_fraction_map"][int(i)] for i in indices])[:, None]
        mask = np.stack([h5["galaxy_mask"][int(i)] for i in indices])[:, None]
    return cond, target, mask.astype(np.float32)


def _batches(ds, indices, batch_size, workers=0, budget_gb=None):
    data.set_memory_budget(budget_gb)
    ds.release_memory()
    out = [tuple(t.clone() for t in b) for b in batch_loader(ds, indices, batch_size, workers)]
    held = ds.in_memory
    ds.release_memory()
    return out, held


def test_block_order_is_a_block_local_shuffle_of_the_given_order():
    rng = np.random.default_rng(0)
    n, block, wb = 103, 4, 3
    order = rng.permutation(n)
    out = block_order(order, block, wb)
    assert sorted(out.tolist()) == list(range(n))  # a permutation
    # brute force: blocks by first appearance, wb blocks per window, the samples of a window
    # in their input order
    first_blocks = list(dict.fromkeys((order // block).tolist()))
    expected = []
    for w in range(0, len(first_blocks), wb):
        members = set(first_blocks[w:w + wb])
        expected += [int(s) for s in order if s // block in members]
    assert out.tolist() == expected
    # hence each window is a run of whole blocks: the reader touches wb blocks at a time
    runs = [len(set((out[k:k + block * wb] // block).tolist()))
            for k in range(0, n - block * wb, block * wb)]
    assert max(runs) <= wb + 1
    # orders of at most one window and the sequential order are left as they are
    np.testing.assert_array_equal(block_order(order[:12], block, wb), order[:12])
    np.testing.assert_array_equal(block_order(np.arange(n), block, wb), np.arange(n))


def test_order_is_determined_by_seed_and_epoch(tmp_path, small_blocks):
    path = write_toy_split(tmp_path / "train.h5", 50)
    ds = ExsituMapDataset(path)

    def first_ids(seed, epoch):
        batches, _ = _batches(ds, epoch_order(len(ds), seed, epoch), 7)
        return np.concatenate([b[0][:, 0, 8, 8].numpy() for b in batches])

    a = first_ids(3, 0)
    np.testing.assert_array_equal(a, first_ids(3, 0))
    assert not np.array_equal(a, first_ids(3, 1))
    assert not np.array_equal(a, first_ids(4, 0))


@pytest.mark.parametrize("budget_gb", [None, 0.0], ids=["in_memory", "blocks"])
def test_batches_equal_brute_force_reads_in_the_block_local_order(tmp_path, small_blocks,
                                                                  budget_gb):
    path = write_toy_split(tmp_path / "train.h5", 50)
    ds = ExsituMapDataset(path)
    order = epoch_order(len(ds), 11, 2)
    batches, held = _batches(ds, order, 7, budget_gb=budget_gb)
    assert held == (budget_gb is None)
    expected_order = block_order(order, 4, 3)
    assert not np.array_equal(expected_order, order)  # the toy split spans several windows
    assert [len(b[0]) for b in batches] == [7] * 7 + [1]
    got = [np.concatenate([b[k].numpy() for b in batches]) for k in range(3)]
    for g, ref in zip(got, _brute_force(path, expected_order), strict=True):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, ref)
    # sequential order (validation, evaluation, latents of every sample): unchanged
    seq, _ = _batches(ds, None, 16, budget_gb=budget_gb)
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in seq]),
                                  _brute_force(path, range(50))[0])
    # single samples by index (the Dataset API)
    cond, target, mask = ds[13]
    np.testing.assert_array_equal(cond.numpy(), _brute_force(path, [13])[0][0])
    assert target.shape == mask.shape == (1, 16, 16)


def test_memory_and_block_modes_and_worker_counts_give_identical_batches(tmp_path,
                                                                         small_blocks):
    path = write_toy_split(tmp_path / "train.h5", 50)
    ds = ExsituMapDataset(path)
    order = epoch_order(len(ds), 5, 0)
    reference, held = _batches(ds, order, 6, budget_gb=None)
    assert held
    for workers, budget in ((0, 0.0), (2, 0.0), (2, None)):
        other, held = _batches(ds, order, 6, workers=workers, budget_gb=budget)
        assert held == (budget is None)
        assert len(other) == len(reference)
        for a, b in zip(reference, other, strict=True):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y)
    # the training code's entry point gives the same batches
    via_exsitu = list(sample_loader(ds, order, 6, 0, torch.device("cpu")))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(reference, via_exsitu, strict=True))


def test_memory_budget_decides_the_mode_and_the_choice_is_logged(tmp_path, caplog):
    a = ExsituMapDataset(write_toy_split(tmp_path / "a.h5", 20))
    b = ExsituMapDataset(write_toy_split(tmp_path / "b.h5", 20, seed=1))
    assert a.nbytes == 20 * 16 * 16 * (5 * 4 + 4 + 1)
    with caplog.at_level(logging.INFO, logger="simbridge.models.data"):
        data.set_memory_budget(1.5 * a.nbytes / 1e9)  # room for one split, not two
        assert a.hold_in_memory() and a.in_memory
        assert not b.hold_in_memory()  # what `a` holds counts against the budget
        assert "a.h5: 20 samples" in caplog.text and "held in memory" in caplog.text
        assert "b.h5: 20 samples" in caplog.text and "read in blocks" in caplog.text
        a.release_memory()
        assert b.hold_in_memory()
        b.release_memory()
        data.set_memory_budget(None)  # automatic: half of what the machine has free
        assert 0 < data.memory_budget_bytes() <= data.available_memory_bytes()
        assert a.hold_in_memory()
    a.release_memory()
    # a first sequential pass reads the file; a second one (validation) or a shuffled one loads
    c = ExsituMapDataset(tmp_path / "a.h5")
    list(batch_loader(c, None, 8))
    assert not c.in_memory
    list(batch_loader(c, None, 8))
    assert c.in_memory
    d = ExsituMapDataset(tmp_path / "b.h5")
    list(batch_loader(d, np.arange(20)[::-1], 8))
    assert d.in_memory


def test_same_settings_give_the_same_weights_in_memory_and_from_blocks(tmp_path, small_blocks):
    """Training reads batches in either mode; the mode is speed only."""
    train = write_toy_split(tmp_path / "t.h5", 40, seed=1)
    val = write_toy_split(tmp_path / "v.h5", 8, seed=2)
    settings = toy_settings(epochs=2)
    states = []
    for name, budget in (("memory", None), ("blocks", 0.0)):
        data.set_memory_budget(budget)
        out = tmp_path / name
        train_cvae(train, val, settings, out / "cvae.pt", out / "h.csv", None, out / "ck",
                   device="cpu")
        states.append(torch.load(out / "cvae.pt", weights_only=False)["state_dict"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "split file is missing"),
        ("nan", "NaN or inf values (first in sample 3)"),
        ("truncated", "cannot be"),
        ("no_mask", "lacks the dataset"),
    ],
)
def test_bad_files_give_the_clean_errors_of_check_split_file(tmp_path, damage, message):
    path = tmp_path / "train.h5"
    if damage != "missing":
        write_toy_split(path, 6)
    if damage in ("nan", "no_mask"):
        with h5py.File(path, "a") as h5:
            if damage == "nan":
                h5["conditions"][3, 2, 4, 4] = np.nan
            else:
                del h5["galaxy_mask"]
    if damage == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SimBridgeInputError, match=re.escape(message)) as err:
        ExsituMapDataset(path)
    assert str(path) in str(err.value) and "fix:" in str(err.value)


def test_a_file_damaged_after_the_check_gives_a_clean_error_in_block_mode(tmp_path):
    path = write_toy_split(tmp_path / "train.h5", 40)
    ds = ExsituMapDataset(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    data.set_memory_budget(0.0)
    with pytest.raises(SimBridgeInputError, match="cannot be read") as err:
        list(batch_loader(ds, None, 8))
    assert str(path) in str(err.value) and "snakemake" in str(err.value)
