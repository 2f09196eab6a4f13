"""An error-analysis page: gold and predicted entities side by side.

    python scripts/reports/error_page.py PIPELINE DEV.spacy OUT.html [--limit N]

`spacy project run evaluate` writes it as metrics/<config>_errors.html (from
the calibrated pipeline when there is one). For each doc with an error, the
gold entities and the predicted ones (with their scores) are shown side by
side, and each error is marked by its kind (spacy_tokclf.metrics.classify_errors):

- missed: a gold entity that no prediction overlaps;
- spurious: a prediction that overlaps no gold entity;
- wrong type: the span of a gold entity with another type;
- wrong boundary: overlaps a gold entity without its span (type right or not).

The counts per kind are at the top; clicking a kind shows only the docs that
have it. `python scripts/reports/check_error_page.py` opens the page in headless
Chromium, checks what it shows and takes a screenshot.
"""
import argparse
import html
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import bare_doc, read_docs
from spacy_tokclf.metrics import ERROR_KINDS, classify_errors, count_error_kinds

KIND_CLASS = {
    "missed": "missed",
    "spurious": "spurious",
    "wrong type": "wtype",
    "wrong boundary": "wbound",
}

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
.sub { color: #555; margin-bottom: 14px; font-size: 14px; }
table.counts { border-collapse: collapse; margin-bottom: 10px; }
table.counts td, table.counts th { border: 1px solid #ccc; padding: 5px 12px; font-size: 14px;
       text-align: right; background: #fff; }
table.counts th { background: #eee; }
table.counts tr.kind { cursor: pointer; }
table.counts tr.kind:hover td { background: #f0f4ff; }
table.counts tr.active td { background: #dde6ff; }
.legend span { margin-right: 14px; font-size: 13px; }
.doc { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 12px 0;
       padding: 8px 12px; }
.doc h2 { font-size: 13px; color: #666; margin: 0 0 6px 0; font-weight: normal; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.col h3 { font-size: 12px; text-transform: uppercase; color: #888; margin: 0 0 4px 0; }
.text { line-height: 2.1; font-size: 15px; }
.ent { padding: 2px 4px; border-radius: 4px; border: 2px solid transparent; }
.ent .lab { font-size: 10px; font-weight: bold; margin-left: 3px; color: #333;
            text-transform: uppercase; }
.ent .score { font-size: 10px; margin-left: 3px; color: #333; }
.ok { background: #d8f0d8; border-color: #8c8; }
.gold { background: #e4e4f4; border-color: #99c; }
.missed { background: #ffd9d9; border-color: #d33; border-style: dashed; }
.spurious { background: #ffe0b3; border-color: #e68a00; }
.wtype { background: #e8d5f5; border-color: #8e44ad; }
.wbound { background: #cfe8f7; border-color: #2980b9; }
ul.errs { margin: 6px 0 0 0; padding-left: 18px; font-size: 13px; }
ul.errs li { margin: 2px 0; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 11px;
       font-weight: bold; margin-right: 6px; border: 1px solid; }
.hidden { display: none; }
"""

SCRIPT = """
document.querySelectorAll('tr.kind').forEach(function (row) {
  row.addEventListener('click', function () {
    var kind = row.dataset.kind;
    var active = row.classList.contains('active');
    document.querySelectorAll('tr.kind').forEach(function (r) { r.classList.remove('active'); });
    document.querySelectorAll('.doc').forEach(function (d) {
      var show = active || d.dataset.kinds.split(' ').indexOf(kind) >= 0;
      d.classList.toggle('hidden', !show);
    });
    if (!active) { row.classList.add('active'); }
  });
});
// page.html#only=KIND opens the page filtered to one kind (missed, spurious, wtype, wbound).
var only = /only=([a-z]+)/.exec(location.hash);
if (only) {
  var row = document.querySelector('tr.kind[data-kind="' + only[1] + '"]');
  if (row) { row.click(); }
}
"""


def doc_record(
    words: Sequence[str],
    spaces: Sequence[bool],
    gold: Sequence,
    predicted: Sequence,
    name: str = "",
) -> Dict:
    """One doc for the page: its tokens, gold spans (start, end, label) and
    predicted spans (start, end, label, score)."""
    return {
        "name": name,
        "words": list(words),
        "spaces": [bool(s) for s in spaces],
        "gold": [tuple(g[:3]) for g in gold],
        "pred": [tuple(p[:4]) for p in predicted],
    }


def analyse(records: Sequence[Dict]) -> List[Dict]:
    """classify_errors for each record, kept beside it."""
    out = []
    for record in records:
        result = classify_errors(record["gold"], record["pred"])
        out.append({**record, **result})
    return out


def render_page(records: Sequence[Dict], title: str, limit: Optional[int] = None) -> str:
    """The HTML page (self-contained: inline CSS and a few lines of script)."""
    analysed = analyse(records)
    errors = [e for r in analysed for e in r["errors"]]
    counts = count_error_kinds(errors)
    with_errors = [r for r in analysed if r["errors"]]
    n_pred = sum(len(r["pred"]) for r in analysed)
    n_gold = sum(len(r["gold"]) for r in analysed)
    n_right = sum(len(r["right"]) for r in analysed)
    shown = with_errors if limit is None else with_errors[:limit]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="sub">{len(analysed)} docs, {len(with_errors)} with an error '
        f"(shown: {len(shown)}). {n_gold} gold entities, {n_pred} predicted, "
        f"{n_right} right (precision {_pct(n_right, n_pred)}, recall "
        f"{_pct(n_right, n_gold)}).</div>",
        _counts_table(counts, analysed),
        '<div class="legend">'
        + '<span class="ent ok">right</span>'
        + "".join(
            f'<span class="ent {KIND_CLASS[k]}">{html.escape(k)}</span>' for k in ERROR_KINDS
        )
        + '<span class="ent gold">gold (found or overlapped)</span></div>',
        '<script type="application/json" id="counts">'
        + json.dumps({"counts": counts, "docs_with_errors": len(with_errors), "shown": len(shown)})
        + "</script>",
    ]
    for i, record in enumerate(shown):
        parts.append(_doc_block(record, i))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_error_page(records: Sequence[Dict], path: Path, title: str, limit: Optional[int] = None) -> Dict[str, int]:
    """Write the page; RETURNS the counts per kind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(records, title, limit), encoding="utf8")
    errors = [e for r in analyse(records) for e in r["errors"]]
    return count_error_kinds(errors)


def _score(score: Optional[float]) -> str:
    return f", {score:.2f}" if score is not None else ""


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f} %" if b else "n/a"


def _counts_table(counts: Dict[str, int], analysed: Sequence[Dict]) -> str:
    docs_with = {k: sum(1 for r in analysed if any(e["kind"] == k for e in r["errors"])) for k in counts}
    rows = ['<table class="counts"><tr><th style="text-align:left">error kind</th>'
            "<th>errors</th><th>docs</th></tr>"]
    for kind, n in counts.items():
        rows.append(
            f'<tr class="kind" data-kind="{KIND_CLASS[kind]}" id="count-{KIND_CLASS[kind]}">'
            f'<td style="text-align:left"><span class="ent {KIND_CLASS[kind]}">{html.escape(kind)}</span></td>'
            f"<td>{n}</td><td>{docs_with[kind]}</td></tr>"
        )
    rows.append(f'<tr><th style="text-align:left">all</th><th>{sum(counts.values())}</th>'
                f"<th>{sum(1 for r in analysed if r['errors'])}</th></tr></table>")
    return "".join(rows)


def _doc_block(record: Dict, index: int) -> str:
    words, spaces = record["words"], record["spaces"]
    gold_class: Dict[tuple, str] = {}
    pred_class: Dict[tuple, str] = {}
    for p in record["right"]:
        pred_class[tuple(p[:3])] = "ok"
    for e in record["errors"]:
        cls = KIND_CLASS[e["kind"]]
        if e["pred"] is not None:
            pred_class[tuple(e["pred"][:3])] = cls
        if e["kind"] == "missed":
            gold_class[tuple(e["gold"][0][:3])] = "missed"
    gold_spans = [(g[0], g[1], g[2], None, gold_class.get(tuple(g[:3]), "gold")) for g in record["gold"]]
    pred_spans = [(p[0], p[1], p[2], p[3], pred_class.get(tuple(p[:3]), "ok")) for p in record["pred"]]
    kinds = sorted({KIND_CLASS[e["kind"]] for e in record["errors"]})
    items = []
    for e in sorted(record["errors"], key=lambda e: (e["pred"] or e["gold"][0])[0]):
        cls = KIND_CLASS[e["kind"]]
        what = e["kind"] + (" + type" if e["kind"] == "wrong boundary" and e["type_differs"] else "")
        pred = (
            f"predicted <b>{html.escape(_text(words, spaces, e['pred']))}</b> "
            f"[{html.escape(e['pred'][2])}{_score(e['pred'][3])}]"
            if e["pred"] is not None else "predicted nothing"
        )
        gold = "; ".join(
            f"<b>{html.escape(_text(words, spaces, g))}</b> [{html.escape(g[2])}]" for g in e["gold"]
        ) or "no gold entity"
        items.append(f'<li><span class="tag {cls}">{html.escape(what)}</span>{pred}; gold: {gold}</li>')
    name = html.escape(record.get("name") or f"doc {index}")
    return (
        f'<div class="doc" data-kinds="{" ".join(kinds)}"><h2>{name}</h2><div class="cols">'
        f'<div class="col"><h3>gold</h3><div class="text">{_render(words, spaces, gold_spans)}</div></div>'
        f'<div class="col"><h3>predicted (score)</h3><div class="text">{_render(words, spaces, pred_spans)}</div></div>'
        f'</div><ul class="errs">{"".join(items)}</ul></div>'
    )


def _text(words: Sequence[str], spaces: Sequence[bool], span: Sequence) -> str:
    start, end = span[0], span[1]
    return "".join(w + (" " if s else "") for w, s in zip(words[start:end], spaces[start:end])).strip()


def _render(words: Sequence[str], spaces: Sequence[bool], spans: Sequence[tuple]) -> str:
    """The doc's text with spans (start, end, label, score or None, css class)
    marked; spans do not overlap."""
    by_start = {s[0]: s for s in spans}
    out: List[str] = []
    i = 0
    while i < len(words):
        span = by_start.get(i)
        if span is None:
            out.append(html.escape(words[i]) + (" " if spaces[i] else ""))
            i += 1
            continue
        start, end, label, score, cls = span
        score_html = f'<span class="score">{score:.2f}</span>' if score is not None else ""
        out.append(
            f'<span class="ent {cls}">{html.escape(_text(words, spaces, span))}'
            f'<span class="lab">{html.escape(label)}</span>{score_html}</span>'
            + (" " if spaces[end - 1] else "")
        )
        i = end
    return "".join(out)


def predicted_records(nlp, gold_docs: Sequence, component: Optional[str] = None) -> List[Dict]:
    """Run a pipeline on the gold docs' tokens; one record per doc, with each
    predicted entity's score from doc.spans[spans_key]."""
    from spacy_tokclf.calibration.data import find_component

    key = find_component(nlp, component).cfg["spans_key"]
    docs = (bare_doc(nlp.vocab, g) for g in gold_docs)
    records = []
    for i, (gold, doc) in enumerate(zip(gold_docs, nlp.pipe(docs, batch_size=256))):
        group = doc.spans[key]
        scores = group.attrs.get("scores", [None] * len(group))
        records.append(
            doc_record(
                [t.text for t in doc],
                [bool(t.whitespace_) for t in doc],
                [(e.start, e.end, e.label_) for e in gold.ents],
                [(s.start, s.end, s.label_, float(x)) for s, x in zip(group, scores)],
                name=f"dev doc {i}",
            )
        )
    return records


if __name__ == "__main__":
    import spacy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline")
    parser.add_argument("dev")
    parser.add_argument("output")
    parser.add_argument("--component", default=None)
    parser.add_argument("--limit", type=int, default=None, help="show at most N docs with errors")
    args = parser.parse_args()
    nlp = spacy.load(args.pipeline)
    gold_docs = read_docs(Path(args.dev), vocab=nlp.vocab)
    records = predicted_records(nlp, gold_docs, args.component)
    counts = write_error_page(records, Path(args.output), f"Errors of {args.pipeline} on {args.dev}", args.limit)
    print(f"Wrote {args.output}: {counts}")
