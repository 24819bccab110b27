"""Physics of the CAMELS demo suite's dark matter: linear power spectrum, Gaussian initial field,
Zel'dovich initial displacements and a particle-mesh (PM) N-body integration to z = 0.

* Linear P(k): Eisenstein & Hu (1998, ApJ 496, 605) "no-wiggle" transfer function (their
  eqs. 26-31, baryon suppression of the shape parameter, no acoustic oscillations), primordial
  index n_s, normalised to sigma_8 with a top-hat of 8 Mpc/h. Units: k in h/Mpc, P in (Mpc/h)^3.
* Initial field: white noise in real space, multiplied in Fourier space by sqrt(P(k) N^3 / V),
  so that the estimator V/N^6 |FFT(delta)|^2 has expectation P(k) (tests recover it).
* Zel'dovich displacement psi_k = i k delta_k / k^2 at a_init, momenta p = a^2 D f E psi.
* PM: kick-drift-kick leapfrog in the scale factor, CIC mass assignment and read-out on a
  mesh of ``mesh_factor`` cells per particle spacing, Poisson equation
  nabla^2 phi = 1.5 Omega_m delta / a (H0 = 1, lengths Mpc/h, velocities 100 km/s).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import integrate

from simbridge.extract.voxels import paint, readout_cic

T_CMB_K = 2.7255


def e_of_a(a: float | np.ndarray, omega_m: float) -> np.ndarray:
    """H(a)/H0 of flat LambdaCDM."""
    return np.sqrt(omega_m / np.asarray(a) ** 3 + 1.0 - omega_m)


@cache
def _growth_unnormalised(a: float, omega_m: float) -> float:
    integral, _ = integrate.quad(lambda x: 1.0 / (x * e_of_a(x, omega_m)) ** 3, 1e-8, a)
    return float(2.5 * omega_m * e_of_a(a, omega_m) * integral)


def growth_factor(a: float, omega_m: float) -> float:
    """Linear growth factor D(a), D(1) = 1 (flat LambdaCDM, Heath 1977 integral)."""
    return _growth_unnormalised(float(a), float(omega_m)) / _growth_unnormalised(1.0, omega_m)


def growth_rate(a: float, omega_m: float) -> float:
    """f = dln D / dln a ~ Omega_m(a)^0.55."""
    om_a = omega_m / a**3 / e_of_a(a, omega_m) ** 2
    return float(om_a**0.55)


def eisenstein_hu_nowiggle(k_h_mpc: np.ndarray, omega_m: float, omega_b: float, h: float
                           ) -> np.ndarray:
    """EH98 no-wiggle transfer function T(k), k in h/Mpc."""
    k = np.asarray(k_h_mpc, dtype=np.float64)
    theta = T_CMB_K / 2.7
    omh2, obh2 = omega_m * h * h, omega_b * h * h
    fb = omega_b / omega_m
    s = 44.5 * np.log(9.83 / omh2) / np.sqrt(1.0 + 10.0 * obh2**0.75)  # Mpc
    alpha = 1.0 - 0.328 * np.log(431.0 * omh2) * fb + 0.38 * np.log(22.3 * omh2) * fb**2
    gamma_eff = omega_m * h * (alpha + (1.0 - alpha) / (1.0 + (0.43 * k * h * s) ** 4))
    q = k * theta**2 / gamma_eff
    l0 = np.log(2.0 * np.e + 1.8 * q)
    c0 = 14.2 + 731.0 / (1.0 + 62.5 * q)
    return l0 / (l0 + c0 * q * q)


def _sigma_r(power: callable, radius: float) -> float:
    def integrand(lnk: float) -> float:
        k = np.exp(lnk)
        x = k * radius
        w = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
        return k**3 * power(k) * w * w / (2.0 * np.pi**2)

    val, _ = integrate.quad(integrand, np.log(1e-4), np.log(1e2), limit=400)
    return float(np.sqrt(val))


def linear_power(omega_m: float, sigma_8: float, omega_b: float = 0.049, h: float = 0.6711,
                 n_s: float = 0.9624):
    """P_lin(k) at z = 0 as a function of k (h/Mpc), (Mpc/h)^3, normalised to sigma_8."""

    def shape(k):
        return np.asarray(k, dtype=np.float64) ** n_s * eisenstein_hu_nowiggle(k, omega_m,
                                                                               omega_b, h) ** 2

    amplitude = (sigma_8 / _sigma_r(shape, 8.0)) ** 2

    def power(k):
        return amplitude * shape(k)

    return power


def fourier_wavevectors(n: int, box: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kx, ky, kz (broadcastable, rfft layout) in h/Mpc for an n^3 grid of side ``box``."""
    k = 2.0 * np.pi * np.fft.fftfreq(n, d=box / n)
    kz = 2.0 * np.pi * np.fft.rfftfreq(n, d=box / n)
    return k[:, None, None], k[None, :, None], kz[None, None, :]


def gaussian_random_field(n: int, box: float, power, rng: np.random.Generator) -> np.ndarray:
    """Real Gaussian field delta (n, n, n) with power spectrum ``power(k)``; returns its rfft
    (unnormalised numpy convention) so callers can derive displacements exactly."""
    white = rng.standard_normal((n, n, n))
    kx, ky, kz = fourier_wavevectors(n, box)
    kk = np.sqrt(kx**2 + ky**2 + kz**2)
    amp = np.zeros_like(kk)
    nonzero = kk > 0
    amp[nonzero] = np.sqrt(power(kk[nonzero]) * n**3 / box**3)
    return np.fft.rfftn(white) * amp


def zeldovich_displacement(delta_k: np.ndarray, n: int, box: float) -> np.ndarray:
    """psi (n^3, 3) at the lattice points from delta's rfft: psi_k = i k delta_k / k^2."""
    kx, ky, kz = fourier_wavevectors(n, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    psi = [np.fft.irfftn(1j * kc * delta_k / k2, s=(n, n, n), axes=(0, 1, 2)).ravel()
           for kc in (kx, ky, kz)]
    return np.stack(psi, axis=1)


def lattice(n: int, box: float) -> np.ndarray:
    """Lagrangian positions q (n^3, 3), cell-centred, in the order of the field's ravel()."""
    g = (np.arange(n) + 0.0) * box / n
    q = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1)
    return q.reshape(-1, 3)


def _pm_acceleration(pos: np.ndarray, box: float, mesh: int, omega_m: float) -> np.ndarray:
    """-grad(phi) a (the a-independent part: 1.5 Omega_m grad nabla^-2 delta), CIC both ways."""
    rho = paint(pos, box, mesh)
    delta_k = np.fft.rfftn(rho / rho.mean() - 1.0)
    kx, ky, kz = fourier_wavevectors(mesh, box)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    phi_k = -1.5 * omega_m * delta_k / k2
    force = np.stack([np.fft.irfftn(-1j * kc * phi_k, s=(mesh,) * 3, axes=(0, 1, 2))
                      for kc in (kx, ky, kz)])
    return readout_cic(force, pos, box)


def particle_mesh(n: int, box: float, delta_k: np.ndarray, omega_m: float, a_init: float = 0.05,
                  n_steps: int = 20, mesh_factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Evolve the Zel'dovich initial conditions of ``delta_k`` to a = 1.

    Returns positions (Mpc/h, in [0, box)) and peculiar velocities (km/s) of the n^3 particles
    in lattice order."""
    psi = zeldovich_displacement(delta_k, n, box)
    d0 = growth_factor(a_init, omega_m)
    pos = lattice(n, box) + d0 * psi
    mom = a_init**2 * d0 * growth_rate(a_init, omega_m) * e_of_a(a_init, omega_m) * psi
    mesh = mesh_factor * n
    steps = np.linspace(a_init, 1.0, n_steps + 1)

    def kick(a0: float, a1: float) -> float:
        return integrate.quad(lambda a: 1.0 / (a * a * e_of_a(a, omega_m)), a0, a1)[0]

    def drift(a0: float, a1: float) -> float:
        return integrate.quad(lambda a: 1.0 / (a**3 * e_of_a(a, omega_m)), a0, a1)[0]

    acc = _pm_acceleration(pos, box, mesh, omega_m)
    for a0, a1 in zip(steps[:-1], steps[1:], strict=True):
        am = 0.5 * (a0 + a1)
        mom += acc * kick(a0, am)
        pos = np.mod(pos + mom * drift(a0, a1), box)
        acc = _pm_acceleration(pos, box, mesh, omega_m)
        mom += acc * kick(am, a1)
    velocity_kms = 100.0 * mom / 1.0  # a = 1: v_pec = p / a in units of 100 km/s
    return pos, velocity_kms
