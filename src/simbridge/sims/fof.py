"""Friends-of-friends halos in a periodic box (scipy cKDTree pairs + connected components),
and spherical-overdensity masses M_200c around their centres."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: critical density today in (Msun/h) / (Mpc/h)^3
RHO_CRIT_MSUN_H_MPC_H3 = 2.775e11


def friends_of_friends(pos: np.ndarray, box: float, linking_length: float,
                       min_members: int = 20) -> np.ndarray:
    """Group label of every particle (-1: in no group of at least ``min_members``).

    Groups are numbered by decreasing size (0 = largest), ties by lowest particle index.
    ``pos`` and ``box`` in the same units; periodic in every dimension.
    """
    pos = np.mod(np.asarray(pos, dtype=np.float64), box)
    n = len(pos)
    tree = cKDTree(pos, boxsize=box)
    pairs = tree.query_pairs(linking_length, output_type="ndarray")
    graph = sparse.coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                              shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    sizes = np.bincount(raw)
    first = np.full(len(sizes), n, dtype=np.int64)
    np.minimum.at(first, raw, np.arange(n))
    keep = np.flatnonzero(sizes >= min_members)
    keep = keep[np.lexsort((first[keep], -sizes[keep]))]
    labels = np.full(len(sizes), -1, dtype=np.int64)
    labels[keep] = np.arange(len(keep))
    return labels[raw]


def periodic_centre(pos: np.ndarray, box: float) -> np.ndarray:
    """Mean position of a compact set of points in a periodic box (unwrapped around one point)."""
    ref = pos[0]
    d = (pos - ref + 0.5 * box) % box - 0.5 * box
    return (ref + d.mean(axis=0)) % box


def group_properties(pos: np.ndarray, labels: np.ndarray, particle_mass: float, box: float,
                     ) -> dict[str, np.ndarray]:
    """Per group: FoF mass, length, centre (its densest member), M_200c and R_200c.

    Units: positions Mpc/h, masses Msun/h. M_200c is the mass within the largest radius
    around the centre enclosing a mean density of 200 rho_crit (0 if none does).
    """
    n_groups = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    pos = np.mod(pos, box)
    tree = cKDTree(pos, boxsize=box)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(n_groups))
    ends = np.searchsorted(sorted_labels, np.arange(n_groups), side="right")
    centre = np.zeros((n_groups, 3))
    length = (ends - starts).astype(np.int64)
    m200 = np.zeros(n_groups)
    r200 = np.zeros(n_groups)
    for g in range(n_groups):
        members = pos[order[starts[g]:ends[g]]]
        c = periodic_centre(members, box)
        d = np.linalg.norm((members - c + 0.5 * box) % box - 0.5 * box, axis=1)
        # the member with the most members near it stands in for the potential minimum
        spread = max(float(np.median(d)), 1e-3)
        local = cKDTree(members, boxsize=box).query_ball_point(members, 0.5 * spread,
                                                              return_length=True)
        c = members[int(np.argmax(local))]
        d = np.linalg.norm((members - c + 0.5 * box) % box - 0.5 * box, axis=1)
        centre[g] = c
        r_max = max(4.0 * np.percentile(d, 90), 1e-3)
        near = tree.query_ball_point(c, r_max)
        r = np.sort(np.linalg.norm((pos[near] - c + 0.5 * box) % box - 0.5 * box, axis=1))
        r = np.maximum(r, 1e-6)
        mean_density = particle_mass * np.arange(1, len(r) + 1) / (4.0 / 3.0 * np.pi * r**3)
        inside = np.flatnonzero(mean_density >= 200.0 * RHO_CRIT_MSUN_H_MPC_H3)
        if len(inside):
            k = inside[-1]
            m200[g], r200[g] = particle_mass * (k + 1), r[k]
    return {"centre": centre, "length": length, "mass": length * particle_mass,
            "m200c": m200, "r200c": r200}
