"""Projected stellar maps of one galaxy along one line of sight, and well-spread lines of sight.

:func:`project_galaxy_maps` turns star particles (physical, centred, wind removed) into the five
condition maps of :data:`MAP_CHANNELS` plus the ex-situ mass fraction map (the target), in one
pass over the particles. :func:`line_of_sight_rotations` gives the rotations of the views.

How the one pass works: the flat pixel index of every particle is computed once, and every sum
a map needs is accumulated with ``np.add.at`` into small per-pixel arrays (count and mass per
pixel and in-situ flag; mass-weighted velocity, velocity squared, age and metallicity per
pixel). Particles are processed in chunks small enough for the temporaries to stay in cache.
benchmarks/bench_maps.py compares this with scipy.stats.binned_statistic_2d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

#: The condition maps, in the order of the first axis of :attr:`GalaxyMaps.conditions`.
MAP_CHANNELS: tuple[str, ...] = (
    "stellar_mass_surface_density",
    "los_velocity",
    "los_velocity_dispersion",
    "stellar_age",
    "metallicity",
)
#: Unit of every map, by channel name (plus the target and the particle count).
MAP_UNITS: dict[str, str] = {
    "stellar_mass_surface_density": "Msun kpc^-2",
    "los_velocity": "km s^-1",
    "los_velocity_dispersion": "km s^-1",
    "stellar_age": "Gyr",
    "metallicity": "mass fraction (Z = M_Z/M, not solar-normalised)",
    "exsitu_fraction": "mass fraction of ex-situ stars",
    "particle_count": "count",
}

#: Particles per chunk: a chunk's temporaries (~2 MB) stay in cache; 16k-64k timed alike.
_CHUNK_PARTICLES = 32_768
#: Tolerance on R R^T = I for a rotation matrix (float32-stored rotations pass).
_ROTATION_ATOL = 1e-6


@dataclass(frozen=True)
class GalaxyMaps:
    """Maps of one galaxy seen along one line of sight; array index [iy, ix] (row = image y)."""

    conditions: np.ndarray  # (5, npix, npix) float32, channels in MAP_CHANNELS order
    exsitu_fraction: np.ndarray  # (npix, npix) float32, mass fraction of ex-situ stars
    particle_count: np.ndarray  # (npix, npix) int32
    galaxy_mask: np.ndarray  # (npix, npix) bool, particle_count >= min_particles_per_pixel
    pixel_size_kpc: float


def project_galaxy_maps(
    pos_kpc: ArrayLike,
    vel_kms: ArrayLike,
    mass_msun: ArrayLike,
    age_gyr: ArrayLike,
    metallicity: ArrayLike,
    insitu: ArrayLike,
    rotation: ArrayLike,
    npix: int,
    half_width_kpc: float,
    min_particles_per_pixel: int = 1,
) -> GalaxyMaps:
    """Project star particles onto an npix x npix grid seen along ``rotation[2]``.

    Inputs: positions (N, 3) physical kpc relative to the galaxy centre; peculiar velocities
    (N, 3) km/s with the systemic velocity removed; masses, ages (Gyr), metallicities (mass
    fraction) (N,); ``insitu`` (N,) StellarAssembly flag (1 in situ, 0 ex situ, -1 unknown);
    ``rotation`` (3, 3) with rows image x, image y, line of sight (orthonormal, det +1).

    Pixels are half-open bins [lo, hi) with edges linspace(-half_width, half_width, npix + 1)
    on both image axes; particles outside are dropped. Positive line-of-sight velocity means
    receding (the observer looks along +rotation[2]). Per pixel: surface density = sum(m) /
    pixel area; velocity, age and metallicity are mass-weighted means; the dispersion is the
    mass-weighted standard deviation of v_los; the ex-situ fraction is the ex-situ share of the
    mass with a known flag (flag -1 particles do not enter it). Empty pixels are 0 everywhere.
    A coordinate within floating-point rounding (~1e-15 relative) of a pixel edge may land in
    either neighbouring pixel.
    """
    pos, vel, mass, age, metal, flags, rot = _validated_particles(
        pos_kpc, vel_kms, mass_msun, age_gyr, metallicity, insitu, rotation
    )
    if isinstance(npix, bool) or not isinstance(npix, int | np.integer) or npix < 1:
        raise ValueError(f"npix must be a positive integer, got {npix!r}")
    half_width = float(half_width_kpc)
    if not (np.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width_kpc must be positive and finite, got {half_width_kpc!r}")
    if (
        isinstance(min_particles_per_pixel, bool)
        or not isinstance(min_particles_per_pixel, int | np.integer)
        or min_particles_per_pixel < 1
    ):
        raise ValueError(
            f"min_particles_per_pixel must be a positive integer, got {min_particles_per_pixel!r}"
        )
    npix = int(npix)
    n_particles = mass.shape[0]
    pixel_size = 2.0 * half_width / npix
    if not (0.0 < pixel_size**2 < np.inf and np.isfinite(npix / pixel_size)):
        raise ValueError(f"half_width_kpc={half_width!r} with npix={npix} gives no usable pixel")

    # A one-pixel guard ring collects the particles outside the field, so that no particle is
    # masked out; clipping image coordinates into the ring keeps every index in range.
    side = npix + 2
    n_bins = side * side
    inv_pixel = npix / (2.0 * half_width)
    offset = half_width * inv_pixel + 1.0  # pixel coordinate of the field's lower edge is 1
    x_axis = np.ascontiguousarray(rot[0] * inv_pixel)
    y_axis = np.ascontiguousarray(rot[1] * inv_pixel)
    los_axis = np.ascontiguousarray(rot[2])

    # Count and mass per (pixel, flag) at index 3 * pixel + 1 - flag: in situ, ex situ, unknown.
    count_by_flag = np.zeros(3 * n_bins, dtype=np.int64)
    mass_by_flag = np.zeros(3 * n_bins)
    # Per pixel: sum m (v - v_shift), sum m (v - v_shift)^2, sum m age, sum m Z.
    moments = np.zeros((4, n_bins))
    v_shift = 0.0
    min_mass = np.inf
    for start in range(0, n_particles, _CHUNK_PARTICLES):
        stop = min(start + _CHUNK_PARTICLES, n_particles)
        p, v = pos[start:stop], vel[start:stop]
        m = np.asarray(mass[start:stop], dtype=np.float64)
        if not np.isfinite(p).all():
            _raise_first_nonfinite("pos_kpc", pos)
        if not np.isfinite(v).all():
            _raise_first_nonfinite("vel_kms", vel)
        min_mass = min(min_mass, float(m.min()))

        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            pix_x = p @ x_axis
            pix_x += offset
            np.clip(pix_x, 0.0, side - 1.0, out=pix_x)
            pix_y = p @ y_axis
            pix_y += offset
            np.clip(pix_y, 0.0, side - 1.0, out=pix_y)
            pixel = pix_y.astype(np.intp)
            pixel *= side
            pixel += pix_x.astype(np.intp)
        pixel_flag = pixel * 3
        pixel_flag += 1 - flags[start:stop]
        # ufunc.at has a fast path since NumPy 1.25; on cache-sized chunks it beat bincount
        # (which allocates a fresh output per call) and a sparse matrix product when measured.
        try:
            np.add.at(count_by_flag, pixel_flag, 1)
        except IndexError:  # only NaN image coordinates, from overflowing products, get here
            raise ValueError("pos_kpc holds values too large to project (overflow)") from None
        np.add.at(mass_by_flag, pixel_flag, m)

        dv = v @ los_axis
        if start == 0:
            # Shifting by the first chunk's mean velocity keeps <v^2> - <v>^2 accurate when
            # |<v>| >> sigma; any shift near the pixels' means serves, so one chunk suffices.
            total = m.sum()
            v_shift = float(np.dot(m, dv) / total) if total > 0 else 0.0
            v_shift = v_shift if np.isfinite(v_shift) else 0.0
        dv -= v_shift
        weight = m * dv
        np.add.at(moments[0], pixel, weight)
        weight *= dv
        np.add.at(moments[1], pixel, weight)
        np.multiply(m, age[start:stop], out=weight)
        np.add.at(moments[2], pixel, weight)
        np.multiply(m, metal[start:stop], out=weight)
        np.add.at(moments[3], pixel, weight)

    if min_mass < 0:
        raise ValueError(f"mass_msun must be non-negative, got a minimum of {min_mass:g}")
    if not (np.isfinite(moments).all() and np.isfinite(mass_by_flag).all()):
        for name, values in (("mass_msun", mass), ("age_gyr", age), ("metallicity", metal)):
            if not np.isfinite(values).all():
                _raise_first_nonfinite(name, values)
        raise ValueError("map sums overflow: masses, velocities, ages or metallicities too large")

    def field(per_bin: NDArray) -> NDArray:
        """The (npix, npix, ...) field of a per-bin array (bins first), without the guard ring."""
        return per_bin.reshape(side, side, *per_bin.shape[1:])[1:-1, 1:-1]

    mass_in_situ, mass_ex_situ, mass_unknown = np.moveaxis(
        field(mass_by_flag.reshape(n_bins, 3)), -1, 0
    )
    particle_count = field(count_by_flag.reshape(n_bins, 3)).sum(axis=-1)
    mass_sum = mass_in_situ + mass_ex_situ + mass_unknown
    sum_m_dv, sum_m_dv2, sum_m_age, sum_m_z = (field(row) for row in moments)
    mean_dv = _safe_ratio(sum_m_dv, mass_sum)
    conditions = np.empty((len(MAP_CHANNELS), npix, npix), dtype=np.float32)
    conditions[0] = mass_sum / pixel_size**2
    conditions[1] = np.where(mass_sum > 0, mean_dv + v_shift, 0.0)
    conditions[2] = np.sqrt(np.maximum(_safe_ratio(sum_m_dv2, mass_sum) - mean_dv**2, 0.0))
    conditions[3] = _safe_ratio(sum_m_age, mass_sum)
    conditions[4] = _safe_ratio(sum_m_z, mass_sum)
    exsitu_fraction = _safe_ratio(mass_ex_situ, mass_in_situ + mass_ex_situ)

    return GalaxyMaps(
        conditions=conditions,
        exsitu_fraction=exsitu_fraction.astype(np.float32),
        particle_count=particle_count.astype(np.int32),
        galaxy_mask=particle_count >= min_particles_per_pixel,
        pixel_size_kpc=pixel_size,
    )


def line_of_sight_rotations(n_views: int, rng: np.random.Generator) -> NDArray:
    """Rotations (n_views, 3, 3), rows image x, image y, line of sight, for well-spread views.

    The lines of sight are a Fibonacci (golden-spiral) set on a hemisphere, turned as a whole by
    a uniformly random rotation; each view gets a uniformly random roll about its line of sight.
    A hemisphere, because opposite lines of sight give mirror images with the velocity sign
    flipped: no new information for the model.
    One view is one uniformly random direction. Deterministic given the state of ``rng``.
    """
    if isinstance(n_views, bool) or not isinstance(n_views, int | np.integer) or n_views < 1:
        raise ValueError(f"n_views must be a positive integer, got {n_views!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n_views = int(n_views)
    k = np.arange(n_views) + 0.5
    cos_theta = 1.0 - k / n_views  # uniform in (0, 1): equal-area spacing on a hemisphere
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k  # golden angle steps
    spiral = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)
    # Passed by position: works as the Generator in SciPy < 1.15 (random_state) and >= 1.15 (rng).
    los = Rotation.random(None, rng).apply(spiral).reshape(n_views, 3)
    los /= np.linalg.norm(los, axis=1, keepdims=True)

    # Any unit vector perpendicular to the line of sight, then a random roll about it.
    helper = np.zeros_like(los)
    helper[np.arange(n_views), np.argmin(np.abs(los), axis=1)] = 1.0
    x0 = np.cross(helper, los)
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    y0 = np.cross(los, x0)  # x0 x y0 = los: a right-handed frame, det +1
    roll = rng.uniform(0.0, 2.0 * np.pi, size=n_views)[:, None]
    x_axis = np.cos(roll) * x0 + np.sin(roll) * y0
    y_axis = np.cos(roll) * y0 - np.sin(roll) * x0
    return np.stack([x_axis, y_axis, los], axis=1)


def _safe_ratio(numerator: NDArray, denominator: NDArray) -> NDArray:
    """numerator / denominator where denominator > 0, else 0."""
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape))
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _raise_first_nonfinite(name: str, values: NDArray) -> None:
    """Raise a ValueError naming the array and the first particle with a NaN or inf."""
    bad = ~np.isfinite(values)
    first = int(np.flatnonzero(bad.reshape(values.shape[0], -1).any(axis=1))[0])
    raise ValueError(
        f"{name} must be finite: {int(bad.sum())} non-finite value(s), first at particle {first}"
    )


def _validated_particles(
    pos_kpc: ArrayLike,
    vel_kms: ArrayLike,
    mass_msun: ArrayLike,
    age_gyr: ArrayLike,
    metallicity: ArrayLike,
    insitu: ArrayLike,
    rotation: ArrayLike,
) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Arrays with checked shapes and dtypes (float arrays are not copied), and the rotation."""
    pos = _float_array("pos_kpc", pos_kpc)
    vel = _float_array("vel_kms", vel_kms)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos_kpc must have shape (N, 3), got {pos.shape}")
    n = pos.shape[0]
    if vel.shape != (n, 3):
        raise ValueError(f"vel_kms must have shape ({n}, 3) like pos_kpc, got {vel.shape}")
    per_particle = [
        _float_array(name, values)
        for name, values in (("mass_msun", mass_msun), ("age_gyr", age_gyr),
                             ("metallicity", metallicity))
    ]
    flags = np.asarray(insitu)
    for name, values in zip(("mass_msun", "age_gyr", "metallicity", "insitu"),
                            [*per_particle, flags], strict=True):
        if values.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) like pos_kpc, got {values.shape}")
    if flags.dtype.kind not in "biu":
        raise ValueError(f"insitu must be integer flags (1, 0, -1), got dtype {flags.dtype}")
    if n and (int(flags.min()) < -1 or int(flags.max()) > 1):
        raise ValueError(
            f"insitu flags must be 1 (in situ), 0 (ex situ) or -1 (unknown), "
            f"got values in [{int(flags.min())}, {int(flags.max())}]"
        )
    flags = flags.astype(np.int8, copy=False)  # 1 - flag below must not wrap (unsigned input)

    rot = np.asarray(rotation, dtype=np.float64)
    if rot.shape != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3), got {rot.shape}")
    if not np.isfinite(rot).all():
        raise ValueError("rotation must be finite")
    if not np.allclose(rot @ rot.T, np.eye(3), rtol=0.0, atol=_ROTATION_ATOL):
        raise ValueError("rotation must be orthonormal (rows: image x, image y, line of sight)")
    if np.linalg.det(rot) < 0:
        raise ValueError("rotation must be proper (det +1), got a reflection (det -1)")
    return pos, vel, *per_particle, flags, rot


def _float_array(name: str, values: ArrayLike) -> NDArray:
    """The values as a float array: float32/float64 pass without copy, integers are converted."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    raise ValueError(f"{name} must be a float array, got dtype {array.dtype}")
