"""Voxel grids from particles: cloud-in-cell (CIC) and nearest-grid-point (NGP) mass assignment,
periodic and mass-conserving, in Pylians' MAS_library convention (grid node i at x = i L/N; a
particle at x = L/N (i + u) gives weight 1 - u to node i and u to node i + 1 mod N; NGP uses
int(x/dx + 0.5)). Painting runs numba kernels (one pass over the particles, no copies of
them, cached compilation; optionally threaded with private grids); :func:`paint_numpy` is the
vectorised np.bincount version of the same sums.
Also the CIC read-out (the transpose)."""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

MASS_ASSIGNMENTS = ("CIC", "NGP")


def _cell_coordinates(pos: np.ndarray, box: float, n: int) -> np.ndarray:
    x = np.asarray(pos, dtype=np.float64) * (n / box)
    return np.mod(x, n)


# The painting kernels read the positions as given (float32 like Pylians, or float64: no
# converted copy), compute in float64 registers and add into a float64 or float32 grid; out-of-
# box coordinates and cell indices wrap with branches taken only at the box edges. Grid offsets
# are unsigned (no negative-index wraparound code per access) and the CIC kernel prefetches the
# cells of the particle PREFETCH_AHEAD places ahead (random particle order is bound by memory
# latency). fastmath stays off (IEEE sums in particle order). ``use_w`` false: unit weights.
PREFETCH_AHEAD = 8


@intrinsic
def _prefetch(typingctx, arr, index):  # noqa: ARG001 (numba intrinsic signature)
    """Hint the CPU to fetch arr[index] into cache for writing (llvm.prefetch; no effect on
    results)."""
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        name = "llvm.prefetch.p0" if llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), name)
        builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _cic_kernel(pos: np.ndarray, w: np.ndarray, use_w: bool, inv_cell: float,
                grid: np.ndarray) -> int:
    """CIC sums into ``grid``; returns the number of skipped non-finite particles."""
    n = grid.shape[0]
    nn = n * n
    g = grid.reshape(-1)
    npart = pos.shape[0]
    inner = float(n - 1)
    bad = 0
    for p in range(npart):
        if p + PREFETCH_AHEAD < npart:
            y0 = pos[p + PREFETCH_AHEAD, 0] * inv_cell
            y1 = pos[p + PREFETCH_AHEAD, 1] * inv_cell
            y2 = pos[p + PREFETCH_AHEAD, 2] * inv_cell
            if 0.0 <= y0 < inner and 0.0 <= y1 < inner and 0.0 <= y2 < inner:
                q = int(y0) * nn + int(y1) * n + int(y2)
                _prefetch(g, q)
                _prefetch(g, q + n)
                _prefetch(g, q + nn)
                _prefetch(g, q + nn + n)
        x0 = pos[p, 0] * inv_cell
        x1 = pos[p, 1] * inv_cell
        x2 = pos[p, 2] * inv_cell
        f0, f1, f2 = np.floor(x0), np.floor(x1), np.floor(x2)
        ux, uy, uz = x0 - f0, x1 - f1, x2 - f2
        i0, j0, k0 = int(f0), int(f1), int(f2)
        if i0 < 0 or i0 >= n or j0 < 0 or j0 >= n or k0 < 0 or k0 >= n:
            if not (np.isfinite(x0) and np.isfinite(x1) and np.isfinite(x2)):
                bad += 1
                continue
            i0, j0, k0 = i0 % n, j0 % n, k0 % n
        i1 = i0 + 1 if i0 + 1 < n else 0
        j1 = j0 + 1 if j0 + 1 < n else 0
        k1 = k0 + 1 if k0 + 1 < n else 0
        wp = w[p] if use_w else 1.0
        wx0, wx1 = (1.0 - ux) * wp, ux * wp
        wy0, wz0 = 1.0 - uy, 1.0 - uz
        a, b, c, d = wx0 * wy0, wx0 * uy, wx1 * wy0, wx1 * uy
        r00, r01 = i0 * nn + j0 * n, i0 * nn + j1 * n
        r10, r11 = i1 * nn + j0 * n, i1 * nn + j1 * n
        g[np.uint64(r00 + k0)] += a * wz0
        g[np.uint64(r00 + k1)] += a * uz
        g[np.uint64(r01 + k0)] += b * wz0
        g[np.uint64(r01 + k1)] += b * uz
        g[np.uint64(r10 + k0)] += c * wz0
        g[np.uint64(r10 + k1)] += c * uz
        g[np.uint64(r11 + k0)] += d * wz0
        g[np.uint64(r11 + k1)] += d * uz
    return bad


@numba.njit(cache=True, boundscheck=False, nogil=True)
def _ngp_kernel(pos: np.ndarray, w: np.ndarray, use_w: bool, inv_cell: float,
                grid: np.ndarray) -> int:
    """NGP sums into ``grid``; returns the number of skipped non-finite particles."""
    n = grid.shape[0]
    nn = n * n
    g = grid.reshape(-1)
    bad = 0
    for p in range(pos.shape[0]):
        i = int(np.floor(pos[p, 0] * inv_cell + 0.5))
        j = int(np.floor(pos[p, 1] * inv_cell + 0.5))
        k = int(np.floor(pos[p, 2] * inv_cell + 0.5))
        if i < 0 or i >= n or j < 0 or j >= n or k < 0 or k >= n:
            if not (np.isfinite(pos[p, 0]) and np.isfinite(pos[p, 1])
                    and np.isfinite(pos[p, 2])):
                bad += 1
                continue
            i, j, k = i % n, j % n, k % n
        g[np.uint64(i * nn + j * n + k)] += w[p] if use_w else 1.0
    return bad


@numba.njit(cache=True, parallel=True, boundscheck=False)
def _paint_threaded(pos: np.ndarray, w: np.ndarray, use_w: bool, inv_cell: float,
                    grid: np.ndarray, cic: bool, threads: int) -> int:
    """Atomic-free threading: thread t paints particle chunk t into a private grid; the
    private grids are then summed into ``grid`` cell by cell (in thread order)."""
    n = grid.shape[0]
    npart = pos.shape[0]
    private = np.zeros((threads, n, n, n), grid.dtype)
    bad = 0
    for t in numba.prange(threads):
        lo, hi = npart * t // threads, npart * (t + 1) // threads
        wt = w[lo:hi] if use_w else w
        if cic:
            bad += _cic_kernel(pos[lo:hi], wt, use_w, inv_cell, private[t])
        else:
            bad += _ngp_kernel(pos[lo:hi], wt, use_w, inv_cell, private[t])
    flat = grid.reshape(-1)
    priv = private.reshape(threads, -1)
    for c in numba.prange(flat.shape[0]):
        acc = flat[c]
        for t in range(threads):
            acc += priv[t, c]
        flat[c] = acc
    return bad


def paint(pos: np.ndarray, box: float, n: int, weights: np.ndarray | None = None,
          mas: str = "CIC", threads: int = 1, dtype: type = np.float64) -> np.ndarray:
    """Mass assignment of particles ``pos`` (N, 3) in [0, box) (wrapped) onto an n^3 grid.

    Returns (n, n, n) of ``dtype``, the summed weights (default 1 per particle) per cell: the
    grid total equals the weight total (mass conservation). Same sums as :func:`paint_numpy`, by
    a numba kernel that reads float32 or float64 positions without copying them and computes in
    float64; ``dtype`` float32 sums into a float32 grid (half the memory, Pylians' grid type).
    ``threads`` > 1 paints particle chunks into private grids in parallel and adds them."""
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    if mas not in MASS_ASSIGNMENTS:
        raise ValueError(f"mass assignment must be one of {MASS_ASSIGNMENTS}, got {mas!r}")
    if pos.dtype not in (np.float32, np.float64):
        pos = pos.astype(np.float64)
    if weights is None:
        w, use_w = np.ones(1), False
    else:
        w, use_w = np.asarray(weights), True
        if w.shape != (len(pos),):
            raise ValueError(f"weights must have shape ({len(pos)},), got {w.shape}")
        if w.dtype not in (np.float32, np.float64):
            w = w.astype(np.float64)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"grid dtype must be float32 or float64, got {dtype}")
    grid = np.zeros((int(n),) * 3, dtype)
    inv_cell = float(n) / float(box)
    if threads > 1:
        bad = _paint_threaded(pos, w, use_w, inv_cell, grid, mas == "CIC", int(threads))
    elif mas == "CIC":
        bad = _cic_kernel(pos, w, use_w, inv_cell, grid)
    else:
        bad = _ngp_kernel(pos, w, use_w, inv_cell, grid)
    if bad:
        raise ValueError(f"{bad} of {len(pos)} particle positions are not finite (NaN or inf)")
    return grid


def paint_numpy(pos: np.ndarray, box: float, n: int, weights: np.ndarray | None = None,
                mas: str = "CIC") -> np.ndarray:
    """Mass assignment of particles ``pos`` (N, 3) in [0, box) (wrapped) onto an n^3 grid.

    Returns float64 (n, n, n), the summed weights (default 1 per particle) per cell: the grid
    total equals the weight total (mass conservation)."""
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {pos.shape}")
    w = np.ones(len(pos)) if weights is None else np.asarray(weights, dtype=np.float64)
    x = _cell_coordinates(pos, box, n)
    if mas == "NGP":
        i = (x + 0.5).astype(np.int64) % n
        flat = (i[:, 0] * n + i[:, 1]) * n + i[:, 2]
        return np.bincount(flat, weights=w, minlength=n**3).reshape(n, n, n)
    if mas != "CIC":
        raise ValueError(f"mass assignment must be one of {MASS_ASSIGNMENTS}, got {mas!r}")
    i0 = np.floor(x).astype(np.int64)
    u = x - i0
    i0 %= n
    i1 = (i0 + 1) % n
    grid = np.zeros(n**3)
    for cx in (0, 1):
        ix = i1[:, 0] if cx else i0[:, 0]
        wx = u[:, 0] if cx else 1.0 - u[:, 0]
        for cy in (0, 1):
            iy = i1[:, 1] if cy else i0[:, 1]
            wy = u[:, 1] if cy else 1.0 - u[:, 1]
            for cz in (0, 1):
                iz = i1[:, 2] if cz else i0[:, 2]
                wz = u[:, 2] if cz else 1.0 - u[:, 2]
                grid += np.bincount((ix * n + iy) * n + iz, weights=w * wx * wy * wz,
                                    minlength=n**3)
    return grid.reshape(n, n, n)


def readout_cic(field: np.ndarray, pos: np.ndarray, box: float) -> np.ndarray:
    """Field values at ``pos`` by CIC interpolation (the transpose of CIC painting);
    ``field`` may carry leading component axes: (..., n, n, n) -> (N, ...)."""
    n = field.shape[-1]
    x = _cell_coordinates(pos, box, n)
    i0 = np.floor(x).astype(np.int64)
    u = x - i0
    i0 %= n
    i1 = (i0 + 1) % n
    out = 0.0
    for cx in (0, 1):
        ix, wx = (i1[:, 0], u[:, 0]) if cx else (i0[:, 0], 1.0 - u[:, 0])
        for cy in (0, 1):
            iy, wy = (i1[:, 1], u[:, 1]) if cy else (i0[:, 1], 1.0 - u[:, 1])
            for cz in (0, 1):
                iz, wz = (i1[:, 2], u[:, 2]) if cz else (i0[:, 2], 1.0 - u[:, 2])
                out = out + field[..., ix, iy, iz] * (wx * wy * wz)
    return np.moveaxis(np.asarray(out), -1, 0)


def overdensity(grid: np.ndarray) -> np.ndarray:
    """delta = grid / mean - 1."""
    return grid / grid.mean() - 1.0


def run_grids(dm_snapshot: str, dm_catalog: str, hydro_catalog: str, grid: int, mas: str,
              stellar_mass_min_msun_h: float) -> dict[str, np.ndarray | float]:
    """Voxel grids and halo/galaxy tables of one twin pair (simbridge.sims.camels reads them).

    dm_density: N-body dark-matter mass per voxel over the mean (1 + delta, ``mas``);
    galaxy_count: hydro galaxies (Subhalo stellar mass above the cut) per voxel (NGP);
    halos: the N-body run's groups (centre, M_200c, R_200c); galaxies: the hydro subhalos above
    the cut (position, stellar mass)."""
    from simbridge.sims import camels

    header = camels.read_header(dm_snapshot)
    box = float(header["BoxSize"]) * camels.KPC_TO_MPC
    dm = camels.read_particles(dm_snapshot, 1, ("Coordinates",))["Coordinates"]
    density = paint(dm, box, grid, mas=mas)
    halos = camels.read_group_catalog(dm_catalog, ("GroupPos", "GroupMass", "Group_M_Crit200",
                                                   "Group_R_Crit200"))
    subs = camels.read_group_catalog(hydro_catalog, (), ("SubhaloPos", "SubhaloMassType"))
    keep = subs["SubhaloMassType"][:, 4] >= stellar_mass_min_msun_h
    gal_pos = subs["SubhaloPos"][keep].reshape(-1, 3)
    counts = paint(gal_pos, box, grid, mas="NGP")
    return {"box_mpc_h": box, "dm_density": density / density.mean(),
            "galaxy_count": counts, "halo_pos": halos["GroupPos"].reshape(-1, 3),
            "halo_m200c": halos["Group_M_Crit200"], "halo_r200c": halos["Group_R_Crit200"],
            "halo_mass_fof": halos["GroupMass"], "galaxy_pos": gal_pos,
            "galaxy_mstar": subs["SubhaloMassType"][keep, 4],
            "omega_m": float(header["Omega0"])}


GRID_UNITS = {"dm_density": "1 + delta (dark-matter mass per voxel / mean)",
              "galaxy_count": "galaxies per voxel", "halo_pos": "Mpc/h (comoving)",
              "halo_m200c": "Msun/h", "halo_r200c": "Mpc/h (comoving)",
              "halo_mass_fof": "Msun/h", "galaxy_pos": "Mpc/h (comoving)",
              "galaxy_mstar": "Msun/h"}


def write_run_grids(path: str, grids: dict, config: dict, seed: int, inputs: list[str]) -> None:
    """One HDF5 file per run: the grids and tables with a unit attribute each, provenance."""
    import h5py

    from simbridge.io import atomic_output, write_provenance

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        for key, unit in GRID_UNITS.items():
            data = np.asarray(grids[key])
            kwargs = {"chunks": True, "compression": "gzip"} if data.ndim == 3 else {}
            ds = fh.create_dataset(key, data=data.astype(np.float32), **kwargs)
            ds.attrs["units"] = unit
        fh.attrs["box_mpc_h"] = grids["box_mpc_h"]
        fh.attrs["omega_m"] = grids["omega_m"]
        fh.attrs["run"] = grids["run"]
        write_provenance(fh, config, seed, inputs)


def read_run_grids(path: str) -> dict[str, np.ndarray | float]:
    """The arrays and box of a file of :func:`write_run_grids`."""
    from simbridge.errors import rebuild_fix
    from simbridge.io import open_hdf5

    with open_hdf5(path, "dm2gal voxel grid file", rebuild_fix(path, "dm2gal_voxels"),
                   required=tuple(GRID_UNITS)) as fh:
        # grids stay float32 in memory (256^3: 64 MB each); tables become float64
        out = {k: fh[k][()] if fh[k].ndim == 3 else fh[k][()].astype(np.float64)
               for k in GRID_UNITS}
        out["box_mpc_h"] = float(fh.attrs["box_mpc_h"])
        out["omega_m"] = float(fh.attrs["omega_m"])
        out["run"] = str(fh.attrs["run"])
    return out
