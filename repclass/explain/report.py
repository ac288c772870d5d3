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
img.logo { max-width: 420px; } img.kernel { max-width: 380px; } img.figure { max-width: 780px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; font-size: 0.9em; }
.warn { background: #fdecea; border-left: 4px solid #d93025; padding: 6px 10px; font-size: 0.9em; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
td.flag { color: #b26a00; font-weight: bold; }
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
    """A junction with each residue shaded by its residue attribution (red: raises the explained
    output relative to the blank sequence, blue: lowers it), scaled to the sequence's largest
    absolute attribution."""
    values = [float(v) for v in contributions.split(",")] if contributions else [0.0] * len(junction)
    scale = max((abs(v) for v in values), default=0.0) or 1.0
    spans = []
    for residue, value in zip(junction, values):
        alpha = min(1.0, abs(value) / scale)
        color = "214,39,40" if value >= 0 else "31,119,180"
        spans.append(f'<span style="background:rgba({color},{alpha:.2f})" title="{value:.4g}">'
                     f'{_escape(residue)}</span>')
    return f'<span class="seq">{"".join(spans)}</span>'


SPLIT_WORDS = {"train": "training", "validation": "validation (chose the model)", "test": "test (held out)",
               "new": "new (not in the training store)"}


def _link(name: str) -> str:
    """A link to a file of the output folder, relative to the report (which lies in it)."""
    return f'<a href="{_escape(name)}">{_escape(name)}</a>'


def _figure(folder: Path, name: str, alt: str) -> str:
    path = folder / "figures" / f"{name}.png"
    if not path.exists():
        return ""
    return (f'<figure>{_image(path, alt, "figure")}<figcaption><small>{_link(f"figures/{name}.png")}, '
            f'{_link(f"figures/{name}.svg")}</small></figcaption></figure>')


def _auc(value: Any, low: Any, high: Any) -> str:
    """An AUC with its bootstrap 95% interval beside it."""
    if value is None or low is None:
        return _value(value)
    return f"{_value(value)} (95% CI {_value(low)}&ndash;{_value(high)})"


def _small_sample(held: dict[str, Any]) -> str:
    from repclass.metrics import small_sample_note

    note = small_sample_note(held["n_class"], held["n"] - held["n_class"], held.get("roc_auc"))
    return f'<p class="note">{_escape(note[0].upper() + note[1:])}.</p>' if note else ""


def _value(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "&ndash;"
    if isinstance(value, float):
        return _number(value, digits)
    return _escape(value)


def _percent(value: Any) -> str:
    return "&ndash;" if value is None else f"{100 * value:.0f}%"


def _p_value(value: Any) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def _selection(summary: dict[str, Any], scores: pl.DataFrame, headline: str) -> str:
    evidence = summary.get("evidence", {})
    splits = evidence.get("splits", {})
    analysed = scores.filter(pl.col("analysed"))
    by_split = {s: analysed.filter(pl.col("split") == s)["sample_id"].to_list() for s in SPLIT_WORDS}
    if summary["selection"] == "given":
        how = "the repertoires named with --sample"
    elif summary["selection"] == "predicted, held out":
        how = (f"the held-out repertoires (the model's test split and repertoires it never saw) predicted "
               f"{headline}; --include-training adds the others")
    elif summary["settings"].get("include_training") and evidence.get("training_store") != "none":
        how = f"all repertoires predicted {headline}, training and validation ones included (--include-training)"
    else:
        how = f"the repertoires predicted {headline} (none of them is in the model's training store)"
    items = "".join(f"<li>{_escape(SPLIT_WORDS[s])}: {len(ids)} &mdash; {', '.join(_escape(i) for i in ids)}</li>"
                    for s, ids in by_split.items() if ids)
    relation = {"same": "this store is the model's training store (same fingerprint)",
                "overlapping ids": "this store shares repertoire ids with the model's training store, but is not "
                                   "the same store; the shared ids are counted as seen",
                "none": "no repertoire of this store is in the model's training store"}[
        evidence.get("training_store", "none")]
    counts = ", ".join(f"{n} {s}" for s, n in splits.items() if n)
    if evidence.get("cross_validation"):
        relation += (f"; a cross-validation folder of {evidence['cross_validation']} fold models: each repertoire is "
                     f"scored and explained by the fold model that held it out (its test fold), repertoires no fold "
                     f"has seen by fold 1; kernels: {_escape(summary['model'].get('kernels_from', ''))}")
    warn = ""
    seen = len(by_split["train"]) + len(by_split["validation"])
    if seen:
        warn = (f'<p class="warn">{seen} of the {analysed.height} analysed repertoires were used to fit or select '
                f'the model: motifs found there may reflect what it memorised.</p>')
    return (f"<p>Motifs were computed on {analysed.height} repertoires: {how}.</p><ul>{items}</ul>{warn}"
            f'<p class="meta">Scored: {scores.height} repertoires ({counts}); {relation}.</p>')


def _training_warnings(summary: dict[str, Any]) -> str:
    """What `repclass train` warned about the model's (or each fold model's) training, if anything."""
    paragraphs = []
    for entry in summary.get("evidence", {}).get("training_warnings", []):
        where = "Training" if entry["fold"] is None else f"Training, fold {entry['fold']}"
        paragraphs.append(f'<p class="warn">{where}: {html.escape(entry["warning"])}.</p>')
    return "".join(paragraphs)


def _metric_table(summary: dict[str, Any]) -> str:
    evidence = summary.get("evidence", {})
    recorded = evidence.get("model_metrics", {})
    intervals = evidence.get("model_metrics_intervals", {})
    names: list[str] = []
    for values in recorded.values():
        names += [k for k in values if k not in names and k != "n"]

    def cell(split: str, values: dict[str, Any], name: str) -> str:
        if name == "roc_auc" and split in intervals:
            return f'<td class="num">{_auc(values.get(name), *intervals[split])}</td>'
        return f'<td class="num">{_value(values.get(name))}</td>'

    rows = "".join(f'<tr><td>{_escape(split)}</td><td class="num">{_value(values.get("n"), 4)}</td>'
                   + "".join(cell(split, values, n) for n in names) + "</tr>"
                   for split, values in recorded.items())
    table = ""
    if rows:
        table = ('<p>Recorded when the model was trained (its own train / validation / test split; ROC AUC with '
                 "its stratified bootstrap 95% interval, from the model folder's predictions.tsv):</p><table><tr>"
                 '<th>split</th><th>repertoires</th>' + "".join(f"<th>{_escape(n.replace('_', ' '))}</th>"
                                                              for n in names) + f"</tr>{rows}</table>")
    held = evidence.get("held_out")
    if held:
        table += (f'<p>On the held-out repertoires of this store ({held["n"]}, {held["n_class"]} of class '
                  f'{_escape(summary["explained"]["class"])}): ROC AUC '
                  f'{_auc(held.get("roc_auc"), held.get("roc_auc_low"), held.get("roc_auc_high"))}, average '
                  f'precision {_value(held.get("average_precision"))} (every held-out repertoire: '
                  f'{_link("scores.tsv")}).</p>{_small_sample(held)}')
    else:
        table += '<p class="note">No labelled held-out repertoire in this store: no held-out performance.</p>'
    return table


def _confusion(summary: dict[str, Any]) -> str:
    held = summary.get("evidence", {}).get("held_out")
    if not held or not held.get("classes"):
        return ""
    classes = held["classes"]
    header = "".join(f"<th>predicted {_escape(c)}</th>" for c in classes)
    rows = "".join(f"<tr><th>label {_escape(c)}</th>" + "".join(f'<td class="num">{v}</td>' for v in row) + "</tr>"
                   for c, row in zip(classes, held["confusion"]))
    return (f'<p>Confusion matrix, held-out repertoires, at the decision threshold (probability 0.5; multiclass: '
            f'the most probable class):</p><table><tr><th></th>{header}</tr>{rows}</table>')


def _attention_text(summary: dict[str, Any]) -> str:
    attention = summary.get("evidence", {}).get("attention")
    if not attention:
        return ""
    top1, effective = attention["top1_weight"], attention["effective_n"]
    note = ""
    if top1["median"] is not None and top1["median"] > 0.5:
        note = ('<p class="note">Most predictions rest on about one sequence: the most attended sequence alone holds '
                'over half of the attention in most repertoires. A repertoire is then classified by whether its '
                'single best-matching sequence looks like the class.</p>')
    return (f'<p>Across {attention["n_repertoires"]} scored repertoires, the most attended sequence holds a median '
            f'{_value(top1["median"])} of the attention (10th-90th percentile {_value(top1["p10"])}-'
            f'{_value(top1["p90"])}; above 0.5 in {attention["top1_weight_above_0.5"]}); the effective number of '
            f'attended sequences (1 / &Sigma; w<sup>2</sup>) has median {_value(effective["median"])} '
            f'({_value(effective["p10"])}-{_value(effective["p90"])}).</p>{note}')


def _paths_text(summary: dict[str, Any]) -> str:
    paths = summary.get("evidence", {}).get("paths")
    gated = summary.get("evidence", {}).get("enrichment_off")
    if not paths and gated:
        which = ", ".join(f'{"fold " + str(g["fold"]) + ": " if g["fold"] else ""}held-out AUC '
                          f'{_value(g["held_out_auc"])} against a chance bound of {_value(g["chance_bound"])}'
                          for g in gated)
        return (f'<p>The enrichment path (each repertoire\'s share of clonotypes enriched in the positive training '
                f'repertoires) is off in this model: cross-fitted on the training split, it read the labels no better '
                f'than chance ({which}), so the prediction rests on the attention over sequences alone.</p>')
    if not paths:
        return ""
    share = paths["enrichment_share"]
    return (f'<p>This model has two paths: the attention over sequences explained on this page, and the enrichment '
            f'path (each repertoire\'s share of clonotypes enriched in the positive training repertoires). Across '
            f'{paths["n_repertoires"]} scored repertoires, the explained output\'s enrichment part has SD '
            f'{_value(paths["enrichment_sd"])} and its attention part SD {_value(paths["attention_sd"])}: the '
            f'enrichment path holds {_value(share)} of their summed variance (scores.tsv: '
            f'<code>enrichment_output</code> per repertoire). The motifs below explain only the attention part.</p>')


def _enrichment_cell(item: dict[str, Any], explained: dict[str, Any]) -> str:
    parts = []
    for key, scope in (("enrichment_held_out", "held out"), ("enrichment_all", "all labelled")):
        e = item.get(key)
        if not e or not (e["n_class"] or e["n_other"]):
            continue
        parts.append(f'{scope}: in {e["with_class"]}/{e["n_class"]} {_escape(explained["class"])} vs '
                     f'{e["with_other"]}/{e["n_other"]} other repertoires; mean share of sequences '
                     f'{_value(e["frequency_class"], 2)} vs {_value(e["frequency_other"], 2)}; '
                     f'p = {_p_value(e["p_value"])}')
    return "<br>".join(parts) or "&ndash;"


def _usage(pairs: list[list[Any]]) -> str:
    return ", ".join(f"{_escape(g)} {100 * f:.0f}%" for g, f in pairs) or "&ndash;"


def _motif_rows(summary: dict[str, Any], sequences: pl.DataFrame, folder: Path) -> str:
    evidence = {m["id"]: m for m in summary.get("evidence", {}).get("motifs", [])}
    rows = []
    for motif in summary["motifs"]:
        members = sequences.filter(pl.col("motif") == motif["id"]).head(MOTIF_EXAMPLES)
        examples = "<br>".join(
            f'{highlighted(r["junction_aa"], r["residue_contributions"])} '
            f'<small>{_escape(r["sample_id"])}, #{r["rank"]}</small>' for r in members.iter_rows(named=True))
        item = evidence.get(motif["id"], {})
        held = item.get("n_repertoires_held_out")
        disagree = item.get("n_sign_disagreements", 0)
        rows.append(
            f'<tr><td class="num">{motif["rank"]}</td>'
            f'<td>{_image(folder / motif["logo_png"], "logo of " + motif["id"], "logo")}</td>'
            f'<td class="consensus">{_escape(motif["consensus"])}</td>'
            f'<td class="num">{motif["n_sequences"]} sequences<br>{motif["n_repertoires"]} repertoires'
            + (f'<br>{held} held out' if held is not None else "") + "</td>"
            f'<td class="num">{_number(motif["total_contribution"])}'
            + (f'<br><small>{disagree} with residue attribution sum &lt; 0</small>' if disagree else "") + "</td>"
            f'<td><small>{_enrichment_cell(item, summary["explained"])}</small></td>'
            f'<td><small>V: {_usage(item.get("v_usage", []))}<br>J: {_usage(item.get("j_usage", []))}</small></td>'
            f'<td>{examples}</td></tr>')
    if not rows:
        return '<p>No motif: no attributed sequence contributes positively to the explained output.</p>'
    return ('<table><tr><th>#</th><th>logo (top: mean residue attribution, logit; bottom: information, bits)</th>'
            '<th>consensus</th><th>support</th><th>summed sequence contribution (logit)</th>'
            '<th>enrichment (one-sided Mann-Whitney on per-repertoire shares)</th><th>V / J usage of members</th>'
            '<th>top sequences of the motif</th></tr>' + "".join(rows) + "</table>")


def _sign_note(summary: dict[str, Any]) -> str:
    signs = summary.get("evidence", {}).get("sign_disagreements")
    if not signs or not signs["n"]:
        return ""
    return (f'<p class="note">Attention and integrated gradients disagree in sign for {signs["n"]} of the '
            f'{signs["n_positive"]} sequences with a positive sequence contribution (marked &Dagger; below): the '
            'sequence raises the output as a member of its repertoire, yet blanking its residues raises the output '
            'further. In a repertoire with several strong motif sequences, a weaker one dilutes the '
            'attention-weighted mean; blanked, it loses attention and the stronger ones gain. Its residues are '
            'then shaded blue although it belongs to the motif. The sequence contribution (attention) says whether '
            'a sequence matters; the residue attribution (integrated gradients) says which residues it matters '
            'through, relative to that blank sequence.</p>')


def _sequence_rows(sequences: pl.DataFrame) -> str:
    rows = []
    for r in sequences.head(TOP_ROWS).iter_rows(named=True):
        flag = "&Dagger;" if r["contribution"] > 0 and r["ig_delta"] < 0 else ""
        rows.append(
            f'<tr><td class="num">{r["rank"]}</td><td>{_escape(r["sample_id"])}</td>'
            f'<td>{highlighted(r["junction_aa"], r["residue_contributions"])}</td>'
            f'<td>{_escape(r["v_call"])}</td><td>{_escape(r["j_call"])}</td>'
            f'<td class="num">{r["duplicate_count"]}</td><td class="num">{_number(r["attention"])}</td>'
            f'<td class="num">{r["attention_rank"]}</td><td class="num">{_number(r["contribution"])}</td>'
            f'<td class="num">{_number(r["ig_delta"])}</td><td class="flag">{flag}</td>'
            f'<td>{_escape(r["motif"])}</td></tr>')
    return ('<table><tr><th>rank</th><th>sample</th><th>junction (residue attributions)</th><th>V</th><th>J</th>'
            '<th>count</th><th>attention weight</th><th>attention rank</th><th>sequence contribution (logit)</th>'
            '<th>residue attribution sum (logit)</th><th>sign</th><th>motif</th></tr>' + "".join(rows) + "</table>")


def _kernel_figures(summary: dict[str, Any], folder: Path) -> str:
    if "kernels_note" in summary:
        return f'<p class="meta">{_escape(summary["kernels_note"])}.</p>'
    figures = [f'<figure>{_image(folder / k["logo_png"], "kernel " + str(k["kernel"]), "kernel")}'
               f'<figcaption>rank {k["rank"]}: kernel index {k["kernel"]}, mean contribution '
               f'{_number(k["contribution"])} logit ({_link(k["logo_png"])})</figcaption></figure>'
               for k in summary["kernels"]]
    return f'<div class="kernels">{"".join(figures)}</div>'


def _truth_section(summary: dict[str, Any]) -> str:
    truth = summary.get("truth")
    if not truth:
        return ""
    rows = "".join(f'<tr><td class="num">{p["k"]}</td><td class="num">{_value(p["by_contribution"])}</td>'
                   f'<td class="num">{_value(p["by_attention"])}</td></tr>' for p in truth["precision_at_k"])
    mass = truth.get("attention_mass_on_implanted") or {}
    top = truth["top_motif"]
    verdict = "matches" if top["matches"] else "does not match"
    return (f'<h2>Against the implanted ground truth</h2><p>{truth["n_implanted_sequences"]} implanted sequences in '
            f'{truth["n_repertoires_with_implants"]} of the {truth["n_analysed_repertoires"]} analysed repertoires. '
            f'Top motif {_escape(top["consensus"])} {verdict} the implanted motif {_escape(top["implanted_motif"])} '
            f'({_percent(top["share_of_implants_matched"])} of the implanted sequences carry it at their implant '
            f'position). Recall of implanted sequences among their repertoire\'s top 50 by attention: '
            f'{_value(truth.get("recall_top50_attention"))}; attention mass on implanted sequences per repertoire: '
            f'mean {_value(mass.get("mean"))}, median {_value(mass.get("median"))}.</p>'
            f'<table><tr><th>k</th><th>precision@k by sequence contribution</th><th>precision@k by attention weight'
            f'</th></tr>{rows}</table><p class="meta">{_link("truth.json")}</p>')


def _definitions(summary: dict[str, Any]) -> str:
    ig = summary["integrated_gradients"]
    return f"""<dl>
<dt>Explained output (logit)</dt><dd>{_escape(summary["explained"]["description"])}, per repertoire: y = o(z), z the
attention-weighted mean of the embeddings of the repertoire's top-k sequences (the attention softmax's members),
plus, for a model with the count read-out, a E: E the log mean exp of the repertoire's attention logits, which
grows with its number of witness-like sequences, a a learned weight (repertoires.tsv's evidence_output).</dd>
<dt>Attention weight (share, 0-1)</dt><dd>w<sub>i</sub>: a sequence's share of its repertoire's attention softmax;
the weights of a repertoire sum to 1. Effective number of attended sequences: 1 / &Sigma; w<sub>i</sub><sup>2</sup>.
</dd>
<dt>Sequence contribution (logit)</dt><dd>w<sub>i</sub> (g &middot; h<sub>i</sub>): attention weight times the
embedding's projection on g, the output network's mean gradient on the path from z = 0 to z (for a linear output
layer, its weights). A repertoire's sequence contributions sum to y minus the output of an empty repertoire (the
bias) and minus a E, a term of the whole repertoire. A motif's summed sequence contribution adds those of its
members.</dd>
<dt>Residue attribution (logit)</dt><dd>Integrated gradients over the 20 one-hot amino-acid channels, baseline:
{_escape(ig["baseline"])}. A sequence's residue attributions sum to y(sequence) &minus; y(baseline) (the "residue
attribution sum"); worst relative error {_number(ig["worst_relative_error"])} over {ig["n_sequences"]} sequences
(tolerance {_number(ig["tolerance"])}; up to {ig["max_steps"]} quadrature steps). The logos' top panel shows the
mean residue attribution per member: far smaller than the sequence contributions, because blanking one sequence
changes little while others still hold attention.</dd>
<dt>Motifs</dt><dd>The {summary["settings"]["core_width"]}-residue window with the largest summed |residue
attribution| of each positively contributing sequence, clustered greedily in order of contribution (a window joins
the first cluster whose seed window it matches in all but one residue, shifted by at most
{summary["settings"]["max_shift"]}); ranked by summed sequence contribution; clusters under
{_number(summary["settings"]["min_motif_share"])} of the top motif's are not reported. The consensus spans the
columns (shaded in the logos) with at least {_number(summary["settings"]["trim_fraction"])} of the strongest column's
mean |residue attribution| (sizes, as for the windows), in lower case where fewer than half the members agree;
logos add {summary["settings"]["flank"]} flanking columns on each side. Bottom panel: information content of the
residue frequencies (bits).</dd>
<dt>Enrichment</dt><dd>Per labelled repertoire, the share of its sequences matching the consensus (lower-case
letters match any residue); one-sided Mann-Whitney test (exact when a group has at most 8 repertoires and
nothing ties, otherwise the normal approximation) that the share is higher in the explained class; computed on the held-out repertoires and on all labelled ones. Repertoires the model trained on
are not independent evidence.</dd>
<dt>Kernels</dt><dd>Ranked by mean g<sub>d</sub> z<sub>d</sub> over the analysed repertoires (logit); titled by
rank and kernel index. Weights centred per position (only differences between amino acids matter for one-hot
input); only residues with a positive weight of at least a quarter of the kernel's largest are drawn, the weights of
the 3 position features below.</dd>
<dt>Held out</dt><dd>The model's test split, and repertoires not in its training store. The validation split chose
the model (early stopping) and is not held out.</dd>
</dl>"""


def build_report(summary: dict[str, Any], sequences: pl.DataFrame, folder: Path,
                 scores: pl.DataFrame | None = None) -> str:
    """The report's HTML; logos and figures are read from `folder` (the output folder)."""
    explained = summary["explained"]
    headline = (f'{_escape(explained["target"])} = {_escape(explained["class"])}' if explained["class"] is not None
                else _escape(explained["target"]))
    if scores is None:
        scores = pl.read_csv(folder / "scores.tsv", separator="\t", schema_overrides={"label": pl.String})
    meta = (f'model {_escape(summary["model"]["file"])} (sha256 {summary["model"]["sha256"][:12]}), store '
            f'{_escape(summary["store"]["name"])}; repclass {_escape(summary["repclass_version"])}.')
    legend = ('<p class="legend">Residues shaded by residue attribution: <span style="background:rgba(214,39,40,0.8)">'
              'raises the explained output</span> <span style="background:rgba(31,119,180,0.8)">lowers it</span> '
              "(relative to the same sequence blanked), scaled to the sequence's strongest residue.</p>")
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
<h2>Which repertoires</h2>
{_selection(summary, scores, headline)}
<h2>How good the model is</h2>
{_training_warnings(summary)}
{_metric_table(summary)}
<div class="figures">{_figure(folder, "roc_pr", "ROC and precision-recall curves")}</div>
{_confusion(summary)}
<div class="figures">{_figure(folder, "scores", "per-repertoire scores")}{_figure(folder, "training_curve",
                                                                                   "training curve")}</div>
<h2>How much each prediction rests on few sequences</h2>
{_attention_text(summary)}{_paths_text(summary)}
<div class="figures">{_figure(folder, "attention", "attention concentration")}</div>
<h2>Motifs</h2>
{legend}
{_motif_rows(summary, sequences, folder)}
{_sign_note(summary)}
{_truth_section(summary)}
<h2>Top sequences by sequence contribution</h2>
{_sequence_rows(sequences)}
<p class="meta">All {sequences.height} attributed sequences: {_link("sequences.tsv")} (as AIRR rearrangements:
{_link("sequences.airr.tsv")}). Per analysed repertoire: {_link("repertoires.tsv")}. Every scored repertoire (split,
label, score, attention): {_link("scores.tsv")}. Motifs: {_link("motifs.tsv")}; their matrices and the numbers above:
{_link("motifs.json")}. Logos: {_link("logos/")}; figures: {_link("figures/")} (PNG and SVG).</p>
<h2>Most contributing convolution kernels</h2>
{_kernel_figures(summary, folder)}
<h2>Definitions</h2>
{_definitions(summary)}
</body>
</html>
"""


def write_report(path: Path, summary: dict[str, Any], sequences: pl.DataFrame,
                 scores: pl.DataFrame | None = None) -> Path:
    path.write_text(build_report(summary, sequences, path.parent, scores), encoding="utf-8")
    return path
