"""Power spectra of periodic 3D fields and of point catalogues.

Catalogues are painted twice, the second time shifted by half a cell in every dimension, and the
two Fourier fields are averaged with the phase of the shift (interlacing, Sefusatti et al. 2016),
which cancels the leading aliased images; the mass-assignment window is then divided out.
Fields use numpy's unnormalised FFT: P(k) = V / N^6 |delta_k|^2, averaged in spherical shells
of width the fundamental mode k_F = 2 pi / L (half-space rfft modes counted twice).
"""

from __future__ import annotations

import numpy as np

from simbridge.extract.voxels import paint
from simbridge.sims.camels_cosmology import fourier_wavevectors

_WINDOW_ORDER = {"NGP": 1, "CIC": 2, None: 0}


def _shells(n: int, box: float, n_bins: int | None):
    kx, ky, kz = fourier_wavevectors(n, box)
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    weight = np.full(k.shape, 2.0)
    weight[..., 0] = 1.0
    if n % 2 == 0:
        weight[..., -1] = 1.0
    k_f = 2.0 * np.pi / box
    n_bins = n_bins or n // 2
    edges = k_f * (np.arange(n_bins + 1) + 0.5)
    idx = np.digitize(k, edges) - 1
    return k, weight, idx, n_bins, (kx, ky, kz)


def _window(kvec, n: int, box: float, order: int) -> np.ndarray:
    if order == 0:
        return np.ones(1)
    k_nyq = np.pi * n / box
    w = 1.0
    for kc in kvec:
        w = w * np.sinc(kc / (2.0 * k_nyq)) ** order
    return w


def _binned(values: np.ndarray, k: np.ndarray, weight: np.ndarray, idx: np.ndarray, n_bins: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    good = (idx >= 0) & (idx < n_bins)
    nmodes = np.bincount(idx[good], weights=weight[good], minlength=n_bins)
    p = np.bincount(idx[good], weights=(weight * values)[good], minlength=n_bins)
    kmean = np.bincount(idx[good], weights=(weight * k)[good], minlength=n_bins)
    ok = nmodes > 0
    return kmean[ok] / nmodes[ok], p[ok] / nmodes[ok], nmodes[ok]


def fourier_overdensity(field: np.ndarray, box: float, mas: str | None = None) -> np.ndarray:
    """rfft of delta = field / mean - 1, the mass-assignment window divided out."""
    n = field.shape[0]
    delta_k = np.fft.rfftn(field / field.mean() - 1.0)
    kvec = fourier_wavevectors(n, box)
    return delta_k / _window(kvec, n, box, _WINDOW_ORDER[mas])


def power_spectrum(field: np.ndarray, box: float, mas: str | None = None,
                   n_bins: int | None = None, other: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Shell-averaged P(k) of field / mean - 1 (or the cross spectrum with ``other``).

    ``mas``: the window the field was painted with (divided out); None for a field given
    on its own grid. Returns k (h/Mpc, mean of the shell), pk ((Mpc/h)^3), n_modes."""
    n = field.shape[0]
    k, weight, idx, n_bins, _ = _shells(n, box, n_bins)
    a = fourier_overdensity(field, box, mas)
    b = a if other is None else fourier_overdensity(other, box, mas)
    values = (a * np.conj(b)).real * box**3 / n**6
    kk, pk, nm = _binned(values, k, weight, idx, n_bins)
    return {"k": kk, "pk": pk, "n_modes": nm}


def cross_correlation(field_a: np.ndarray, field_b: np.ndarray, box: float,
                      n_bins: int | None = None) -> dict[str, np.ndarray]:
    """r(k) = P_ab / sqrt(P_aa P_bb)."""
    paa = power_spectrum(field_a, box, n_bins=n_bins)
    pbb = power_spectrum(field_b, box, n_bins=n_bins)
    pab = power_spectrum(field_a, box, n_bins=n_bins, other=field_b)
    return {"k": pab["k"], "r": pab["pk"] / np.sqrt(paa["pk"] * pbb["pk"])}


def catalog_power_spectrum(pos: np.ndarray, box: float, n: int, mas: str = "CIC",
                           interlace: bool = True, n_bins: int | None = None
                           ) -> dict[str, np.ndarray]:
    """P(k) of a point catalogue (shot noise not subtracted; ``shot_noise`` = V / N_points)."""
    pos = np.asarray(pos, dtype=np.float64)
    k, weight, idx, n_bins, kvec = _shells(n, box, n_bins)
    grid = paint(pos, box, n, mas=mas)
    delta_k = np.fft.rfftn(grid / grid.mean() - 1.0)
    if interlace:
        shift = 0.5 * box / n
        grid2 = paint(pos + shift, box, n, mas=mas)
        delta2 = np.fft.rfftn(grid2 / grid2.mean() - 1.0)
        phase = np.exp(1j * shift * (kvec[0] + kvec[1] + kvec[2]))
        delta_k = 0.5 * (delta_k + delta2 * phase)
    delta_k = delta_k / _window(kvec, n, box, _WINDOW_ORDER[mas])
    values = np.abs(delta_k) ** 2 * box**3 / n**6
    kk, pk, nm = _binned(values, k, weight, idx, n_bins)
    return {"k": kk, "pk": pk, "n_modes": nm, "shot_noise": np.full_like(kk, box**3 / len(pos))}
