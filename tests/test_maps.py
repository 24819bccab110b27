"""Projected maps against a brute-force particle loop, scipy's binned_statistic_2d and geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.stats import binned_statistic_2d

from simbridge.extract import maps
from simbridge.extract.maps import (
    MAP_CHANNELS,
    MAP_UNITS,
    GalaxyMaps,
    line_of_sight_rotations,
    project_galaxy_maps,
)

SIGMA, VEL, AGE, Z = (MAP_CHANNELS.index(c) for c in (
    "los_velocity_dispersion", "los_velocity", "stellar_age", "metallicity"))
SURFACE_DENSITY = MAP_CHANNELS.index("stellar_mass_surface_density")


def random_galaxy(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Star particles of a blob galaxy with unequal masses and all three in-situ flags."""
    return {
        "pos_kpc": rng.normal(0.0, 4.0, (n, 3)),
        "vel_kms": rng.normal(0.0, 120.0, (n, 3)) + np.array([30.0, -20.0, 60.0]),
        "mass_msun": rng.uniform(1e5, 1e6, n),
        "age_gyr": rng.uniform(0.1, 13.0, n),
        "metallicity": rng.uniform(1e-4, 0.04, n),
        "insitu": rng.choice(np.array([-1, 0, 1], dtype=np.int8), n, p=[0.15, 0.35, 0.5]),
    }


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return Rotation.random(None, rng).as_matrix()


def brute_force_maps(gal: dict, rotation: np.ndarray, npix: int, half_width: float) -> dict:
    """One particle at a time, with pixel lookup by searchsorted and two-pass moments."""
    edges = np.linspace(-half_width, half_width, npix + 1)
    members: dict[tuple[int, int], list[int]] = {}
    for i in range(len(gal["mass_msun"])):
        x = float(rotation[0] @ gal["pos_kpc"][i])
        y = float(rotation[1] @ gal["pos_kpc"][i])
        ix = int(np.searchsorted(edges, x, side="right")) - 1
        iy = int(np.searchsorted(edges, y, side="right")) - 1
        if 0 <= ix < npix and 0 <= iy < npix:
            members.setdefault((iy, ix), []).append(i)
    out = {k: np.zeros((npix, npix)) for k in (*MAP_CHANNELS, "exsitu_fraction", "count")}
    area = (edges[1] - edges[0]) ** 2
    for (iy, ix), idx in members.items():
        m = gal["mass_msun"][idx]
        v = np.array([rotation[2] @ gal["vel_kms"][i] for i in idx])
        mean_v = np.sum(m * v) / np.sum(m)
        flags = gal["insitu"][idx]
        out["count"][iy, ix] = len(idx)
        out["stellar_mass_surface_density"][iy, ix] = m.sum() / area
        out["los_velocity"][iy, ix] = mean_v
        out["los_velocity_dispersion"][iy, ix] = np.sqrt(np.sum(m * (v - mean_v) ** 2) / m.sum())
        out["stellar_age"][iy, ix] = np.sum(m * gal["age_gyr"][idx]) / m.sum()
        out["metallicity"][iy, ix] = np.sum(m * gal["metallicity"][idx]) / m.sum()
        known = m[flags >= 0].sum()
        out["exsitu_fraction"][iy, ix] = m[flags == 0].sum() / known if known > 0 else 0.0
    return out


def project(gal: dict, rotation: np.ndarray, npix: int, half_width: float, **kw) -> GalaxyMaps:
    return project_galaxy_maps(**gal, rotation=rotation, npix=npix, half_width_kpc=half_width, **kw)


def test_constants_describe_every_map():
    assert len(MAP_CHANNELS) == 5
    assert set(MAP_UNITS) == {*MAP_CHANNELS, "exsitu_fraction", "particle_count"}


@pytest.mark.parametrize("shift_particles", [None, 37, 1])
def test_every_channel_matches_brute_force_loop(monkeypatch, shift_particles):
    if shift_particles is not None:  # velocity shift from a few particles, not all 500
        monkeypatch.setattr(maps, "_SHIFT_PARTICLES", shift_particles)
    rng = np.random.default_rng(3)
    gal = random_galaxy(rng, 500)
    rotation = random_rotation(rng)
    npix, half_width = 8, 7.0  # some particles fall outside the field
    got = project(gal, rotation, npix, half_width)
    ref = brute_force_maps(gal, rotation, npix, half_width)

    assert got.conditions.shape == (5, npix, npix) and got.conditions.dtype == np.float32
    assert got.exsitu_fraction.dtype == np.float32 and got.particle_count.dtype == np.int32
    assert got.pixel_size_kpc == pytest.approx(2 * half_width / npix)
    assert 0 < ref["count"].sum() < 500
    np.testing.assert_array_equal(got.particle_count, ref["count"])
    for k, name in enumerate(MAP_CHANNELS):
        atol = 1e-3 if name == "los_velocity_dispersion" else 0.0  # single-particle pixels
        np.testing.assert_allclose(got.conditions[k], ref[name], rtol=2e-5, atol=atol, err_msg=name)
    np.testing.assert_allclose(got.exsitu_fraction, ref["exsitu_fraction"], rtol=2e-5, atol=1e-7)


def test_matches_binned_statistic_2d():
    rng = np.random.default_rng(4)
    gal = random_galaxy(rng, 20_000)
    gal["mass_msun"][:] = 3e5  # equal masses: the mass-weighted std is scipy's (ddof=0) std
    rotation = random_rotation(rng)
    npix, half_width = 16, 9.0
    got = project(gal, rotation, npix, half_width)

    x, y = gal["pos_kpc"] @ rotation[0], gal["pos_kpc"] @ rotation[1]
    v = gal["vel_kms"] @ rotation[2]
    edges = np.linspace(-half_width, half_width, npix + 1)
    m = gal["mass_msun"]

    def stat(values, statistic):  # (y, x) order so that the result is indexed [iy, ix]
        return binned_statistic_2d(y, x, values, statistic, bins=[edges, edges]).statistic

    mass_sum = stat(m, "sum")
    filled = mass_sum > 0
    area = (2 * half_width / npix) ** 2
    np.testing.assert_array_equal(got.particle_count, stat(m, "count"))
    np.testing.assert_allclose(got.conditions[SURFACE_DENSITY], mass_sum / area, rtol=1e-6)
    for k, values in ((VEL, v), (AGE, gal["age_gyr"]), (Z, gal["metallicity"])):
        expected = np.where(filled, stat(m * values, "sum") / np.where(filled, mass_sum, 1), 0)
        np.testing.assert_allclose(got.conditions[k], expected, rtol=1e-5, atol=1e-6)
    expected_std = np.nan_to_num(stat(v, "std"))
    np.testing.assert_allclose(got.conditions[SIGMA], expected_std, rtol=1e-5, atol=1e-3)


def test_mass_is_conserved_inside_the_field():
    rng = np.random.default_rng(5)
    gal = random_galaxy(rng, 50_000)
    rotation = random_rotation(rng)
    half_width = 6.0
    got = project(gal, rotation, 32, half_width)
    x, y = gal["pos_kpc"] @ rotation[0], gal["pos_kpc"] @ rotation[1]
    inside = (np.abs(x) < half_width) & (np.abs(y) < half_width)
    assert 0.3 < inside.mean() < 0.95
    total = got.conditions[SURFACE_DENSITY].sum(dtype=np.float64) * got.pixel_size_kpc**2
    assert total == pytest.approx(gal["mass_msun"][inside].sum(), rel=1e-6)
    assert got.particle_count.sum() == inside.sum()


def one_particle_galaxy(pos, vel=(0.0, 0.0, 0.0), mass=2.0, insitu=1) -> dict:
    return {
        "pos_kpc": np.array([pos], dtype=float), "vel_kms": np.array([vel], dtype=float),
        "mass_msun": np.array([mass]), "age_gyr": np.array([5.0]),
        "metallicity": np.array([0.02]), "insitu": np.array([insitu], dtype=np.int8),
    }


def test_identity_rotation_puts_particle_in_known_pixel():
    # npix 10, half width 5: 1 kpc pixels, edges at the integers -5..5.
    got = project(one_particle_galaxy((2.5, -3.5, 7.0), vel=(10.0, 20.0, 30.0)),
                  np.eye(3), 10, 5.0)
    iy, ix = 1, 7  # y in [-4, -3), x in [2, 3)
    assert got.particle_count[iy, ix] == 1 and got.particle_count.sum() == 1
    assert got.conditions[SURFACE_DENSITY, iy, ix] == pytest.approx(2.0)
    assert got.conditions[VEL, iy, ix] == pytest.approx(30.0)  # v_los = v_z
    assert got.conditions[SIGMA, iy, ix] == 0.0
    assert got.conditions[AGE, iy, ix] == pytest.approx(5.0)
    filled = np.zeros((10, 10), bool)
    filled[iy, ix] = True
    assert np.all(got.conditions[:, ~filled] == 0) and got.galaxy_mask.sum() == 1


@pytest.mark.parametrize(
    ("x", "pixel"), [(-5.0, 0), (2.0, 7), (-0.0, 5), (4.999, 9), (5.0, None), (-5.001, None)]
)
def test_pixels_are_half_open(x, pixel):
    got = project(one_particle_galaxy((x, 0.5, 0.0)), np.eye(3), 10, 5.0)
    if pixel is None:
        assert got.particle_count.sum() == 0
    else:
        assert got.particle_count[5, pixel] == 1


def test_quarter_turn_about_line_of_sight_rotates_the_map():
    rng = np.random.default_rng(6)
    gal = random_galaxy(rng, 5_000)
    rotation = random_rotation(rng)
    turned = np.stack([rotation[1], -rotation[0], rotation[2]])  # image x' = y, y' = -x
    base = project(gal, rotation, 16, 8.0)
    quarter = project(gal, turned, 16, 8.0)
    np.testing.assert_array_equal(quarter.particle_count, np.rot90(base.particle_count))
    np.testing.assert_allclose(quarter.conditions, np.rot90(base.conditions, axes=(1, 2)),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(quarter.exsitu_fraction, np.rot90(base.exsitu_fraction), rtol=1e-6)


def rotating_disk(rng: np.random.Generator, n: int, v_circ: float = 200.0) -> dict:
    """A thin disk in the xy plane rotating counter-clockwise about +z."""
    radius = rng.uniform(0.5, 8.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    pos = np.stack([radius * np.cos(phi), radius * np.sin(phi), rng.normal(0, 0.2, n)], axis=1)
    vel = np.stack([-v_circ * np.sin(phi), v_circ * np.cos(phi), np.zeros(n)], axis=1)
    vel += rng.normal(0, 20.0, (n, 3))
    return {"pos_kpc": pos, "vel_kms": vel, "mass_msun": rng.uniform(1, 2, n),
            "age_gyr": rng.uniform(1, 10, n), "metallicity": rng.uniform(0, 0.03, n),
            "insitu": np.ones(n, dtype=np.int8)}


def test_disk_face_on_has_no_mean_velocity_and_edge_on_shows_rotation():
    rng = np.random.default_rng(7)
    disk = rotating_disk(rng, 40_000)
    npix = 16
    face_on = project(disk, np.eye(3), npix, 8.0)
    vel = face_on.conditions[VEL][face_on.particle_count > 50]
    assert np.abs(vel).max() < 15.0  # noise of 20 km/s over > 50 particles
    # Image x = +x, image y = +z, line of sight x cross z = -y: right-handed.
    edge_on = project(disk, np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]), npix, 8.0)
    count, vel = edge_on.particle_count, edge_on.conditions[VEL]
    # At x > 0 the stars move towards +y, i.e. towards the observer looking along -y.
    right = vel[:, npix // 2 + 2:][count[:, npix // 2 + 2:] > 50]
    left = vel[:, : npix // 2 - 2][count[:, : npix // 2 - 2] > 50]
    assert right.size and left.size
    assert np.all(right < -50.0) and np.all(left > 50.0)


@pytest.mark.parametrize("shift_particles", [None, 1])
@pytest.mark.parametrize("offset_in_sigmas", [1e5, 1e7])
def test_dispersion_is_exact_with_large_systemic_offset(monkeypatch, offset_in_sigmas,
                                                        shift_particles):
    if shift_particles is not None:  # the velocity shift from one particle serves as well
        monkeypatch.setattr(maps, "_SHIFT_PARTICLES", shift_particles)
    rng = np.random.default_rng(8)
    n, sigma = 4_000, 1.5
    gal = random_galaxy(rng, n)
    gal["pos_kpc"] = rng.uniform(-1.0, 1.0, (n, 3))  # 2 x 2 pixels
    deviation = rng.normal(0.0, sigma, n)
    gal["vel_kms"] = np.zeros((n, 3))
    gal["vel_kms"][:, 2] = offset_in_sigmas * sigma + deviation
    got = project(gal, np.eye(3), 2, 1.0)
    ix = (gal["pos_kpc"][:, 0] >= 0).astype(int)
    iy = (gal["pos_kpc"][:, 1] >= 0).astype(int)
    m = gal["mass_msun"]
    for j in range(2):
        for i in range(2):
            sel = (iy == j) & (ix == i)
            d = deviation[sel] - np.average(deviation[sel], weights=m[sel])  # exact: no offset
            exact = np.sqrt(np.average(d**2, weights=m[sel]))
            assert got.conditions[SIGMA, j, i] == pytest.approx(exact, rel=1e-5)
            mean = offset_in_sigmas * sigma + np.average(deviation[sel], weights=m[sel])
            assert got.conditions[VEL, j, i] == pytest.approx(mean, rel=1e-6)


def test_exsitu_fraction_ignores_unknown_flags_and_mask_counts_particles():
    # Pixel (0, 0): ex situ 1, in situ 3, unknown 100 -> 1/4. Pixel (0, 1): unknown only -> 0.
    # Pixel (1, 1): one ex-situ particle -> 1.
    pos = [(-0.5, -0.5, 0)] * 3 + [(0.5, -0.5, 0)] * 2 + [(0.5, 0.5, 0)]
    gal = {
        "pos_kpc": np.array(pos, dtype=float), "vel_kms": np.zeros((6, 3)),
        "mass_msun": np.array([1.0, 3.0, 100.0, 5.0, 7.0, 2.0]),
        "age_gyr": np.ones(6), "metallicity": np.full(6, 0.01),
        "insitu": np.array([0, 1, -1, -1, -1, 0], dtype=np.int8),
    }
    got = project(gal, np.eye(3), 2, 1.0, min_particles_per_pixel=2)
    np.testing.assert_allclose(got.exsitu_fraction, [[0.25, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(got.particle_count, [[3, 2], [0, 1]])
    np.testing.assert_array_equal(got.galaxy_mask, [[True, True], [False, False]])
    np.testing.assert_allclose(got.conditions[SURFACE_DENSITY], [[104.0, 12.0], [0.0, 2.0]])


def test_empty_input_gives_empty_maps():
    empty = {k: v[:0] for k, v in one_particle_galaxy((0, 0, 0)).items()}
    got = project(empty, np.eye(3), 4, 1.0)
    assert not got.conditions.any() and not got.particle_count.any() and not got.galaxy_mask.any()


def test_maps_are_deterministic():
    rng = np.random.default_rng(17)
    gal = random_galaxy(rng, 20_000)
    rotation = random_rotation(rng)
    first, again = project(gal, rotation, 32, 8.0), project(gal, rotation, 32, 8.0)
    for name in ("conditions", "exsitu_fraction", "particle_count", "galaxy_mask"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name), err_msg=name)


def _variants(gal: dict) -> dict[str, dict]:
    """The same galaxy in other dtypes, memory layouts, byte orders and write flags."""
    as32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in gal.items()}
    wide = np.zeros((len(gal["mass_msun"]), 7))
    wide[:, 1:4] = gal["pos_kpc"]
    strided = {**gal, "pos_kpc": wide[:, 1:4], "vel_kms": np.asfortranarray(gal["vel_kms"]),
               "mass_msun": np.repeat(gal["mass_msun"], 2)[::2]}
    readonly = {k: v.copy() for k, v in gal.items()}
    for v in readonly.values():
        v.flags.writeable = False
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in gal.items()}
    flags = {**gal, "insitu": gal["insitu"].astype(np.int64)}
    return {"float32": as32, "strided": strided, "readonly": readonly,
            "big-endian": swapped, "int64 flags": flags}


def test_maps_do_not_depend_on_dtype_layout_or_byte_order():
    rng = np.random.default_rng(18)
    gal = random_galaxy(rng, 3_000)
    gal["insitu"][:] = rng.integers(0, 2, 3_000)  # also valid as uint8 / bool flags
    rotation = random_rotation(rng)
    for label, variant in _variants(gal).items():
        # float32 values are exact in float64: the maps must be identical to those of the copy
        reference = {k: v.astype(v.dtype.newbyteorder("=")) for k, v in variant.items()}
        reference = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
                     for k, v in reference.items()}
        want = project(reference, rotation, 16, 8.0)
        got = project(variant, rotation, 16, 8.0)
        np.testing.assert_array_equal(got.conditions, want.conditions, err_msg=label)
        np.testing.assert_array_equal(got.exsitu_fraction, want.exsitu_fraction, err_msg=label)
        np.testing.assert_array_equal(got.particle_count, want.particle_count, err_msg=label)
    base = project(gal, rotation, 16, 8.0)
    for flags in (gal["insitu"].astype(np.uint8), gal["insitu"].astype(bool)):
        other = project({**gal, "insitu": flags}, rotation, 16, 8.0)
        np.testing.assert_array_equal(other.exsitu_fraction, base.exsitu_fraction)
    integers = {**gal, "mass_msun": np.rint(gal["mass_msun"]).astype(np.int64),
                "age_gyr": gal["age_gyr"].astype(np.float16)}
    want = project({**integers, "mass_msun": integers["mass_msun"].astype(np.float64),
                    "age_gyr": integers["age_gyr"].astype(np.float64)}, rotation, 16, 8.0)
    np.testing.assert_array_equal(project(integers, rotation, 16, 8.0).conditions,
                                  want.conditions)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g["vel_kms"].__setitem__((0, 1), np.nan), "vel_kms must be finite"),
        (lambda g: g["mass_msun"].__setitem__(0, -1.0), "mass_msun must be non-negative"),
        (lambda g: g["mass_msun"].__setitem__(0, np.inf), "mass_msun must be finite"),
        (lambda g: g["metallicity"].__setitem__(0, -np.inf), "metallicity must be finite"),
    ],
)
def test_bad_values_of_particles_outside_the_field_raise(change, message):
    gal = random_galaxy(np.random.default_rng(19), 50)
    gal["pos_kpc"][0] = (100.0, 0.0, 0.0)  # far outside the field
    change(gal)
    with pytest.raises(ValueError, match=message):
        project(gal, np.eye(3), 8, 5.0)


def test_overflowing_projection_raises_and_huge_positions_are_dropped():
    gal = random_galaxy(np.random.default_rng(20), 50)
    turned = np.array([[0.6, 0.8, 0.0], [-0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    base = project(gal, turned, 100, 1.0)
    huge = {k: v.copy() for k, v in gal.items()}
    huge["pos_kpc"][0] = (1e308, 0.0, 0.0)  # image coordinates +inf, -inf: outside, dropped
    dropped = {k: v[1:] for k, v in gal.items()}
    got = project(huge, turned, 100, 1.0)
    np.testing.assert_array_equal(got.particle_count, project(dropped, turned, 100, 1.0)
                                  .particle_count)
    assert got.particle_count.sum() <= base.particle_count.sum()
    huge["pos_kpc"][0] = (1e308, 1e308, 0.0)  # image y = -inf + inf: NaN
    with pytest.raises(ValueError, match="too large to project"):
        project(huge, turned, 100, 1.0)


def test_overflowing_sums_raise():
    gal = one_particle_galaxy((0.1, 0.1, 0.0))
    gal = {k: np.concatenate([v, v]) for k, v in gal.items()}
    gal["mass_msun"][:] = 1e300
    gal["vel_kms"][:, 2] = (-1e10, 1e10)  # m (v - <v>)^2 = 1e320
    with pytest.raises(ValueError, match="map sums overflow"):
        project(gal, np.eye(3), 4, 1.0)


def pairwise_min_angle(directions: np.ndarray) -> float:
    """Smallest angle between two lines of sight, d and -d counting as the same axis.

    Opposite views are mirror images with flipped velocities, so they count as one.
    """
    cos = np.clip(np.abs(directions @ directions.T), 0.0, 1.0)
    np.fill_diagonal(cos, 0.0)
    return float(np.arccos(cos.max()))


@pytest.mark.parametrize("n_views", [1, 2, 12, 50])
def test_line_of_sight_rotations_are_proper_rotations(n_views):
    rotations = line_of_sight_rotations(n_views, np.random.default_rng(9))
    assert rotations.shape == (n_views, 3, 3)
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (n_views, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)


def test_line_of_sight_rotations_are_reproducible():
    first = line_of_sight_rotations(12, np.random.default_rng(10))
    again = line_of_sight_rotations(12, np.random.default_rng(10))
    other = line_of_sight_rotations(12, np.random.default_rng(11))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_lines_of_sight_are_well_spread():
    rng = np.random.default_rng(12)
    random_min_angles = []
    for _ in range(500):
        d = rng.normal(size=(12, 3))
        random_min_angles.append(pairwise_min_angle(d / np.linalg.norm(d, axis=1, keepdims=True)))
    assert np.median(random_min_angles) < 0.2  # what 12 random directions typically give
    for seed in range(5):
        los = line_of_sight_rotations(12, np.random.default_rng(seed))[:, 2]
        assert pairwise_min_angle(los) > 0.4


@pytest.mark.parametrize("n_views", [1, 12])
def test_lines_of_sight_are_isotropic_over_draws(n_views):
    rng = np.random.default_rng(13)
    los = np.concatenate([line_of_sight_rotations(n_views, rng)[:, 2] for _ in range(3000)])
    # Isotropy: mean 0, second moment I/3; the roll makes image x uniform about the los too.
    assert np.abs(los.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose(los.T @ los / len(los), np.eye(3) / 3, atol=0.03)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g["pos_kpc"].__setitem__((3, 1), np.nan), "pos_kpc must be finite"),
        (lambda g: g["vel_kms"].__setitem__((7, 2), np.inf), "vel_kms must be finite"),
        (lambda g: g["mass_msun"].__setitem__(5, np.nan), "mass_msun must be finite"),
        (lambda g: g["age_gyr"].__setitem__(5, np.nan), "age_gyr must be finite"),
        (lambda g: g["mass_msun"].__setitem__(5, -1.0), "mass_msun must be non-negative"),
        (lambda g: g.update(vel_kms=g["vel_kms"][:-1]), r"vel_kms must have shape \(50, 3\)"),
        (lambda g: g.update(pos_kpc=g["pos_kpc"][:, :2]), r"pos_kpc must have shape \(N, 3\)"),
        (lambda g: g.update(age_gyr=g["age_gyr"][:-1]), r"age_gyr must have shape \(50,\)"),
        (lambda g: g["insitu"].__setitem__(0, 2), "insitu flags must be"),
    ],
)
def test_bad_particles_raise_value_error(change, message):
    gal = random_galaxy(np.random.default_rng(14), 50)
    change(gal)
    with pytest.raises(ValueError, match=message):
        project(gal, np.eye(3), 8, 5.0)


@pytest.mark.parametrize(
    ("rotation", "message"),
    [
        (2 * np.eye(3), "orthonormal"),
        (np.array([[1.0, 0.1, 0], [0, 1, 0], [0, 0, 1]]), "orthonormal"),
        (np.diag([1.0, 1.0, -1.0]), "det"),
        (np.eye(2), "shape"),
    ],
)
def test_bad_rotation_raises_value_error(rotation, message):
    gal = random_galaxy(np.random.default_rng(15), 50)
    with pytest.raises(ValueError, match=message):
        project(gal, rotation, 8, 5.0)


def test_bad_grid_and_views_raise_value_error():
    gal = random_galaxy(np.random.default_rng(16), 10)
    with pytest.raises(ValueError, match="npix"):
        project(gal, np.eye(3), 0, 5.0)
    with pytest.raises(ValueError, match="half_width_kpc"):
        project(gal, np.eye(3), 8, -1.0)
    with pytest.raises(ValueError, match="min_particles_per_pixel"):
        project(gal, np.eye(3), 8, 5.0, min_particles_per_pixel=0)
    with pytest.raises(ValueError, match="n_views"):
        line_of_sight_rotations(0, np.random.default_rng(0))
