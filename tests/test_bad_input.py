"""Bad input gets a clear error naming the file and the fix, or a recorded skip per galaxy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from simbridge.config import validate_config
from simbridge.dataset.balance import write_view_plan
from simbridge.errors import SimBridgeInputError
from simbridge.extract.tng_maps import extract_batch, measure_batch, write_galaxy_catalog
from simbridge.sims.tng_demo import generate_demo_universe
from tests.conftest import ROOT, small_config


@pytest.fixture(scope="module")
def pristine_universe(tmp_path_factory) -> Path:
    sim = tmp_path_factory.mktemp("pristine") / "TNG-demo"
    cfg = small_config()
    cfg["demo_universe"]["n_galaxies"] = 8
    generate_demo_universe(sim, cfg["demo_universe"], cfg["seed"])
    return sim


@pytest.fixture()
def sim(pristine_universe, tmp_path) -> Path:
    """A private copy of the small demo universe that a test may damage."""
    copy = tmp_path / "TNG-demo"
    shutil.copytree(pristine_universe, copy)
    return copy


@pytest.fixture()
def config() -> dict:
    cfg = validate_config(small_config())
    cfg["tng"]["n_batches"] = 1
    return cfg


def run_extraction(sim: Path, config: dict, tmp_path: Path, snapshot: int = 99) -> pd.DataFrame:
    base = sim / "output"
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_galaxy_catalog(base, snapshot, config["tng"], tmp_path / "catalog.csv")
    return extract_batch(base, snapshot, tmp_path / "catalog.csv", 0, config,
                         tmp_path / "maps.h5", tmp_path / "galaxies.csv", progress=False)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def expect_error(match_file: Path | str, *phrases: str):
    """Context manager: a SimBridgeInputError whose message names the file and the phrases."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(SimBridgeInputError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            assert str(match_file) in message, message
            assert "fix:" in message, message
            for phrase in phrases:
                assert phrase in message, message
            return handled
    return _Check()


def test_missing_base_path(tmp_path, config):
    missing = tmp_path / "nowhere" / "output"
    with expect_error(missing, "tng.base_path"):
        write_galaxy_catalog(missing, 99, config["tng"], tmp_path / "c.csv")


def test_base_path_that_is_not_a_tng_output(tmp_path, config):
    with expect_error(tmp_path, "snapdir_NNN"):
        write_galaxy_catalog(tmp_path, 99, config["tng"], tmp_path / "c.csv")


def test_missing_snapshot_lists_the_present_ones(sim, config, tmp_path):
    with expect_error(sim / "output" / "snapdir_050", "snapshot 50 not found", "[91, 99]"):
        write_galaxy_catalog(sim / "output", 50, config["tng"], tmp_path / "c.csv")


def test_missing_snapshot_chunk(sim, config, tmp_path):
    chunk = sim / "output" / "snapdir_099" / "snap_099.1.hdf5"
    chunk.unlink()
    with expect_error(chunk, "chunks of snapshot 99 are missing"):
        run_extraction(sim, config, tmp_path)


def test_missing_stellar_assembly(sim, config, tmp_path):
    path = sim / "postprocessing" / "StellarAssembly" / "stars_099.hdf5"
    path.unlink()
    with expect_error(path, "StellarAssembly", "Rodriguez-Gomez"):
        run_extraction(sim, config, tmp_path)
    assert not (tmp_path / "maps.h5").exists()


def test_stellar_assembly_of_another_snapshot(sim, config, tmp_path):
    sa = sim / "postprocessing" / "StellarAssembly"
    shutil.copy(sa / "stars_091.hdf5", sa / "stars_099.hdf5")
    with expect_error(sa / "stars_099.hdf5", "another snapshot"):
        run_extraction(sim, config, tmp_path)


@pytest.mark.parametrize(
    "relative",
    [
        "output/snapdir_099/snap_099.1.hdf5",
        "output/snapdir_099/snap_099.0.hdf5",
        "output/groups_099/fof_subhalo_tab_099.1.hdf5",
        "postprocessing/StellarAssembly/stars_099.hdf5",
        "postprocessing/offsets/offsets_099.hdf5",
    ],
)
def test_truncated_hdf5_names_the_file(sim, config, tmp_path, relative):
    truncate(sim / relative)
    with expect_error(sim / relative, "re-download"):
        run_extraction(sim, config, tmp_path)
    assert not list(tmp_path.glob("maps.h5*"))


def test_cutout_header_without_numpart_total(sim, config, tmp_path):
    chunk0 = sim / "output" / "snapdir_099" / "snap_099.0.hdf5"
    with h5py.File(chunk0, "a") as fh:
        del fh["Header"].attrs["NumPart_Total"]
    with expect_error(chunk0, "NumPart_Total"):
        run_extraction(sim, config, tmp_path)


def _subhalo_star_range(sim: Path, subhalo: int) -> tuple[int, int]:
    with h5py.File(sim / "postprocessing/offsets/offsets_099.hdf5") as fh:
        start = int(fh["Subhalo/SnapByType"][subhalo, 4])
    import illustris_python as il

    length = int(il.groupcat.loadSingle(str(sim / "output"), 99, subhaloID=subhalo)
                 ["SubhaloLenType"][4])
    return start, length


def _write_star_field(sim: Path, global_index: int, field: str, value: float) -> None:
    """Overwrite one PartType4 value in whichever chunk holds that global index."""
    first = 0
    for chunk in sorted((sim / "output/snapdir_099").glob("snap_099.*.hdf5"),
                        key=lambda p: int(p.name.split(".")[1])):
        with h5py.File(chunk, "a") as fh:
            n = int(fh["Header"].attrs["NumPart_ThisFile"][4])
            if first <= global_index < first + n:
                data = fh[f"PartType4/{field}"]
                if data.ndim == 1:
                    data[global_index - first] = value
                    return
                row = data[global_index - first]
                row[...] = value
                data[global_index - first] = row
                return
            first += n
    raise AssertionError("index not found")


def test_nan_in_one_galaxy_is_a_recorded_skip(sim, config, tmp_path):
    start, length = _subhalo_star_range(sim, 0)
    with h5py.File(sim / "postprocessing/StellarAssembly/stars_099.hdf5") as fh:
        is_star = fh["InSitu"][start:start + length] >= 0  # wind cells are -1
    _write_star_field(sim, start + int(np.flatnonzero(is_star)[length // 4]), "Coordinates",
                      np.nan)
    manifest = run_extraction(sim, config, tmp_path).set_index("subhalo_id")
    assert manifest.loc[0, "status"] == "skipped"
    assert "non-finite values in PartType4/Coordinates" in manifest.loc[0, "reason"]
    others = manifest.drop(index=0)
    assert (others["status"] == "extracted").all()
    with h5py.File(tmp_path / "maps.h5") as h5:
        assert 0 not in set(h5["subhalo_id"][...].tolist())
        assert np.isfinite(h5["conditions"][...]).all()


def test_nan_in_the_catalog_is_a_recorded_skip(sim, config, tmp_path):
    chunk0 = sim / "output/groups_099/fof_subhalo_tab_099.0.hdf5"
    with h5py.File(chunk0, "a") as fh:
        pos = fh["Subhalo/SubhaloPos"][...]
        pos[0, 1] = np.nan
        fh["Subhalo/SubhaloPos"][...] = pos
    catalog = write_galaxy_catalog(sim / "output", 99, config["tng"], tmp_path / "c.csv")
    row = catalog.set_index("subhalo_id").loc[0]
    assert row["status"] == "skipped" and "non-finite SubhaloPos" in row["reason"]
    assert row["batch"] == -1


def test_subhalo_flag_zero_is_a_recorded_skip(sim, config, tmp_path):
    """TNG marks clumps of non-cosmological origin with SubhaloFlag = 0; they are not galaxies."""
    chunk0 = sim / "output/groups_099/fof_subhalo_tab_099.0.hdf5"
    with h5py.File(chunk0, "a") as fh:
        flag = fh["Subhalo/SubhaloFlag"][...]
        flag[0] = 0
        fh["Subhalo/SubhaloFlag"][...] = flag
    manifest = run_extraction(sim, config, tmp_path)
    assert 0 not in set(manifest["subhalo_id"])  # never reaches a batch
    catalog = pd.read_csv(tmp_path / "catalog.csv").set_index("subhalo_id")
    assert catalog.loc[0, "status"] == "skipped" and catalog.loc[0, "batch"] == -1
    assert "SubhaloFlag=0" in catalog.loc[0, "reason"]
    assert (manifest["status"] == "extracted").all()


def test_galaxy_with_too_few_particles_is_a_recorded_skip(sim, config, tmp_path):
    sizes = write_galaxy_catalog(sim / "output", 99, config["tng"], tmp_path / "c.csv")["n_part4"]
    config["maps"]["min_star_particles"] = int(np.median(sizes))
    manifest = run_extraction(sim, config, tmp_path)
    skipped = manifest[manifest["status"] == "skipped"]
    assert 0 < len(skipped) < len(manifest)
    assert skipped["reason"].str.contains("star particles (wind excluded) < "
                                          "maps.min_star_particles", regex=False).all()


def test_measurement_skip_reaches_plan_and_manifest_without_views(sim, config, tmp_path):
    """A galaxy unusable at measurement gets no view in the plan and its reason in the maps."""
    base = sim / "output"
    catalog = write_galaxy_catalog(base, 99, config["tng"], tmp_path / "catalog.csv")
    config["maps"]["min_star_particles"] = int(np.median(catalog["n_part4"]))
    measured = measure_batch(base, 99, tmp_path / "catalog.csv", 0, config,
                             tmp_path / "measured.csv", progress=False)
    skipped = measured[measured["status"] == "skipped"]
    assert 0 < len(skipped) < len(measured)
    plan = write_view_plan([tmp_path / "measured.csv"], config["balancing"],
                           tmp_path / "plan.csv", tmp_path / "balancing.json")
    assert (plan.loc[plan["status"] == "skipped", "n_views"] == 0).all()
    assert (plan.loc[plan["status"] == "measured", "n_views"] >= 1).all()
    manifest = extract_batch(base, 99, tmp_path / "catalog.csv", 0, config,
                             tmp_path / "maps.h5", tmp_path / "galaxies.csv",
                             plan_csv=tmp_path / "plan.csv", progress=False)
    out = manifest.set_index("subhalo_id").loc[skipped["subhalo_id"]]
    assert (out["status"] == "skipped").all() and (out["n_views"] == 0).all()
    assert out["reason"].str.contains("maps.min_star_particles", regex=False).all()
    done = manifest[manifest["status"] == "extracted"].merge(plan, on="subhalo_id")
    assert (done["n_views_x"] == done["n_views_y"]).all()
    np.testing.assert_allclose(done["exsitu_fraction_global_x"],
                               done["exsitu_fraction_global_y"], rtol=1e-6)


def test_workflow_prints_the_clean_error(tmp_path):
    cfg = small_config()
    cfg["tng"]["base_path"] = str(tmp_path / "no_such_sim" / "output")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
         "--cores", "1"],
        capture_output=True, text=True, timeout=3 * 3600,  # a hang guard, not a time limit
    )
    assert proc.returncode != 0
    assert "SimBridge error: TNG base path does not exist" in proc.stderr + proc.stdout
    logs = list((tmp_path / "results/logs/select_galaxies").glob("snap_*.log"))
    assert logs
    log = logs[0].read_text()
    assert "SimBridge error: TNG base path does not exist" in log
    assert "tng.base_path" in log and "Traceback" not in log


def test_archive_without_offsets_files_reads_through_fof_order(sim, config, tmp_path):
    """CAMELS-like archives have no offsets file: FoF ordering gives the same maps."""
    with_offsets = run_extraction(sim, config, tmp_path / "a")
    with h5py.File(tmp_path / "a" / "maps.h5") as h5:
        reference = h5["conditions"][...]
    (sim / "postprocessing/offsets/offsets_099.hdf5").unlink()
    without = run_extraction(sim, config, tmp_path / "b")
    pd.testing.assert_frame_equal(with_offsets, without)
    with h5py.File(tmp_path / "b" / "maps.h5") as h5:
        np.testing.assert_array_equal(h5["conditions"][...], reference)


def _a_star_of_subhalo(sim: Path, subhalo: int) -> int:
    """Global PartType4 index of one real star (not a wind cell) of ``subhalo``."""
    start, length = _subhalo_star_range(sim, subhalo)
    with h5py.File(sim / "postprocessing/StellarAssembly/stars_099.hdf5") as fh:
        is_star = fh["InSitu"][start:start + length] >= 0  # wind cells are -1
    return start + int(np.flatnonzero(is_star)[length // 4])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("Masses", -1e-4, "1 negative values in PartType4/Masses"),
        ("GFM_Metallicity", -0.01, "1 negative values in PartType4/GFM_Metallicity"),
        # snapshot 99 is at a = 1: a star formed at a = 1.2 has a negative age
        ("GFM_StellarFormationTime", 1.2, "1 star particles formed after the snapshot"),
    ],
    ids=["negative_mass", "negative_metallicity", "formed_after_the_snapshot"],
)
def test_unphysical_star_values_are_a_recorded_skip_like_nans(sim, config, tmp_path, field,
                                                              value, reason):
    """One bad star skips its galaxy with the reason in the manifest; the batch goes on."""
    _write_star_field(sim, _a_star_of_subhalo(sim, 0), field, value)
    manifest = run_extraction(sim, config, tmp_path).set_index("subhalo_id")
    assert manifest.loc[0, "status"] == "skipped"
    assert reason in manifest.loc[0, "reason"], manifest.loc[0, "reason"]
    assert (manifest.drop(index=0)["status"] == "extracted").all()
    with h5py.File(tmp_path / "maps.h5") as h5:
        assert 0 not in set(h5["subhalo_id"][...].tolist())
        assert (h5["conditions"][:, 3] >= 0).all()  # no negative mass-weighted age
    if field in ("Masses", "GFM_StellarFormationTime"):  # what the measurement reads
        measured = measure_batch(sim / "output", 99, tmp_path / "catalog.csv", 0, config,
                                 tmp_path / "measured.csv", progress=False)
        row = measured.set_index("subhalo_id").loc[0]
        assert row["status"] == "skipped" and reason in row["reason"]


def _set_header(path: Path, key: str, value: float) -> None:
    with h5py.File(path, "a") as fh:
        fh["Header"].attrs[key] = value


@pytest.mark.parametrize(("key", "value"), [("HubbleParam", 0.7), ("Redshift", 0.1),
                                            ("Time", 0.909)])
@pytest.mark.parametrize("relative", ["output/snapdir_099/snap_099.2.hdf5",
                                      "output/groups_099/fof_subhalo_tab_099.1.hdf5"])
def test_headers_that_disagree_between_files_stop_naming_both(sim, config, tmp_path, key, value,
                                                              relative):
    _set_header(sim / relative, key, value)
    chunk0 = sim / "output/snapdir_099/snap_099.0.hdf5"
    with expect_error(sim / relative, f"Header {key} = {value:g}", "different snapshots or runs",
                      str(chunk0)):
        run_extraction(sim, config, tmp_path)
    assert not (tmp_path / "maps.h5").exists()


def test_redshift_that_disagrees_with_the_scale_factor_stops(sim, config, tmp_path):
    for path in [*sim.glob("output/snapdir_099/*.hdf5"), *sim.glob("output/groups_099/*.hdf5")]:
        _set_header(path, "Redshift", 0.1)  # every file agrees, but a = 1 means z = 0
    chunk0 = sim / "output/snapdir_099/snap_099.0.hdf5"
    with expect_error(chunk0, "Redshift = 0.1 but Time (scale factor) = 1"):
        run_extraction(sim, config, tmp_path)


def test_implausible_hubble_param_gets_its_own_error(sim, config, tmp_path):
    """67.74 (H0 instead of h) in every header: not a 'lower the mass cut' message."""
    for path in [*sim.glob("output/snapdir_099/*.hdf5"), *sim.glob("output/groups_099/*.hdf5")]:
        _set_header(path, "HubbleParam", 67.74)
    chunk0 = sim / "output/snapdir_099/snap_099.0.hdf5"
    with expect_error(chunk0, "HubbleParam = 67.74", "plausible range 0.3-1.5",
                      "h would be 0.6774") as info:
        run_extraction(sim, config, tmp_path)
    assert "stellar_mass_min_msun" not in str(info.value)


def test_missing_box_size_gets_a_fix_that_fits(sim, config, tmp_path):
    chunk0 = sim / "output/snapdir_099/snap_099.0.hdf5"
    with h5py.File(chunk0, "a") as fh:
        del fh["Header"].attrs["BoxSize"]
    with expect_error(chunk0, "lacks BoxSize", "attrs['BoxSize']") as info:
        run_extraction(sim, config, tmp_path)
    assert "cutout" not in str(info.value) and "NumPart_Total" not in str(info.value)


def test_corrupt_map_batch_gets_the_rerun_fix_not_re_download(sim, config, tmp_path):
    from simbridge.dataset.build import build_split

    manifest = run_extraction(sim, config, tmp_path)
    done = manifest[manifest["status"] == "extracted"]
    pd.DataFrame({"snapshot": done["snapshot"], "subhalo_id": done["subhalo_id"],
                  "lineage_group": np.arange(len(done)), "split": "train"}
                 ).to_csv(tmp_path / "splits.csv", index=False)
    args = (["train", [tmp_path / "maps.h5"], [tmp_path / "galaxies.csv"],
             tmp_path / "splits.csv", config])
    assert build_split(*args, tmp_path / "train.h5", progress=False) == done["n_views"].sum()
    truncate(tmp_path / "maps.h5")
    with expect_error(tmp_path / "maps.h5", "maps batch", "--forcerun extract_maps",
                      f"rm {tmp_path / 'maps.h5'}") as info:
        build_split(*args, tmp_path / "train2.h5", progress=False)
    assert "re-download" not in str(info.value)
    (tmp_path / "galaxies.csv").write_bytes(b"\x00\xff garbage")
    with expect_error(tmp_path / "galaxies.csv", "--forcerun extract_maps") as info:
        build_split(*args, tmp_path / "train3.h5", progress=False)
    assert "re-download" not in str(info.value)
