"""The three-parameter halo occupation baseline of the dm2gal work: halos above M_min hold a
Poisson number of galaxies with mean (M / M_1)^alpha; fitted by maximum likelihood to the
galaxies of the hydro twins matched to the N-body run's halos."""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.spatial import cKDTree

#: mean occupation below M_min in the fit's likelihood (a galaxy there is possible, not free)
FLOOR_MEAN = 1.0e-3


def occupation_mean(mass: np.ndarray, m_min: float, m_1: float, alpha: float) -> np.ndarray:
    """<N | M> = (M / M_1)^alpha for M >= M_min, else 0 (masses in Msun/h)."""
    mass = np.asarray(mass, dtype=np.float64)
    return np.where(mass >= m_min, (np.maximum(mass, 1e-30) / m_1) ** alpha, 0.0)


def match_galaxies_to_halos(halo_pos: np.ndarray, halo_radius: np.ndarray,
                            galaxy_pos: np.ndarray, box: float) -> tuple[np.ndarray, int]:
    """Galaxies per halo: each galaxy goes to the nearest halo centre within that halo's radius
    (periodic). Returns (counts per halo, number of galaxies in no halo)."""
    counts = np.zeros(len(halo_pos), dtype=np.int64)
    if len(halo_pos) == 0 or len(galaxy_pos) == 0:
        return counts, len(galaxy_pos)
    tree = cKDTree(np.mod(halo_pos, box), boxsize=box)
    k = min(8, len(halo_pos))
    dist, idx = tree.query(np.mod(galaxy_pos, box), k=k)
    dist, idx = dist.reshape(len(galaxy_pos), k), idx.reshape(len(galaxy_pos), k)
    inside = dist <= halo_radius[idx]
    first = np.argmax(inside, axis=1)
    matched = inside[np.arange(len(galaxy_pos)), first]
    np.add.at(counts, idx[np.arange(len(galaxy_pos)), first][matched], 1)
    return counts, int((~matched).sum())


def _log_likelihood(log_m: np.ndarray, counts: np.ndarray, m_min: float, a: float, b: float
                    ) -> float:
    above = log_m >= np.log(m_min)
    mean = np.where(above, np.exp(np.clip(a + b * log_m, -50, 50)), FLOOR_MEAN)
    return float(np.sum(counts * np.log(mean) - mean))


def fit_hod(mass: np.ndarray, counts: np.ndarray, n_grid: int = 60) -> dict[str, float]:
    """Maximum-likelihood (M_min, M_1, alpha): a scan over M_min, a Poisson fit of
    log <N> = alpha (log M - log M_1) above it."""
    mass = np.asarray(mass, dtype=np.float64)
    good = mass > 0
    log_m, counts = np.log(mass[good]), np.asarray(counts)[good]
    best = None
    for m_min in np.exp(np.linspace(log_m.min(), np.quantile(log_m, 0.95), n_grid)):
        above = log_m >= np.log(m_min)
        if counts[above].sum() == 0:
            continue

        def nll(theta, above=above):
            a, b = theta
            mean = np.exp(np.clip(a + b * log_m[above], -50, 50))
            return float(np.sum(mean - counts[above] * np.log(mean)))

        res = optimize.minimize(nll, x0=[-np.mean(log_m[above]), 1.0], method="Nelder-Mead",
                                options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 4000})
        a, b = res.x
        ll = _log_likelihood(log_m, counts, m_min, a, b)
        if best is None or ll > best[0]:
            best = (ll, m_min, a, b)
    if best is None:
        raise ValueError("no halo holds a galaxy: the HOD cannot be fitted")
    ll, m_min, a, b = best
    return {"m_min_msun_h": float(m_min), "m_1_msun_h": float(np.exp(-a / b)),
            "alpha": float(b), "log_likelihood": ll}


def hod_galaxies(halo_pos: np.ndarray, halo_mass: np.ndarray, halo_radius: np.ndarray,
                 hod: dict[str, float], rng: np.random.Generator, box: float) -> np.ndarray:
    """Positions of HOD galaxies: the first at the halo centre, the others uniform in R_200c."""
    mean = occupation_mean(halo_mass, hod["m_min_msun_h"], hod["m_1_msun_h"], hod["alpha"])
    n = rng.poisson(mean)
    host = np.repeat(np.arange(len(n)), n)
    rank = np.arange(len(host)) - np.repeat(np.cumsum(n) - n, n)
    direction = rng.standard_normal((len(host), 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    r = halo_radius[host] * rng.uniform(0, 1, len(host)) ** (1.0 / 3.0) * (rank > 0)
    return np.mod(halo_pos[host] + direction * r[:, None], box)
