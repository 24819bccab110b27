"""A demo suite of NIHAO-like dwarf zooms, written in the real Gasoline tipsy + AHF layout.

Two layers:

* **Layout** (:func:`write_tipsy_snapshot`, :func:`write_param_file`, :func:`write_ahf_catalogue`):
  a tipsy snapshot through pynbody (big-endian main file, ASCII auxiliary arrays
  ``OxMassFrac``, ``FeMassFrac``, ``iord``; pynbody's ``.pynbody-meta`` files are removed, as
  real Gasoline output has none), a hand-written ``.param`` with units and cosmology, and AHF
  ``.AHF_halos``/``.AHF_particles``/``.AHF_substructure`` files that pynbody's AHFCatalogue reads.
* **Physics** (:func:`draw_dwarf`, :func:`star_particles`): each dwarf has a halo mass
  accretion history, a delayed-exponential star formation history and a one-zone-like chemical
  evolution: core-collapse supernovae give an alpha-rich plateau ([O/Fe] ~ +0.4), type Ia iron
  (delay-time distribution from 0.15 Gyr) bends [O/Fe] down at a knee, and the [Fe/H] of the
  knee grows with the dwarf's mass (a mass-metallicity relation). Each snapshot at step s holds
  the stars formed before its time, i.e. the dwarf as it would be if accreted (star formation
  truncated) then. The stellar-to-halo mass relation has 0.3 dex scatter, so the dark-matter
  mass is only loosely tied to the stellar mass. A small fraction of stars has a zero O or Fe
  mass fraction, as in real outputs.

Snapshot step s is at cosmic time t0 s / 1024 (NIHAO runs 1024 steps to z = 0).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simbridge.errors import SimBridgeConfigError
from simbridge.extract.abundances import SOLAR_MASS_FRACTIONS, hydrogen_mass_fraction
from simbridge.units import cosmic_time_gyr, scale_factor_at_cosmic_time

log = logging.getLogger(__name__)

#: Gasoline's dHubble0 in standard cosmological units (rho_crit = 1): sqrt(8 pi / 3).
DHUBBLE0_STANDARD = math.sqrt(8.0 * math.pi / 3.0)
#: Critical density today in h^2 Msun / kpc^3.
RHO_CRIT_H2_MSUN_KPC3 = 277.5366
#: NIHAO runs to z = 0 in this many steps.
FINAL_STEP = 1024
#: Baryon fraction of the halos.
BARYON_FRACTION = 0.155
#: Oxygen's share of the total metal mass (Asplund 2009: 5.7e-3 of Z = 0.0134).
OXYGEN_SHARE_OF_METALS = 0.43


# ----------------------------------------------------------------------------------------------
# Layout: tipsy snapshot, .param file, AHF catalogue
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TipsyUnits:
    """Code units of a Gasoline run (standard cosmological units: rho_crit = 1)."""

    kpc_unit: float
    msol_unit: float
    hubble_param: float
    omega_matter: float
    omega_lambda: float

    @classmethod
    def for_box(cls, box_mpc_h: float, hubble_param: float, omega_matter: float,
                omega_lambda: float) -> TipsyUnits:
        """Length unit = box size (kpc), mass unit = rho_crit x box volume."""
        kpc = box_mpc_h * 1000.0 / hubble_param
        msol = RHO_CRIT_H2_MSUN_KPC3 * hubble_param**2 * kpc**3
        return cls(kpc, msol, hubble_param, omega_matter, omega_lambda)

    @property
    def velocity_unit_kms(self) -> float:
        """pynbody's tipsy velocity unit in km/s."""
        return 8.0285 * math.sqrt(6.6743e-8 * self.msol_unit / self.kpc_unit**3) * self.kpc_unit

    @property
    def time_unit_gyr(self) -> float:
        """pynbody's tipsy time unit in Gyr."""
        return self.kpc_unit / self.velocity_unit_kms * 0.97781311


def write_param_file(path: str | Path, units: TipsyUnits) -> None:
    """A Gasoline ``.param`` with the keys pynbody reads for units and cosmology."""
    Path(path).write_text(
        "# Gasoline run parameters (SimBridge NIHAO demo suite)\n"
        f"dKpcUnit = {units.kpc_unit:.10g}\n"
        f"dMsolUnit = {units.msol_unit:.10g}\n"
        f"dHubble0 = {DHUBBLE0_STANDARD:.7f}\n"
        f"dOmega0 = {units.omega_matter}\n"
        f"dLambda = {units.omega_lambda}\n"
        "bComove = 1\n"
        "achOutName = " + Path(path).stem + "\n")


def write_tipsy_snapshot(path: str | Path, scale_factor: float, gas: dict[str, NDArray],
                         dark: dict[str, NDArray], star: dict[str, NDArray],
                         aux: dict[str, NDArray]) -> None:
    """Write a tipsy snapshot (code units, order gas, dark, star) and ASCII aux arrays.

    ``gas``/``dark``/``star`` map tipsy fields (pos, vel, mass, eps, phi, rho, temp, metals,
    tform) to arrays of their family; ``aux`` maps array names to one value per particle over
    all families in file order.
    """
    import pynbody

    ng, nd, ns = (len(fam["mass"]) for fam in (gas, dark, star))
    snap = pynbody.new(gas=ng, dm=nd, star=ns, order="gas,dm,star")
    families = ((snap.g, gas), (snap.dm, dark), (snap.s, star))
    # a field of every family is set on the whole snapshot at once: pynbody promotes per-family
    # arrays with a gc.collect() each, which made writing 30x slower
    for key in set(gas) & set(dark) & set(star):
        snap[key] = np.concatenate([np.asarray(gas[key]), np.asarray(dark[key]),
                                    np.asarray(star[key])])
    for family, fields in families:
        for key, values in fields.items():
            if key not in snap.loadable_keys() and key not in snap.keys():
                family[key] = values
    for key, values in aux.items():
        snap[key] = values
    snap.properties["a"] = float(scale_factor)
    path = Path(path)
    snap.write(fmt=pynbody.snapshot.tipsy.TipsySnap, filename=str(path), cosmological=True)
    for meta in path.parent.glob(path.name + "*.pynbody-meta"):
        meta.unlink()  # real Gasoline output has none (and pynbody cannot parse their dtype)


@dataclass
class AhfHalo:
    """One AHF halo: its ID, host ID (-1: none) and member particles (pynbody file order)."""

    halo_id: int
    host_id: int
    members: NDArray
    centre_kpc_h: NDArray
    rvir_kpc_h: float


def write_ahf_catalogue(snapshot_path: str | Path, redshift: float, halos: list[AhfHalo],
                        masses_msun_h: NDArray, family_counts: tuple[int, int, int]) -> Path:
    """AHF_halos, AHF_particles and AHF_substructure for a tipsy snapshot (new format).

    Particle indices in AHF order (dark, then star, then gas); masses in Msun/h, positions in
    comoving kpc/h, as AHF writes them. Returns the catalogue's base name.
    """
    ng, nd, ns = family_counts
    base = Path(f"{snapshot_path}.z{redshift:.3f}.AHF_")
    n_total = ng + nd + ns
    family = np.empty(n_total, dtype=np.int64)
    family[:ng], family[ng:ng + nd], family[ng + nd:] = 0, 1, 4  # AHF ptype: gas 0, dm 1, star 4
    ahf_index = np.empty(n_total, dtype=np.int64)
    ahf_index[:ng] = nd + ns + np.arange(ng)
    ahf_index[ng:ng + nd] = np.arange(nd)
    ahf_index[ng + nd:] = nd + np.arange(ns)
    header = ("#ID(1) hostHalo(2) numSubStruct(3) Mvir(4) npart(5) Xc(6) Yc(7) Zc(8) "
              "VXc(9) VYc(10) VZc(11) Rvir(12) n_gas(13) M_gas(14) n_star(15) M_star(16)\n")
    lines = [header]
    for h in halos:
        m = h.members
        fam = family[m]
        nsub = sum(1 for other in halos if other.host_id == h.halo_id)
        lines.append(
            f"{h.halo_id} {h.host_id} {nsub} {masses_msun_h[m].sum():.6e} {len(m)} "
            f"{h.centre_kpc_h[0]:.6e} {h.centre_kpc_h[1]:.6e} {h.centre_kpc_h[2]:.6e} "
            f"0.000000e+00 0.000000e+00 0.000000e+00 {h.rvir_kpc_h:.6e} "
            f"{int((fam == 0).sum())} {masses_msun_h[m][fam == 0].sum():.6e} "
            f"{int((fam == 4).sum())} {masses_msun_h[m][fam == 4].sum():.6e}\n")
    Path(str(base) + "halos").write_text("".join(lines))
    parts = [f"{len(halos)}\n"]
    for h in halos:
        order = np.argsort(ahf_index[h.members], kind="stable")
        m = h.members[order]
        parts.append(f"{len(m)} {h.halo_id}\n")
        parts.append("".join(f"{i} {t}\n" for i, t in zip(ahf_index[m], family[m], strict=True)))
    Path(str(base) + "particles").write_text("".join(parts))
    sub = []
    for h in halos:
        children = [o.halo_id for o in halos if o.host_id == h.halo_id]
        if children:
            sub.append(f"{h.halo_id} {len(children)}\n{' '.join(map(str, children))}\n")
    Path(str(base) + "substructure").write_text("".join(sub))
    return base


# ----------------------------------------------------------------------------------------------
# Physics of the demo dwarfs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dwarf:
    """The history of one demo dwarf (halo mass at z = 0 names it)."""

    name: str
    halo_mass_msun: float       # z = 0
    stellar_mass_msun: float    # z = 0, if never accreted
    mah_alpha: float            # M_h(z) = M_h0 exp(-alpha z)
    sf_start_gyr: float
    sf_tau_gyr: float           # SFR ~ (t - t_start) exp(-(t - t_start) / tau)
    oh_final_dex: float         # [O/H] reached at z = 0 (mass-metallicity relation)
    plateau_dex: float          # [O/Fe] of core-collapse ejecta


def galaxy_name(halo_mass_msun: float) -> str:
    """NIHAO-style name g<mass>: 1.05e11 -> 'g1.05e11'."""
    mantissa, exponent = f"{halo_mass_msun:.2e}".split("e")
    return f"g{mantissa}e{int(exponent)}"


def draw_dwarf(rng: np.random.Generator, log10_halo_mass: float) -> Dwarf:
    """Draw the histories of a dwarf of z = 0 halo mass 10^log10_halo_mass Msun."""
    mh = 10.0**log10_halo_mass
    # stellar-to-halo mass relation of dwarfs (slope ~2 below 1e11.5), 0.3 dex scatter
    log_ms = math.log10(0.02 * mh) + 1.0 * (log10_halo_mass - 11.5) + rng.normal(0.0, 0.3)
    ms = 10.0**log_ms
    return Dwarf(
        name=galaxy_name(mh), halo_mass_msun=mh, stellar_mass_msun=ms,
        mah_alpha=float(rng.uniform(0.5, 1.2)), sf_start_gyr=float(rng.uniform(0.4, 1.2)),
        sf_tau_gyr=float(rng.uniform(1.0, 5.0)),
        oh_final_dex=float(-1.1 + 0.3 * (log_ms - 7.0) + rng.normal(0.0, 0.08)),
        plateau_dex=float(0.40 + rng.normal(0.0, 0.03)))


def _time_grid(t_end: float) -> NDArray:
    return np.linspace(0.0, t_end, 1200)


def cumulative_star_formation(dwarf: Dwarf, t_gyr: NDArray, t0_gyr: float) -> NDArray:
    """Fraction of the z = 0 stellar mass formed by time t (delayed exponential SFH)."""
    def gamma_cdf(t: NDArray) -> NDArray:
        x = np.clip((np.asarray(t) - dwarf.sf_start_gyr) / dwarf.sf_tau_gyr, 0.0, None)
        return 1.0 - (1.0 + x) * np.exp(-x)
    return gamma_cdf(t_gyr) / gamma_cdf(np.array(t0_gyr))


def halo_mass_at(dwarf: Dwarf, redshift: float) -> float:
    """Halo mass (Msun) at a redshift: M_h0 exp(-alpha z)."""
    return dwarf.halo_mass_msun * math.exp(-dwarf.mah_alpha * redshift)


def abundance_tracks(dwarf: Dwarf, t_form: NDArray, t0_gyr: float) -> tuple[NDArray, NDArray]:
    """Noise-free [O/H] and [Fe/H] of the gas that stars formed from at times t_form (Gyr).

    [O/H] rises with the formed stellar mass (prompt core-collapse oxygen); iron is the
    core-collapse share (plateau) plus type Ia iron from a t^-1 delay-time distribution
    (minimum delay 0.15 Gyr) convolved with the star formation history.
    """
    grid = _time_grid(t0_gyr)
    cum = cumulative_star_formation(dwarf, grid, t0_gyr)
    sfr = np.gradient(cum, grid)
    oh = dwarf.oh_final_dex + 0.8 * np.log10(np.clip(cum, 1e-6, None))
    delay_min, delay_max = 0.15, t0_gyr
    dt = grid[1] - grid[0]
    # cumulative fraction of Ia events exploded after a delay tau (t^-1 DTD)
    tau = np.maximum(grid, delay_min)
    dtd_cdf = np.where(grid < delay_min, 0.0, np.log(tau / delay_min) / math.log(
        delay_max / delay_min))
    ia = np.convolve(sfr, np.gradient(dtd_cdf, grid))[:grid.size] * dt * dt
    ia_per_star = np.divide(np.cumsum(ia), np.clip(cum, 1e-12, None))
    ia_per_star = np.clip(ia_per_star / max(dtd_cdf[-1], 1e-12), 0.0, 1.0)
    # late-time Ia iron brings [O/Fe] from the plateau to ~0
    ofe = dwarf.plateau_dex - np.log10(1.0 + (10.0**dwarf.plateau_dex - 1.0) * 1.4 * ia_per_star)
    feh = oh - ofe
    return np.interp(t_form, grid, oh), np.interp(t_form, grid, feh)


def star_particles(dwarf: Dwarf, t_snap_gyr: float, t0_gyr: float, n_star_z0: int,
                   zero_fraction: float, rng: np.random.Generator) -> dict[str, NDArray]:
    """Star particles formed before t_snap: formation time (Gyr), mass (Msun), mass fractions.

    The particle mass is fixed per simulation (z = 0 stellar mass / n_star_z0), so the number of
    particles grows with the stellar mass formed, as in a simulation.
    """
    frac = float(cumulative_star_formation(dwarf, np.array(t_snap_gyr), t0_gyr))
    n = int(rng.poisson(n_star_z0 * frac)) if frac > 0 else 0
    particle_mass = dwarf.stellar_mass_msun / n_star_z0
    u = rng.uniform(0.0, 1.0, n) * frac
    grid = _time_grid(t0_gyr)
    cum = cumulative_star_formation(dwarf, grid, t0_gyr)
    t_form = np.interp(u, cum, grid)  # inverse-CDF draw of formation times
    oh, feh = abundance_tracks(dwarf, t_form, t0_gyr)
    oh = oh + rng.normal(0.0, 0.06, n)    # ISM inhomogeneity
    feh = feh + rng.normal(0.0, 0.06, n)
    sun = SOLAR_MASS_FRACTIONS
    # mass fractions at the solar hydrogen fraction, then one fixed-point step on X_H(Z)
    x_h = np.full(n, sun["H"])
    for _ in range(2):
        x_o = sun["O"] / sun["H"] * x_h * 10.0**oh
        x_fe = sun["Fe"] / sun["H"] * x_h * 10.0**feh
        metals = x_o / OXYGEN_SHARE_OF_METALS
        x_h = hydrogen_mass_fraction(metals)
    # a few first-generation stars without O or Fe, as in real outputs
    zero = rng.uniform(size=n) < zero_fraction
    which = rng.integers(0, 2, n)
    x_o = np.where(zero & (which == 0), 0.0, x_o)
    x_fe = np.where(zero & (which == 1), 0.0, x_fe)
    return {"tform_gyr": t_form, "mass_msun": np.full(n, particle_mass), "ox": x_o, "fe": x_fe,
            "metals": metals}


# ----------------------------------------------------------------------------------------------
# The suite
# ----------------------------------------------------------------------------------------------


def _sphere(rng: np.random.Generator, n: int, scale: float) -> NDArray:
    """n positions of a Plummer-like cloud of the given scale (same units)."""
    r = scale * rng.uniform(0.05, 1.0, n) ** 1.5
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True) * r[:, None]


def write_snapshot_of_dwarf(folder: Path, dwarf: Dwarf, step: int, demo: dict[str, Any],
                            units: TipsyUnits, rng: np.random.Generator,
                            with_halos: bool = True) -> dict[str, Any]:
    """Write snapshot ``<name>.<step>`` of a dwarf; return its true properties."""
    h, om, ol = units.hubble_param, units.omega_matter, units.omega_lambda
    t0 = float(cosmic_time_gyr(1.0, h, om, ol))
    t_snap = t0 * step / FINAL_STEP
    a = float(scale_factor_at_cosmic_time(t_snap, h, om, ol))
    z = 1.0 / a - 1.0
    stars = star_particles(dwarf, t_snap, t0, demo["n_star_particles"],
                           demo["zero_mass_fraction_stars"], rng)
    m_halo = halo_mass_at(dwarf, z)
    n_dm_z0 = demo["n_dm_particles"]
    m_dm_particle = dwarf.halo_mass_msun * (1.0 - BARYON_FRACTION) / n_dm_z0
    n_dm = max(8, int(round(n_dm_z0 * m_halo / dwarf.halo_mass_msun)))
    n_bg = demo["n_background_particles"]
    n_gas = demo["n_gas_particles"]
    m_gas_particle = dwarf.halo_mass_msun * BARYON_FRACTION * 0.3 / n_gas
    ns = len(stars["mass_msun"])
    # virial radius (physical kpc) of 200 rho_crit
    r_vir = (3.0 * m_halo / (4.0 * math.pi * 200.0 * RHO_CRIT_H2_MSUN_KPC3 * h**2)) ** (1 / 3)
    centre_box = rng.uniform(-0.2, 0.2, 3)  # box units, comoving
    to_box = 1.0 / (a * units.kpc_unit)     # physical kpc -> comoving box units
    pos_dm = _sphere(rng, n_dm, r_vir) * to_box + centre_box
    pos_bg = rng.uniform(-0.5, 0.5, (n_bg, 3))  # low-resolution region, outside the halo
    pos_gas = _sphere(rng, n_gas, 0.5 * r_vir) * to_box + centre_box
    pos_star = _sphere(rng, ns, 0.1 * r_vir) * to_box + centre_box
    mu = units.msol_unit
    eps = 0.2 / units.kpc_unit
    gas = {"pos": pos_gas, "vel": np.zeros((n_gas, 3)), "mass": np.full(n_gas, m_gas_particle / mu),
           "eps": np.full(n_gas, eps), "phi": np.zeros(n_gas), "rho": np.full(n_gas, 1e3),
           "temp": np.full(n_gas, 1e4), "metals": np.full(n_gas, 1e-3)}
    n_dark = n_dm + n_bg
    dark = {"pos": np.vstack([pos_dm, pos_bg]), "vel": np.zeros((n_dark, 3)),
            "mass": np.full(n_dark, m_dm_particle / mu), "eps": np.full(n_dark, eps),
            "phi": np.zeros(n_dark), "metals": np.zeros(n_dark)}
    star = {"pos": pos_star, "vel": np.zeros((ns, 3)), "mass": stars["mass_msun"] / mu,
            "eps": np.full(ns, eps), "phi": np.zeros(ns), "metals": stars["metals"],
            "tform": stars["tform_gyr"] / units.time_unit_gyr}
    n_total = n_gas + n_dark + ns
    ox = np.concatenate([np.full(n_gas, 4e-4), np.zeros(n_dark), stars["ox"]])
    fe = np.concatenate([np.full(n_gas, 8e-5), np.zeros(n_dark), stars["fe"]])
    aux = {"OxMassFrac": ox.astype(np.float32), "FeMassFrac": fe.astype(np.float32),
           "iord": np.arange(n_total, dtype=np.int32)}
    snap_path = folder / f"{dwarf.name}.{step:05d}"
    write_tipsy_snapshot(snap_path, a, gas, dark, star, aux)
    if with_halos:
        mass_h = np.concatenate([gas["mass"], dark["mass"], star["mass"]]) * mu * h
        idx_gas, idx_dm = np.arange(n_gas), n_gas + np.arange(n_dm)
        idx_star = n_gas + n_dark + np.arange(ns)
        centre_kpc_h = (centre_box + 0.5) * units.kpc_unit * h  # AHF: [0, L), comoving kpc/h
        main = AhfHalo(0, -1, np.concatenate([idx_dm, idx_star, idx_gas]), centre_kpc_h,
                       r_vir / a * h)
        sub = AhfHalo(1, 0, idx_dm[: max(4, n_dm // 20)], centre_kpc_h, 0.2 * r_vir / a * h)
        write_ahf_catalogue(snap_path, z, [main, sub], mass_h, (n_gas, n_dark, ns))
    return {"galaxy": dwarf.name, "snapshot": snap_path.name, "step": step,
            "time_gyr": t_snap, "redshift": z, "n_star": ns,
            "stellar_mass_msun": float(stars["mass_msun"].sum()),
            "dm_mass_msun": n_dm * m_dm_particle, "halos_written": with_halos}


def generate_demo_suite(out_dir: str | Path, demo: dict[str, Any], seed: int) -> dict[str, Any]:
    """Write the whole demo suite under ``out_dir``; return a summary (truths per snapshot).

    One folder per dwarf with its ``.param`` file and snapshots at ``demo.snapshot_steps``. The
    earliest snapshot of the first dwarf is written without an AHF catalogue (real suites have
    such gaps) so that the error table has a 'no halo catalogue' row.
    """
    out_dir = Path(out_dir)
    lo, hi = demo["log10_halo_mass_range"]
    if not hi > lo:
        raise SimBridgeConfigError("nihao.demo.log10_halo_mass_range must be [low, high], "
                                   f"low < high (got {[lo, hi]})")
    units = TipsyUnits.for_box(demo["box_size_mpc_h"], demo["hubble_param"],
                               demo["omega_matter"], 1.0 - demo["omega_matter"])
    rng = np.random.default_rng([seed, 14])
    masses = np.sort(rng.uniform(lo, hi, demo["n_simulations"]))
    dwarfs, names = [], set()
    for log_mass in masses:
        dwarf = draw_dwarf(rng, float(log_mass))
        while dwarf.name in names:  # names must be unique: nudge the mass
            log_mass += 0.002
            dwarf = draw_dwarf(rng, float(log_mass))
        names.add(dwarf.name)
        dwarfs.append(dwarf)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshots = []
    for i, dwarf in enumerate(dwarfs):
        folder = out_dir / dwarf.name
        folder.mkdir(exist_ok=True)
        write_param_file(folder / f"{dwarf.name}.param", units)
        for k, step in enumerate(sorted(demo["snapshot_steps"])):
            snap_rng = np.random.default_rng([seed, 14, i, step])
            snapshots.append(write_snapshot_of_dwarf(folder, dwarf, int(step), demo, units,
                                                     snap_rng, with_halos=not (i == 0 and k == 0)))
    log.info("demo suite: %d dwarfs, %d snapshots in %s", len(dwarfs), len(snapshots), out_dir)
    return {"n_simulations": len(dwarfs), "n_snapshots": len(snapshots),
            "galaxies": [d.__dict__ for d in dwarfs], "snapshots": snapshots,
            "units": units.__dict__, "time_unit_gyr": units.time_unit_gyr}
