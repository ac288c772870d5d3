"""`simulate_cohort`: a simulated cohort written as files (AIRR repertoires, samples.tsv,
implanted.tsv, simulation.json), published atomically."""
from __future__ import annotations

import gzip
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repclass._version import __version__
from repclass.errors import UsageError
from repclass.simulation.cohort import iter_repertoires, plan_cohort, resolved_config, samples_schema
from repclass.simulation.config import SimulationConfig

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

GZIP_LEVEL = 3  # much faster than the default 6 on repertoire text, for slightly larger files (docs/method.md)


@dataclass
class SimulationResult:
    """What `simulate_cohort` wrote."""

    path: Path
    samples_path: Path
    implanted_path: Path
    repertoire_dir: Path
    n_repertoires: int
    n_positive: int
    n_implanted: int                    # witness implants (in positives)
    n_noise_implants: int               # broken-motif implants (in negatives)
    motifs: tuple[str, ...]
    witness_rates: dict[str, float] = field(default_factory=dict)  # positive sample id -> realised rate
    n_nonproductive: int = 0            # non-productive rows, all repertoires

    @property
    def mean_witness_rate(self) -> float:
        return float(np.mean(list(self.witness_rates.values()))) if self.witness_rates else 0.0


def _tsv_bytes(frame: "pl.DataFrame") -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, separator="\t", quote_style="never", float_precision=8)
    return buffer.getvalue()


def simulate_cohort(out: str | Path, config: SimulationConfig, *, force: bool = False,
                    threads: int | None = None) -> SimulationResult:
    """Simulate a cohort and write it under `out` (built in a temporary sibling, renamed at the end).

    An existing `out` is refused unless `force`, and `force` only replaces a simulated cohort
    (files.Outputs: the rules every command follows). `threads` repertoires (default: one per core) are
    simulated at once; the files do not depend on it.
    """
    import polars as pl

    from repclass.io.airr import airr_rearrangements, airr_tsv_bytes
    from repclass.files import Output, Outputs
    from repclass.simulation import vdj

    out = Path(out)
    config = resolved_config(config)
    plan = plan_cohort(config)
    if config.whole_repertoires:  # the store's ids name the repertoire files
        for sample_id in plan.sample_ids:
            if "/" in sample_id or "\\" in sample_id or sample_id in (".", ".."):
                raise UsageError(f"{config.background_store}: sample id {sample_id!r} cannot name a repertoire "
                                 "file; ingest the store again with ids without '/' or '\\'")
    # files.py's lifecycle: --force only replaces a simulated cohort, never the --background store
    # (or anything inside or around it), one run per --out at a time, written in a temporary
    # folder and published at the end.
    inputs = [config.background_store] if config.background_store is not None else []
    with Outputs([Output(out, "simulation")], inputs=inputs, force=force) as claimed:
        temporary = claimed.temporary(out)
        (temporary / "repertoires").mkdir(parents=True)
        rows, implanted = [], []
        for repertoire, implants, row in iter_repertoires(config, plan, threads):
            airr = airr_rearrangements(repertoire.with_columns(pl.lit(row["sample_id"]).alias("repertoire_id")),
                                       repertoire_column="repertoire_id")
            data = gzip.compress(airr_tsv_bytes(airr), compresslevel=GZIP_LEVEL, mtime=0)
            (temporary / "repertoires" / f"{row['sample_id']}.tsv.gz").write_bytes(data)
            rows.append(row)
            implanted.append(implants)
        samples = pl.DataFrame(rows, schema=samples_schema(config))
        implanted_table = pl.concat(implanted)
        (temporary / "samples.tsv").write_bytes(_tsv_bytes(samples))
        (temporary / "implanted.tsv").write_bytes(_tsv_bytes(implanted_table))
        motifs = plan.motifs
        described = {"config": config.to_json(), "motifs": list(motifs), "repclass_version": __version__,
                     "numpy_version": np.__version__, "polars_version": pl.__version__}
        if config.background_store is None:
            described["olga_version"] = vdj.olga_version()
        (temporary / "simulation.json").write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")
        claimed.publish()
    positives = samples.filter(pl.col("status") == "+")
    result = SimulationResult(
        path=out, samples_path=out / "samples.tsv", implanted_path=out / "implanted.tsv",
        repertoire_dir=out / "repertoires", n_repertoires=samples.height, n_positive=positives.height,
        n_implanted=int(samples["witnesses"].sum()), n_noise_implants=int(samples["noise_implants"].sum()),
        motifs=motifs, witness_rates=dict(zip(positives["sample_id"], positives["witness_rate"])),
        n_nonproductive=int(samples["nonproductive_rows"].sum()) if "nonproductive_rows" in samples.columns else 0,
    )
    log.info("wrote %s: %d repertoires (%d positive), %d witness and %d noise implants, %d non-productive rows",
             out, result.n_repertoires, result.n_positive, result.n_implanted, result.n_noise_implants,
             result.n_nonproductive)
    return result
