"""Physical conversions of simulation code units: each conversion is defined once, here.

IllustrisTNG snapshot conventions (Nelson et al. 2019, data release paper):
  lengths ckpc/h (comoving), masses 1e10 Msun/h, particle velocities km/s * sqrt(a)
  (the peculiar velocity is v * sqrt(a)), SubhaloVel already physical km/s,
  GFM_StellarFormationTime a scale factor (<= 0 marks wind-phase cells, not stars).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Code mass unit of TNG/CAMELS snapshots in Msun/h.
TNG_MASS_UNIT_MSUN_PER_H = 1.0e10
#: 1 km/s * 1 Gyr in kpc (for converting H0 in km/s/Mpc to 1/Gyr).
_KM_S_GYR_IN_KPC = 1.0227121650537077
#: Hubble time 1/H0 for h = 1 in Gyr: 1 / (100 km/s/Mpc).
HUBBLE_TIME_GYR_H1 = 1000.0 / (100.0 * _KM_S_GYR_IN_KPC)


def comoving_ckpc_h_to_physical_kpc(
    x: ArrayLike, scale_factor: float, hubble_param: float
) -> NDArray:
    """ckpc/h (comoving) to physical kpc: x * a / h."""
    return np.asarray(x, dtype=np.float64) * (scale_factor / hubble_param)


def code_mass_to_msun(m: ArrayLike, hubble_param: float) -> NDArray:
    """TNG code mass (1e10 Msun/h) to Msun."""
    return np.asarray(m, dtype=np.float64) * (TNG_MASS_UNIT_MSUN_PER_H / hubble_param)


def msun_to_code_mass(m_msun: ArrayLike, hubble_param: float) -> NDArray:
    """Msun to TNG code mass (1e10 Msun/h); the inverse of :func:`code_mass_to_msun`."""
    return np.asarray(m_msun, dtype=np.float64) * (hubble_param / TNG_MASS_UNIT_MSUN_PER_H)


def snapshot_velocity_to_peculiar_kms(v: ArrayLike, scale_factor: float) -> NDArray:
    """Snapshot particle velocity (km/s * sqrt(a) in the file) to peculiar km/s: v * sqrt(a)."""
    return np.asarray(v, dtype=np.float64) * np.sqrt(scale_factor)


def is_star_not_wind(formation_scale_factor: ArrayLike) -> NDArray:
    """True for real star particles; PartType4 elements with formation time <= 0 are wind cells."""
    return np.asarray(formation_scale_factor) > 0


def cosmic_time_gyr(
    scale_factor: ArrayLike, hubble_param: float, omega_matter: float, omega_lambda: float
) -> NDArray:
    """Age of the universe in Gyr at scale factor a, for a flat matter + Lambda cosmology.

    Analytic: t(a) = 2 / (3 H0 sqrt(OL)) * asinh(sqrt(OL/Om) * a^1.5). Radiation is
    neglected, as in the Gadget/AREPO runs (TNG, CAMELS) whose headers supply Om and OL.
    Written out rather than calling astropy because it runs on ~1e8 particles per job;
    tests check it against astropy's FlatLambdaCDM.
    """
    if not np.isclose(omega_matter + omega_lambda, 1.0, atol=1e-4):
        raise ValueError(
            f"cosmic_time_gyr assumes a flat universe, got Omega0={omega_matter} + "
            f"OmegaLambda={omega_lambda} != 1"
        )
    a = np.asarray(scale_factor, dtype=np.float64)
    hubble_time = HUBBLE_TIME_GYR_H1 / hubble_param
    ratio = np.sqrt(omega_lambda / omega_matter)
    return (2.0 / (3.0 * np.sqrt(omega_lambda))) * hubble_time * np.arcsinh(ratio * a**1.5)


def stellar_age_gyr(
    formation_scale_factor: ArrayLike,
    snapshot_scale_factor: float,
    hubble_param: float,
    omega_matter: float,
    omega_lambda: float,
) -> NDArray:
    """Stellar age in Gyr at the snapshot from GFM_StellarFormationTime (a scale factor)."""
    t_now = cosmic_time_gyr(snapshot_scale_factor, hubble_param, omega_matter, omega_lambda)
    t_form = cosmic_time_gyr(formation_scale_factor, hubble_param, omega_matter, omega_lambda)
    return t_now - t_form


def periodic_offset(x: ArrayLike, centre: ArrayLike, box_size: float) -> NDArray:
    """Separation x - centre wrapped into [-box/2, box/2) (minimum image), same units as input."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    return (d + 0.5 * box_size) % box_size - 0.5 * box_size


def scale_factor_at_cosmic_time(
    time_gyr: ArrayLike, hubble_param: float, omega_matter: float, omega_lambda: float
) -> NDArray:
    """Scale factor at cosmic time t in Gyr: the inverse of :func:`cosmic_time_gyr` (flat)."""
    t = np.asarray(time_gyr, dtype=np.float64)
    hubble_time = HUBBLE_TIME_GYR_H1 / hubble_param
    arg = 1.5 * np.sqrt(omega_lambda) * t / hubble_time
    return (np.sqrt(omega_matter / omega_lambda) * np.sinh(arg)) ** (2.0 / 3.0)
