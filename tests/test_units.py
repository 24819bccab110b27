"""Physics conventions of simbridge.units against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM, z_at_value

from simbridge import units

TNG = {"hubble_param": 0.6774, "omega_matter": 0.3089, "omega_lambda": 0.6911}


def test_cosmic_time_matches_astropy():
    cosmo = FlatLambdaCDM(H0=67.74, Om0=0.3089, Tcmb0=0)
    a = np.array([0.05, 0.1, 0.25, 0.5, 0.909, 1.0])
    ours = units.cosmic_time_gyr(a, **TNG)
    ref = cosmo.age(1 / a - 1).to_value(u.Gyr)
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


def test_cosmic_time_uses_the_given_cosmology():
    other = units.cosmic_time_gyr(1.0, 0.7, 0.3, 0.7)
    ref = FlatLambdaCDM(H0=70, Om0=0.3, Tcmb0=0).age(0).to_value(u.Gyr)
    assert other == pytest.approx(ref, rel=1e-9)
    assert abs(other - units.cosmic_time_gyr(1.0, **TNG)) > 0.1


def test_cosmic_time_rejects_non_flat():
    with pytest.raises(ValueError, match="flat"):
        units.cosmic_time_gyr(1.0, 0.7, 0.3, 0.5)


def test_stellar_age_of_a_star_born_at_z1_seen_at_z0():
    cosmo = FlatLambdaCDM(H0=67.74, Om0=0.3089, Tcmb0=0)
    age = units.stellar_age_gyr(0.5, 1.0, **TNG)
    assert age == pytest.approx((cosmo.age(0) - cosmo.age(1)).to_value(u.Gyr), rel=1e-9)
    # a star formed 2 Gyr before z=0 has age 2 Gyr
    z_form = z_at_value(cosmo.age, cosmo.age(0) - 2 * u.Gyr).value
    assert units.stellar_age_gyr(1 / (1 + z_form), 1.0, **TNG) == pytest.approx(2.0, rel=1e-5)


def test_comoving_to_physical_applies_a_over_h():
    # 1000 ckpc/h at a = 0.5 with h = 0.7 is 1000 * 0.5 / 0.7 physical kpc
    assert units.comoving_ckpc_h_to_physical_kpc(1000.0, 0.5, 0.7) == pytest.approx(714.2857142857)


def test_code_mass_has_1e10_over_h():
    assert units.code_mass_to_msun(1.0, 0.6774) == pytest.approx(1e10 / 0.6774)
    m = np.array([1e-4, 2.5])
    np.testing.assert_allclose(units.msun_to_code_mass(units.code_mass_to_msun(m, 0.7), 0.7), m)


def test_snapshot_velocity_gets_sqrt_a():
    # the file stores v_pec / sqrt(a): at a = 0.25 a stored 200 is a peculiar 100 km/s
    assert units.snapshot_velocity_to_peculiar_kms(200.0, 0.25) == pytest.approx(100.0)


def test_wind_cells_are_not_stars():
    aform = np.array([0.5, 0.0, -0.3, 1e-6, 1.0])
    np.testing.assert_array_equal(units.is_star_not_wind(aform), [True, False, False, True, True])


def test_periodic_offset_matches_brute_force_minimum_image():
    rng = np.random.default_rng(1)
    box = 100.0
    x = rng.uniform(0, box, (500, 3))
    c = rng.uniform(0, box, 3)
    ours = units.periodic_offset(x, c, box)
    shifts = np.array([-box, 0.0, box])
    brute = np.empty_like(x)
    for i in range(len(x)):
        for d in range(3):
            cands = x[i, d] - c[d] + shifts
            brute[i, d] = cands[np.argmin(np.abs(cands))]
    np.testing.assert_allclose(ours, brute, atol=1e-9)
    assert np.all(np.abs(ours) <= box / 2)
