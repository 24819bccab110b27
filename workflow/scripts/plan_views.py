"""Rule plan_views: lines of sight per galaxy (balancing)."""

from simbridge.dataset.balance import write_view_plan
from simbridge.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    sm = snakemake  # noqa: F821
    write_view_plan(sm.input, sm.params.balancing, sm.output.plan, sm.output.summary)
