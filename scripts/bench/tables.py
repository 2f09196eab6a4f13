"""The tables of scripts/bench/benchmark.py: per system, medians over repetitions
and ratios to reference systems taken within one repetition; the first and
the second pass kept apart."""
import statistics
from typing import Any, Dict, List, Sequence

# Ratios are given to both: bare is the practical upper bound, bare_naive a
# plain Hugging Face forward pass (batches of 32 in corpus order, padded).
REFERENCES = ("bare", "bare_naive")


def stack_of(measurements: List[Dict]) -> str:
    """"transformers, torch" of the measurements' processes ("; " between
    different ones; "-" if none recorded them)."""
    stacks = [m["stack"] for m in measurements if "stack" in m]
    cells = dict.fromkeys(f"{s['transformers']}, {s['torch']}" for s in stacks)
    return "; ".join(cells) or "-"


def summarize(measurements: List[Dict], references: Sequence[str]) -> List[Dict]:
    """Per (system, unit): median words/s (second pass; first pass when
    measured), range, median peak memory, and per reference system the median
    over repetitions of the ratio to its words/s in the same repetition."""
    keys = list(dict.fromkeys((m["system"], m.get("unit")) for m in measurements))
    ok = [m for m in measurements if "error" not in m]
    by_rep = {(m["system"], m.get("unit"), m["rep"]): m["words_per_s"] for m in ok}
    rows = []
    for system, unit in keys:
        mine = [m for m in measurements if m["system"] == system and m.get("unit") == unit]
        runs = [m for m in mine if "error" not in m]
        row: Dict[str, Any] = {
            "system": system, "unit": unit, "stack": stack_of(runs),
            "runs": len(runs), "failed": len(mine) - len(runs),
        }
        if runs:
            wps = [m["words_per_s"] for m in runs]
            row.update(
                words_per_s=statistics.median(wps),
                words_per_s_min=min(wps),
                words_per_s_max=max(wps),
                peak_rss_mb=statistics.median(m["peak_rss_mb"] for m in runs),
            )
            if all("first_words_per_s" in m for m in runs):
                row["first_words_per_s"] = statistics.median(m["first_words_per_s"] for m in runs)
            for reference in references:
                ratios = [
                    m["words_per_s"] / by_rep[(reference, unit, m["rep"])]
                    for m in runs
                    if (reference, unit, m["rep"]) in by_rep
                ]
                row[f"x_{reference}"] = statistics.median(ratios) if ratios else None
        rows.append(row)
    return rows


# (what, system A, system B): the median over repetitions of A's words/s over
# B's in the same repetition; for the tag cost, B's time over A's.
COMPARISONS = (
    ("token_classifier (ents) speed / bare forward", "tokclf_ents", "bare"),
    ("token_classifier (ents) speed / spacy-transformers + ner", "tokclf_ents", "spacy_trf_ner"),
    ("token_classifier (ents, context 16) speed / spacy-transformers + ner", "tokclf_ents_context", "spacy_trf_ner"),
    ("token_classifier (ents, context 16) speed / (ents, no context)", "tokclf_ents_context", "tokclf_ents"),
    ("token_classifier (ents) speed / HF pipeline", "tokclf_ents", "hf_pipeline"),
    ("token_classifier (ents) speed / hf_token_pipe", "tokclf_ents", "hf_token_pipe"),
    ("time of ents + tag / time of ents", "tokclf_ents", "tokclf_ents_tag"),
    ("int8 speed / fp32 speed (ents)", "tokclf_ents_int8", "tokclf_ents"),
    ("bare forward speed, this stack / the peer's stack", "bare", "bare@peer"),
)


def comparisons(measurements: List[Dict]) -> List[Dict]:
    """COMPARISONS per unit, for the second pass and for the first, each the
    median over repetitions of the ratio within one repetition."""
    ok = [m for m in measurements if "error" not in m]
    rows = []
    for unit in dict.fromkeys(m.get("unit") for m in ok):
        for what, a, b in COMPARISONS:
            mine = [m for m in ok if m.get("unit") == unit]
            row: Dict[str, Any] = {
                "what": what,
                "unit": unit,
                "stacks": [stack_of([m for m in mine if m["system"] == s]) for s in (a, b)],
            }
            for key in ("words_per_s", "first_words_per_s"):
                speed = {(m["system"], m["rep"]): m.get(key) for m in ok if m.get("unit") == unit}
                ratios = [
                    x / y
                    for (system, rep), x in speed.items()
                    if system == a and x and (y := speed.get((b, rep)))
                ]
                row[key] = statistics.median(ratios) if ratios else None
                row[key + "_reps"] = ratios
            if row["words_per_s"] is not None:
                rows.append(row)
    return rows


def comparison_table(rows: List[Dict]) -> str:
    lines = [
        "| ratio (median over repetitions) | unit | second pass | first pass | per repetition "
        "| stacks (transformers, torch) |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        first = r["first_words_per_s"]
        reps = ", ".join(f"{x:.2f}" for x in r["words_per_s_reps"])
        lines.append(
            f"| {r['what']} | {r['unit']}s | {r['words_per_s']:.2f} | "
            f"{'-' if first is None else f'{first:.2f}'} | {reps} | {' / '.join(r['stacks'])} |"
        )
    return "\n".join(lines) + "\n"


def table(rows: List[Dict], references: Sequence[str], meta: Dict) -> str:
    first = any("first_words_per_s" in r for r in rows)
    header = ["system", "unit", "stack (transformers, torch)", "words/s (median)", "min-max"]
    header += [f"x {reference}" for reference in references]
    header += ["first pass words/s"] if first else []
    header += ["peak RSS MB", "runs"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | --- |" + " ---: |" * (len(header) - 3)]
    for r in rows:
        cells = [r["system"], r["unit"] + "s" if r["unit"] else "sentences", r.get("stack", "-")]
        if "words_per_s" in r:
            cells.append(f"{r['words_per_s']:,.0f}")
            cells.append(f"{r['words_per_s_min']:,.0f}-{r['words_per_s_max']:,.0f}")
            for reference in references:
                ratio = r.get(f"x_{reference}")
                cells.append(f"{ratio:.2f}" if ratio is not None else "-")
            if first:
                cells.append(f"{r['first_words_per_s']:,.0f}" if "first_words_per_s" in r else "-")
            cells.append(f"{r['peak_rss_mb']:,.0f}")
        else:
            cells += ["failed", "-"] + ["-"] * len(references) + ["-"] * (1 + first)
        cells.append(f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{meta['machine']}; {meta['threads']} torch threads; {meta['reps']} repetitions, "
        f"interleaved; each row's transformers and torch are its own processes'; {meta['date']}."
    )
    return "\n".join(lines) + "\n"
