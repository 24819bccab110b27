"""Superposed stellar halos: sums of building-block abundance histograms, with checked splits.

A sample is a set of N_sub distinct building blocks (snapshots); its observable is the sum of
their 64x64 [O/Fe]-[Fe/H] histograms and its parameters are (stellar mass, dark-matter mass,
infall time) of each block, ordered by decreasing stellar mass. The sum is one product
``X = M @ T`` of the sparse (samples x templates) membership matrix M (ones) with the
(templates x pixels) histogram matrix T, computed and written chunk by chunk so memory stays
bounded.

Train, validation and test are disjoint under one of two rules (``disjointness``):

* ``galaxies`` (strict, default): galaxies (simulations, with all their snapshots) are dealt to
  the splits first, so no building-block galaxy of one split appears in another at all;
* ``combinations`` (the CASBI rule): every split draws from all blocks, but no combination of
  galaxy names of a training set appears in validation or test (colliding sets are redrawn).

Optional per-star observational noise (``noise_dex``) is applied before histogramming: each
block gets ``n_noise_realizations`` noisy histograms (stars re-binned after Gaussian offsets in
[Fe/H] and [O/Fe]; stars pushed out of the range are lost) and each member of a set picks one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract.abundances import abundance_histogram
from simbridge.io import atomic_output, write_provenance
from simbridge.models.training import derive_seed

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
RULES = ("galaxies", "combinations")
#: Parameters of each building block, in order, with units.
PARAMETER_NAMES = ("stellar_mass_msun", "dm_mass_msun", "infall_time_gyr")
PARAMETER_UNITS = ("Msun", "Msun", "Gyr")


def assign_galaxy_splits(galaxies: Sequence[str], fractions: dict[str, float], seed: int
                         ) -> dict[str, str]:
    """Deal galaxies (sorted, then shuffled with the seed) to train/validation/test.

    Every split gets at least one galaxy; counts follow ``fractions`` (which sum to 1).
    """
    names = sorted(set(galaxies))
    if len(names) < 3:
        raise SimBridgeInputError(
            f"{len(names)} galaxies give building blocks; the 'galaxies' disjointness rule "
            "needs at least 3 (one per split)",
            fix="use more simulations, or abundances.superposition.disjointness: combinations")
    if not math.isclose(sum(fractions[s] for s in SPLITS), 1.0, abs_tol=1e-6):
        raise SimBridgeConfigError(
            "abundances.superposition.galaxy_split_fractions must sum to 1 (got "
            f"{fractions})")
    order = np.random.default_rng(derive_seed(seed, "galaxy_splits")).permutation(len(names))
    n_val = max(1, round(fractions["validation"] * len(names)))
    n_test = max(1, round(fractions["test"] * len(names)))
    n_train = len(names) - n_val - n_test
    if n_train < 1:
        raise SimBridgeInputError(f"{len(names)} galaxies leave none for training",
                                  fix="use more simulations")
    labels = ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test
    return {names[i]: labels[k] for k, i in enumerate(order)}


def draw_sets(block_galaxy: NDArray, pool: NDArray, n_sub_range: Sequence[int],
              sets_per_n_sub: int, seed: int, label: str,
              forbidden: set[tuple[str, ...]] | None = None, max_redraws: int = 1000
              ) -> list[NDArray]:
    """Draw ``sets_per_n_sub`` sets of N_sub distinct blocks from ``pool`` for every N_sub.

    ``forbidden`` holds galaxy-name combinations (sorted tuples) that must not be drawn (the
    'combinations' rule); a colliding set is redrawn. Returns one block-index array per set.
    """
    lo, hi = int(n_sub_range[0]), int(n_sub_range[1])
    if hi > len(pool):
        raise SimBridgeInputError(
            f"the {label} split has {len(pool)} building blocks, fewer than N_sub = {hi}",
            fix="lower abundances.superposition.n_sub_range, use more simulations, or use "
                "disjointness: combinations")
    rng = np.random.default_rng(derive_seed(seed, "sets", label))
    sets = []
    for n_sub in range(lo, hi + 1):
        for _ in range(sets_per_n_sub):
            for _attempt in range(max_redraws):
                members = rng.choice(pool, size=n_sub, replace=False)
                if forbidden is None or combination(block_galaxy, members) not in forbidden:
                    break
            else:
                raise SimBridgeInputError(
                    f"no {label} set of N_sub = {n_sub} avoids the training combinations after "
                    f"{max_redraws} draws", fix="use more simulations or the 'galaxies' rule")
            sets.append(np.sort(members))
    return sets


def combination(block_galaxy: NDArray, members: NDArray) -> tuple[str, ...]:
    """The sorted galaxy names of a set of blocks (what the 'combinations' rule compares)."""
    return tuple(sorted(str(g) for g in block_galaxy[members]))


def membership_matrix(sets: Sequence[NDArray], template_of: Sequence[NDArray], n_templates: int
                      ) -> sp.csr_matrix:
    """CSR (samples x templates) matrix with a one per member template of every sample."""
    indptr = np.zeros(len(sets) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in sets])
    indices = np.concatenate(template_of) if sets else np.zeros(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(sets), n_templates))


def noisy_templates(stars: dict[str, NDArray], star_offset: NDArray, feh_edges: NDArray,
                    ofe_edges: NDArray, noise_dex: dict[str, float], n_realizations: int,
                    weighting: str, seed: int) -> NDArray:
    """(blocks x realizations, n, n) histograms of stars with Gaussian abundance noise."""
    n_blocks = len(star_offset) - 1
    n = len(feh_edges) - 1
    out = np.zeros((n_blocks * n_realizations, n, n), dtype=np.float32)
    for b in range(n_blocks):
        sl = slice(star_offset[b], star_offset[b + 1])
        for r in range(n_realizations):
            rng = np.random.default_rng(derive_seed(seed, "noise", b, r))
            feh = stars["feh"][sl] + rng.normal(0.0, noise_dex["feh"], sl.stop - sl.start)
            ofe = stars["ofe"][sl] + rng.normal(0.0, noise_dex["ofe"], sl.stop - sl.start)
            w = stars["mass_msun"][sl] if weighting == "mass" else None
            out[b * n_realizations + r] = abundance_histogram(feh, ofe, w, feh_edges, ofe_edges)
    return out


#: Above this many (chunk samples x templates) a chunk's membership stays sparse (memory).
DENSE_CHUNK_LIMIT = 25_000_000


def superpose_to_file(templates: NDArray, membership: sp.csr_matrix, path: str | Path,
                      chunk_samples: int, dataset: str = "x") -> None:
    """Write ``membership @ templates`` as dataset ``dataset`` (samples, n, n) float32 of the
    HDF5 file ``path`` (created or appended to), one chunk of samples at a time.

    With a few hundred templates a chunk's membership rows are densified and multiplied with
    BLAS (3x faster here than scipy's single-threaded sparse product); with many templates
    the product stays sparse. Memory: one chunk of outputs and of membership rows.
    """
    n_templates, n, _ = templates.shape
    flat = np.ascontiguousarray(templates.reshape(n_templates, n * n), dtype=np.float32)
    n_samples = membership.shape[0]
    dense = chunk_samples * n_templates <= DENSE_CHUNK_LIMIT
    with h5py.File(path, "a") as h5:
        d = h5.create_dataset(dataset, shape=(n_samples, n, n), dtype="f4",
                              chunks=(min(16, max(n_samples, 1)), n, n))
        for start in range(0, n_samples, chunk_samples):
            stop = min(start + chunk_samples, n_samples)
            rows = membership[start:stop]
            product = (rows.toarray() @ flat) if dense else (rows @ flat)
            d[start:stop] = product.reshape(stop - start, n, n)


def superpose_loop(templates: NDArray, sets: Sequence[NDArray]) -> NDArray:
    """Reference: one sample at a time, summing its members' histograms (as CASBI does)."""
    out = np.zeros((len(sets), *templates.shape[1:]), dtype=np.float32)
    for i, members in enumerate(sets):
        for m in members:
            out[i] += templates[m]
    return out


def ordered_parameters(params: NDArray, sets: Sequence[NDArray], n_max: int
                       ) -> tuple[NDArray, NDArray]:
    """(samples, n_max, 3) parameters ordered by decreasing stellar mass (NaN padding) and the
    matching (samples, n_max) block indices (-1 padding)."""
    theta = np.full((len(sets), n_max, params.shape[1]), np.nan)
    members = np.full((len(sets), n_max), -1, dtype=np.int64)
    for i, s in enumerate(sets):
        order = s[np.argsort(-params[s, 0], kind="stable")]
        theta[i, : len(s)] = params[order]
        members[i, : len(s)] = order
    return theta, members


def read_blocks(histogram_file: str | Path) -> dict[str, Any]:
    """Histograms, edges, block parameters, galaxy names and stars of the extraction stage."""
    with h5py.File(histogram_file, "r") as h5:
        return {
            "histograms": h5["histograms"][...],
            "weighting": str(h5["histograms"].attrs["weighting"]),
            "units": str(h5["histograms"].attrs["units"]),
            "feh_edges": h5["feh_edges"][...], "ofe_edges": h5["ofe_edges"][...],
            "params": np.stack([h5[k][...] for k in PARAMETER_NAMES], axis=1),
            "galaxy": h5["galaxy"][...].astype(str), "snapshot": h5["snapshot"][...].astype(str),
            "star_offset": h5["star_offset"][...],
            "stars": {k: h5[f"stars/{k}"][...] for k in ("feh", "ofe", "mass_msun")},
        }


def plan_splits(blocks: dict[str, Any], sup: dict[str, Any], seed: int
                ) -> dict[str, list[NDArray]]:
    """The sets of every split under the configured disjointness rule."""
    rule = sup["disjointness"]
    if rule not in RULES:
        raise SimBridgeConfigError(
            f"abundances.superposition.disjointness = {rule!r}; use one of {RULES}")
    galaxy = blocks["galaxy"]
    all_blocks = np.arange(len(galaxy))
    sets: dict[str, list[NDArray]] = {}
    if rule == "galaxies":
        split_of = assign_galaxy_splits(galaxy, sup["galaxy_split_fractions"], seed)
        for split in SPLITS:
            pool = all_blocks[np.array([split_of[g] == split for g in galaxy])]
            sets[split] = draw_sets(galaxy, pool, sup["n_sub_range"],
                                    sup["sets_per_n_sub"][split], seed, split)
    else:
        sets["train"] = draw_sets(galaxy, all_blocks, sup["n_sub_range"],
                                  sup["sets_per_n_sub"]["train"], seed, "train")
        seen = {combination(galaxy, s) for s in sets["train"]}
        for split in ("validation", "test"):
            sets[split] = draw_sets(galaxy, all_blocks, sup["n_sub_range"],
                                    sup["sets_per_n_sub"][split], seed, split, forbidden=seen)
    return sets


def build_superposition_files(histogram_file: str | Path, config: dict[str, Any],
                              out_files: dict[str, str | Path]) -> dict[str, Any]:
    """Write one HDF5 file per split (observables, N_sub, ordered parameters, members)."""
    sup = config["abundances"]["superposition"]
    seed = config["seed"]
    blocks = read_blocks(histogram_file)
    sets = plan_splits(blocks, sup, seed)
    noise = sup["noise_dex"]
    n_real = 1
    if noise["feh"] > 0 or noise["ofe"] > 0:
        n_real = int(sup["n_noise_realizations"])
        templates = noisy_templates(blocks["stars"], blocks["star_offset"], blocks["feh_edges"],
                                    blocks["ofe_edges"], noise, n_real, blocks["weighting"], seed)
    else:
        templates = blocks["histograms"].astype(np.float32)
    n_max = int(sup["n_sub_range"][1])
    summary = {}
    for split in SPLITS:
        split_sets = sets[split]
        rng = np.random.default_rng(derive_seed(seed, "realization", split))
        template_of = [s * n_real + rng.integers(0, n_real, len(s)) for s in split_sets]
        membership = membership_matrix(split_sets, template_of, templates.shape[0])
        theta, members = ordered_parameters(blocks["params"], split_sets, n_max)
        with atomic_output(out_files[split]) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.attrs["split"] = split
                h5.attrs["disjointness"] = sup["disjointness"]
                h5["n_sub"] = np.array([len(s) for s in split_sets], dtype=np.int64)
                h5["theta"] = theta
                h5["theta"].attrs["names"] = list(PARAMETER_NAMES)
                h5["theta"].attrs["units"] = list(PARAMETER_UNITS)
                h5["theta"].attrs["order"] = "building blocks by decreasing stellar mass"
                h5["members"] = members
                h5["block_galaxy"] = blocks["galaxy"].astype("S")
                h5["block_snapshot"] = blocks["snapshot"].astype("S")
                for name in ("feh_edges", "ofe_edges"):
                    h5[name] = blocks[name]
                    h5[name].attrs["units"] = "dex"
                write_provenance(h5, {"abundances": config["abundances"]}, seed,
                                 [str(histogram_file)])
            superpose_to_file(templates, membership, tmp, int(sup["chunk_samples"]))
            with h5py.File(tmp, "a") as h5:
                h5["x"].attrs["units"] = blocks["units"]
                h5["x"].attrs["axes"] = ["sample", "[O/Fe] bin", "[Fe/H] bin"]
        summary[split] = {"n_samples": len(split_sets),
                          "n_galaxies": len({g for s in split_sets for g in blocks["galaxy"][s]})}
    log.info("superpositions: %s", summary)
    return summary


# ----------------------------------------------------------------------------------------------
# The disjointness check (a workflow job: fails the run and removes the split files)
# ----------------------------------------------------------------------------------------------


def _split_combinations(path: str | Path) -> tuple[set[str], set[tuple[str, ...]], str]:
    with h5py.File(path, "r") as h5:
        galaxy = h5["block_galaxy"][...].astype(str)
        members = h5["members"][...]
        rule = str(h5.attrs["disjointness"])
    combos = {combination(galaxy, row[row >= 0]) for row in members}
    names = {g for row in members for g in galaxy[row[row >= 0]]}
    return names, combos, rule


def check_disjointness(split_files: dict[str, str | Path], rule: str) -> dict[str, Any]:
    """Read the splits back and prove the rule; raise SimBridgeInputError naming offenders.

    ``galaxies``: no galaxy in two splits. ``combinations``: no validation or test set with the
    galaxy names of a training set.
    """
    if rule not in RULES:
        raise SimBridgeConfigError(f"disjointness rule {rule!r}; use one of {RULES}")
    names, combos = {}, {}
    for split, path in split_files.items():
        names[split], combos[split], written_rule = _split_combinations(path)
        if written_rule != rule:
            raise SimBridgeInputError(
                f"the {split} file was built with the {written_rule!r} rule, the config asks "
                f"for {rule!r}", path=path, fix="rerun the abundances_dataset stage")
    problems = []
    if rule == "galaxies":
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            shared = sorted(names[a] & names[b])
            if shared:
                problems.append(f"galaxies in both {a} and {b}: {shared[:10]}")
    else:
        for split in ("validation", "test"):
            shared = sorted(combos["train"] & combos[split])
            if shared:
                problems.append(f"{len(shared)} {split} combinations seen in training, e.g. "
                                f"{list(shared[0])}")
    if problems:
        raise SimBridgeInputError(
            "the superposition splits break the disjointness rule "
            f"{rule!r}: " + "; ".join(problems),
            path=", ".join(str(p) for p in split_files.values()),
            fix="rebuild the splits (snakemake abundances_dataset); the split files were removed")
    return {"status": "passed", "rule": rule,
            "galaxies_per_split": {s: len(v) for s, v in names.items()},
            "combinations_per_split": {s: len(v) for s, v in combos.items()}}
