"""Rule dm2gal_voxels: voxel grids and halo/galaxy tables of one twin pair."""

from simbridge.extract.voxels import run_grids, write_run_grids
from simbridge.logs import job_logging
from simbridge.sims.camels import find_twin_files

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    cfg = sm.params.settings
    camels, settings = cfg["camels"], cfg["dm2gal"]
    dm, hydro = find_twin_files(sm.params.base_path, camels["suite"], sm.wildcards.run,
                                camels["snapshot"], camels["box"])
    grids = run_grids(str(dm.snapshot), str(dm.catalog), str(hydro.catalog), settings["grid"],
                      settings["mass_assignment"], settings["stellar_mass_min_msun_h"])
    grids["run"] = sm.wildcards.run
    write_run_grids(sm.output[0], grids, cfg, cfg["seed"],
                    [str(dm.snapshot), str(dm.catalog), str(hydro.catalog)])
