"""Projected stellar maps of one galaxy along one line of sight, and well-spread lines of sight.

:func:`project_galaxy_maps` turns star particles (physical, centred, wind removed) into the five
condition maps of :data:`MAP_CHANNELS` plus the ex-situ mass fraction map (the target), in one
pass over the particles. :func:`line_of_sight_rotations` gives the rotations of the views.

How the one pass works: a numba kernel (:func:`_accumulate`) loops once over the particles
(after a short loop over the first ones for the velocity shift), projects each with the
rotation, finds its pixel and adds its count and masses (by in-situ flag) and its mass-weighted
velocity, velocity squared, age and metallicity to that pixel's row of sums (one 64-byte row of
float64 per pixel, so one particle touches one row). A second small kernel (:func:`_finalise`)
turns the sums of the filled pixels into the float32 maps. Both are compiled on the first call
and cached on disk (``cache=True``); they release the GIL and run on one core (extraction jobs
run one per core). benchmarks/bench_maps.py compares this with
scipy.stats.binned_statistic_2d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
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

#: Velocities are shifted by the mass-weighted mean line-of-sight velocity of the first this
#: many particles before the moments are summed (see :func:`_accumulate`).
_SHIFT_PARTICLES = 32_768
#: Tolerance on R R^T = I for a rotation matrix (float32-stored rotations pass).
_ROTATION_ATOL = 1e-6

# Columns of the per-pixel sums: count, mass in situ / ex situ / unknown flag (column 2 - flag),
# sum m (v - v_shift), sum m (v - v_shift)^2, sum m age, sum m Z.
_N_SUMS = 8
# Status bits of the kernels: something for _raise_for_bad_input to name.
_BAD_VALUE = 1  # a non-finite input value or a negative mass
_NAN_COORDINATE = 2  # an image coordinate is NaN: the projection of finite values overflowed
_SUMS_OVERFLOW = 4  # a per-pixel sum is not finite


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
    if not (math.isfinite(half_width) and half_width > 0):
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
    pixel_size = 2.0 * half_width / npix
    if not (0.0 < pixel_size**2 < math.inf and math.isfinite(npix / pixel_size)):
        raise ValueError(f"half_width_kpc={half_width!r} with npix={npix} gives no usable pixel")

    # Image coordinates in pixel units with the field's lower edge at 1: the kernel keeps
    # 1 <= coordinate < npix + 1 and truncates, so coordinates just below the edge (which would
    # truncate towards zero into pixel 0 with the edge at 0) stay out.
    inv_pixel = npix / (2.0 * half_width)
    axes = rot * np.array([[inv_pixel], [inv_pixel], [1.0]])
    offset = half_width * inv_pixel + 1.0
    sums = np.zeros((npix * npix, _N_SUMS))
    status, v_shift = _accumulate(pos, vel, mass, age, metal, flags, axes, offset, npix,
                                  int(_SHIFT_PARTICLES), sums)
    if status:
        _raise_for_bad_input(status, pos, vel, mass, age, metal)
    conditions = np.zeros((len(MAP_CHANNELS), npix, npix), dtype=np.float32)
    exsitu_fraction = np.zeros((npix, npix), dtype=np.float32)
    particle_count = np.zeros((npix, npix), dtype=np.int32)
    galaxy_mask = np.zeros((npix, npix), dtype=np.bool_)
    status = _finalise(sums, v_shift, pixel_size**2, int(min_particles_per_pixel), conditions,
                       exsitu_fraction, particle_count, galaxy_mask)
    if status:
        _raise_for_bad_input(status, pos, vel, mass, age, metal)
    return GalaxyMaps(
        conditions=conditions,
        exsitu_fraction=exsitu_fraction,
        particle_count=particle_count,
        galaxy_mask=galaxy_mask,
        pixel_size_kpc=pixel_size,
    )


@numba.njit(cache=True, nogil=True)
def _accumulate(pos, vel, mass, age, metal, flags, axes, offset, npix, n_shift, sums):
    """Add every particle to its pixel's row of ``sums``; return (status bits, v_shift).

    ``axes`` rows: image x and y scaled to pixel units, line of sight (unit). A particle is in
    the field when 1 <= axes[k] . pos + offset < npix + 1 on both image axes; its pixel is
    iy * npix + ix, the image coordinates truncated less 1. Velocities are shifted by v_shift,
    the mass-weighted mean line-of-sight velocity of the first ``n_shift`` particles: any shift
    near the pixels' means keeps <v^2> - <v>^2 accurate when |<v>| >> sigma.
    Every particle (outside the field too) is checked for non-finite values and negative mass.
    """
    n = mass.shape[0]
    x0, x1, x2 = axes[0, 0], axes[0, 1], axes[0, 2]
    y0, y1, y2 = axes[1, 0], axes[1, 1], axes[1, 2]
    l0, l1, l2 = axes[2, 0], axes[2, 1], axes[2, 2]

    total = 0.0
    weighted = 0.0
    for i in range(min(n_shift, n)):
        m = np.float64(mass[i])
        total += m
        weighted += m * (vel[i, 0] * l0 + vel[i, 1] * l1 + vel[i, 2] * l2)
    v_shift = weighted / total if total > 0.0 else 0.0
    if not math.isfinite(v_shift):
        v_shift = 0.0

    status = 0
    nan_check = 0.0  # stays 0 while every value is finite (x * 0 is NaN for inf and NaN)
    upper = npix + 1.0
    for i in range(n):
        p0, p1, p2 = np.float64(pos[i, 0]), np.float64(pos[i, 1]), np.float64(pos[i, 2])
        w0, w1, w2 = np.float64(vel[i, 0]), np.float64(vel[i, 1]), np.float64(vel[i, 2])
        m = np.float64(mass[i])
        a = np.float64(age[i])
        z = np.float64(metal[i])
        nan_check += ((p0 * 0.0 + p1 * 0.0) + (p2 * 0.0 + w0 * 0.0)
                      + ((w1 * 0.0 + w2 * 0.0) + (m * 0.0 + (a * 0.0 + z * 0.0))))
        if m < 0.0:
            status |= _BAD_VALUE
        fx = p0 * x0 + p1 * x1 + p2 * x2 + offset
        fy = p0 * y0 + p1 * y1 + p2 * y2 + offset
        if 1.0 <= fx < upper and 1.0 <= fy < upper:
            pixel = (np.int64(fy) - 1) * npix + (np.int64(fx) - 1)
            dv = (w0 * l0 + w1 * l1 + w2 * l2) - v_shift
            weight = m * dv
            sums[pixel, 0] += 1.0
            sums[pixel, 2 - np.int64(flags[i])] += m
            sums[pixel, 4] += weight
            sums[pixel, 5] += weight * dv
            sums[pixel, 6] += m * a
            sums[pixel, 7] += m * z
        elif fx != fx or fy != fy:
            status |= _NAN_COORDINATE
    if nan_check != 0.0:
        status |= _BAD_VALUE
    return status, v_shift


@numba.njit(cache=True, nogil=True)
def _finalise(sums, v_shift, area, min_count, conditions, exsitu_fraction, particle_count,
              galaxy_mask):
    """Write the maps of the filled pixels into the zeroed outputs; return status bits."""
    npix = particle_count.shape[1]
    nan_check = 0.0
    for pixel in range(sums.shape[0]):
        count = sums[pixel, 0]
        if count == 0.0:
            continue
        iy, ix = pixel // npix, pixel % npix
        m_in, m_ex, m_unknown = sums[pixel, 1], sums[pixel, 2], sums[pixel, 3]
        m_dv, m_dv2, m_age, m_z = sums[pixel, 4], sums[pixel, 5], sums[pixel, 6], sums[pixel, 7]
        nan_check += ((m_in * 0.0 + m_ex * 0.0) + (m_unknown * 0.0 + m_dv * 0.0)
                      + ((m_dv2 * 0.0 + m_age * 0.0) + m_z * 0.0))
        particle_count[iy, ix] = np.int32(count)
        galaxy_mask[iy, ix] = count >= min_count
        mass = m_in + m_ex + m_unknown
        conditions[0, iy, ix] = mass / area
        if mass > 0.0:
            mean_dv = m_dv / mass
            conditions[1, iy, ix] = mean_dv + v_shift
            conditions[2, iy, ix] = math.sqrt(max(m_dv2 / mass - mean_dv * mean_dv, 0.0))
            conditions[3, iy, ix] = m_age / mass
            conditions[4, iy, ix] = m_z / mass
        known = m_in + m_ex
        if known > 0.0:
            exsitu_fraction[iy, ix] = m_ex / known
    return _SUMS_OVERFLOW if nan_check != 0.0 else 0


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


def _raise_for_bad_input(status: int, pos, vel, mass, age, metal) -> None:
    """Raise the ValueError that names what the kernels' status bits found."""
    for name, values in (("pos_kpc", pos), ("vel_kms", vel)):
        if not np.isfinite(values).all():
            _raise_first_nonfinite(name, values)
    if status & _NAN_COORDINATE:
        raise ValueError("pos_kpc holds values too large to project (overflow)")
    negative = mass[mass < 0]
    if negative.size:
        raise ValueError(
            f"mass_msun must be non-negative, got a minimum of {float(negative.min()):g}"
        )
    for name, values in (("mass_msun", mass), ("age_gyr", age), ("metallicity", metal)):
        if not np.isfinite(values).all():
            _raise_first_nonfinite(name, values)
    raise ValueError("map sums overflow: masses, velocities, ages or metallicities too large")


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
    if not np.abs(rot @ rot.T - np.eye(3)).max() <= _ROTATION_ATOL:  # np.allclose, 4x faster
        raise ValueError("rotation must be orthonormal (rows: image x, image y, line of sight)")
    if np.linalg.det(rot) < 0:
        raise ValueError("rotation must be proper (det +1), got a reflection (det -1)")
    return pos, vel, *per_particle, flags, rot


def _float_array(name: str, values: ArrayLike) -> NDArray:
    """The values as a float array: native float32/float64 pass without copy; integers, other
    floats (float16, longdouble) and non-native byte order are converted to float64."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        if array.dtype.isnative and array.dtype.itemsize in (4, 8):
            return array
        return array.astype(np.float64)
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    raise ValueError(f"{name} must be a float array, got dtype {array.dtype}")
