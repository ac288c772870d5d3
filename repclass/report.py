"""The one-page HTML report of `repclass motifs`: self-contained, deterministic bytes.

Built only from what the command writes (the motifs.json content, the sequences table and the
PNG logos, embedded as base64), so it can be rebuilt from an output folder and opened anywhere
without another file or a network connection. No dates, no absolute paths.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import polars as pl

#: Rows of the top-sequences table.
TOP_ROWS = 30
#: Member sequences shown beside each motif.
MOTIF_EXAMPLES = 5

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; line-height: 1.35; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.seq { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: nowrap; }
.seq span { padding: 0 1px; }
.consensus { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 1.2em; font-weight: bold; }
img.logo { max-width: 420px; } img.kernel { max-width: 380px; }
.kernels { display: flex; flex-wrap: wrap; gap: 12px; }
.legend span { padding: 0 4px; }
dt { font-weight: bold; margin-top: 0.5em; }
"""


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _image(path: Path, alt: str, css: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{css}" alt="{_escape(alt)}" src="data:image/png;base64,{data}">'


def highlighted(junction: str, contributions: str) -> str:
    """A junction with each residue shaded by its contribution (red: for the class, blue: against),
    scaled to the sequence's largest absolute contribution."""
    values = [float(v) for v in contributions.split(",")] if contributions else [0.0] * len(junction)
    scale = max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for residue, value in zip(junction, values):
        alpha = min(1.0, abs(value) / scale)
        color = "214,39,40" if value >= 0 else "31,119,180"
        spans.append(f'<span style="background:rgba({color},{alpha:.2f})" title="{value:.4g}">'
                     f'{_escape(residue)}</span>')
    return f'<span class="seq">{"".join(spans)}</span>'


def _motif_rows(summary: dict[str, Any], sequences: pl.DataFrame, folder: Path) -> str:
    rows = []
    for motif in summary["motifs"]:
        members = sequences.filter(pl.col("motif") == motif["id"]).head(MOTIF_EXAMPLES)
        examples = "<br>".join(
            f'{highlighted(r["junction_aa"], r["residue_contributions"])} '
            f'<small>{_escape(r["sample_id"])}, #{r["rank"]}</small>' for r in members.iter_rows(named=True))
        rows.append(
            f'<tr><td class="num">{motif["rank"]}</td>'
            f'<td>{_image(folder / motif["logo_png"], "logo of " + motif["id"], "logo")}</td>'
            f'<td class="consensus">{_escape(motif["consensus"])}</td>'
            f'<td class="num">{motif["n_sequences"]} sequences<br>{motif["n_repertoires"]} repertoires</td>'
            f'<td class="num">{_number(motif["total_contribution"])}</td>'
            f'<td>{examples}</td></tr>')
    if not rows:
        return '<p>No motif: no attributed sequence contributes positively to the explained output.</p>'
    return ('<table><tr><th>#</th><th>logo (contribution; information)</th><th>consensus</th><th>support</th>'
            '<th>total contribution</th><th>top sequences of the motif</th></tr>' + "".join(rows) + "</table>")


def _sequence_rows(sequences: pl.DataFrame) -> str:
    rows = []
    for r in sequences.head(TOP_ROWS).iter_rows(named=True):
        rows.append(
            f'<tr><td class="num">{r["rank"]}</td><td>{_escape(r["sample_id"])}</td>'
            f'<td>{highlighted(r["junction_aa"], r["residue_contributions"])}</td>'
            f'<td>{_escape(r["v_call"])}</td><td>{_escape(r["j_call"])}</td>'
            f'<td class="num">{r["duplicate_count"]}</td><td class="num">{_number(r["attention"])}</td>'
            f'<td class="num">{r["attention_rank"]}</td><td class="num">{_number(r["contribution"])}</td>'
            f'<td class="num">{_number(r["ig_delta"])}</td><td>{_escape(r["motif"])}</td></tr>')
    return ('<table><tr><th>rank</th><th>sample</th><th>junction (residue contributions)</th><th>V</th><th>J</th>'
            '<th>count</th><th>attention</th><th>attention rank</th><th>contribution</th><th>IG total</th>'
            '<th>motif</th></tr>' + "".join(rows) + "</table>")


def _kernel_figures(summary: dict[str, Any], folder: Path) -> str:
    figures = [f'<figure>{_image(folder / k["logo_png"], "kernel " + str(k["kernel"]), "kernel")}'
               f'<figcaption>#{k["rank"]}: kernel {k["kernel"]}, contribution {_number(k["contribution"])}'
               f'</figcaption></figure>' for k in summary["kernels"]]
    return f'<div class="kernels">{"".join(figures)}</div>'


def _definitions(summary: dict[str, Any]) -> str:
    ig = summary["integrated_gradients"]
    return f"""<dl>
<dt>Explained output</dt><dd>{_escape(summary["explained"]["description"])}, per repertoire: y = o(z), z the
attention-weighted mean of the embeddings of the repertoire's top-k sequences (the attention softmax's members).</dd>
<dt>Contribution of a sequence</dt><dd>w<sub>i</sub> (g &middot; h<sub>i</sub>): attention weight times the
embedding's projection on g, the output network's mean gradient on the path from z = 0 to z (for a linear output
layer, its weights). Contributions sum to y minus the output of an empty repertoire (the bias).</dd>
<dt>Residue contributions</dt><dd>Integrated gradients over the 20 one-hot amino-acid channels, baseline:
{_escape(ig["baseline"])}. They sum to y(sequence) &minus; y(baseline) (the "IG total" column); worst relative
error {_number(ig["worst_relative_error"])} over {ig["n_sequences"]} sequences (tolerance
{_number(ig["tolerance"])}; up to {ig["max_steps"]} quadrature steps).</dd>
<dt>Motifs</dt><dd>The {summary["settings"]["core_width"]}-residue window with the largest summed |residue
contribution| of each positively contributing sequence, clustered greedily in order of contribution (a window joins
the first cluster whose seed window it matches in all but one residue, shifted by at most
{summary["settings"]["max_shift"]}); ranked by total contribution of the members; clusters under
{_number(summary["settings"]["min_motif_share"])} of the top motif's total are not reported. The consensus spans the columns
(shaded in the logos) with at least {_number(summary["settings"]["trim_fraction"])} of the strongest column's
contribution, in lower case where fewer than half the members agree; logos add {summary["settings"]["flank"]}
flanking columns on each side. Top panel: mean residue contribution per member (letters below the axis argue against
the class); bottom panel: information content of the residue frequencies.</dd>
<dt>Kernels</dt><dd>Ranked by mean g<sub>d</sub> z<sub>d</sub> over the analysed repertoires; weights centred per
position (only differences between amino acids matter for one-hot input).</dd>
</dl>"""


def build_report(summary: dict[str, Any], sequences: pl.DataFrame, folder: Path) -> str:
    """The report's HTML; logos are read from `folder` (the output folder)."""
    explained = summary["explained"]
    headline = (f'{_escape(explained["target"])} = {_escape(explained["class"])}' if explained["class"] is not None
                else _escape(explained["target"]))
    selection = ("repertoires named with --sample" if summary["selection"] == "given"
                 else f"repertoires predicted {headline}")
    samples = ", ".join(_escape(s) for s in summary["samples"])
    meta = (f'model {_escape(summary["model"]["file"])} (sha256 {summary["model"]["sha256"][:12]}), store '
            f'{_escape(summary["store"]["name"])}; {len(summary["samples"])} {selection}: {samples}. '
            f'repclass {_escape(summary["repclass_version"])}.')
    legend = ('<p class="legend">Residues: <span style="background:rgba(214,39,40,0.8)">for the class</span> '
              '<span style="background:rgba(31,119,180,0.8)">against it</span>, shaded relative to the '
              "sequence's strongest residue.</p>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>repclass motifs: {headline}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Motifs behind {headline}</h1>
<p class="meta">{meta}</p>
<h2>Motifs</h2>
{legend}
{_motif_rows(summary, sequences, folder)}
<h2>Top sequences by contribution</h2>
{_sequence_rows(sequences)}
<p class="meta">All {sequences.height} attributed sequences: sequences.tsv. Per repertoire: repertoires.tsv. Motif
matrices: motifs.json. Logos as PNG and SVG: logos/.</p>
<h2>Most contributing convolution kernels</h2>
{_kernel_figures(summary, folder)}
<h2>Definitions</h2>
{_definitions(summary)}
</body>
</html>
"""


def write_report(path: Path, summary: dict[str, Any], sequences: pl.DataFrame) -> Path:
    path.write_text(build_report(summary, sequences, path.parent), encoding="utf-8")
    return path
