"""`python scripts/bench/benchmark.py int8-accuracy`: entity F1 on CoNLL-2003 dev
(gold tokens, scored by common.score) of a trained pipeline in fp32 and
after spacy_tokclf.quantize_encoder(nlp)."""
import json
import os
import time
from pathlib import Path
from typing import Any, Dict

from common import CONLL_DEV, check_inputs, gold_labels, predict_spacy, read_docs, score
from run_info import machine


def int8_accuracy(args) -> None:
    import spacy
    import torch
    import transformers

    import spacy_tokclf

    check_inputs(CONLL_DEV)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.model)
    dev_docs = read_docs(CONLL_DEV, args.unit, vocab=nlp.vocab, limit_docs=args.limit_docs)
    gold = [gold_labels(doc, "ents") for doc in dev_docs]
    result: Dict[str, Any] = {
        "model": str(args.model),
        "unit": args.unit,
        "dev_docs": len(dev_docs),
        "words": sum(len(doc) for doc in dev_docs),
        "machine": machine(),
        "threads": args.threads,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    for name in ("fp32", "int8"):
        if name == "int8":
            result["quantized"] = spacy_tokclf.quantize_encoder(nlp)
        start = time.perf_counter()
        predicted = predict_spacy(nlp, dev_docs, "ents")
        seconds = time.perf_counter() - start
        scores = score(gold, predicted, "ents")
        result[name] = {**scores, "seconds": seconds}
        print(f"{name}: entity F1 {100 * scores['ents_f']:.2f} (P {100 * scores['ents_p']:.2f}, "
              f"R {100 * scores['ents_r']:.2f}), one pass {seconds:.1f} s", flush=True)
    result["f1_lost"] = 100 * (result["fp32"]["ents_f"] - result["int8"]["ents_f"])
    # One pass each, not interleaved: `inference` measures the speed-up.
    result["speedup_one_pass"] = result["fp32"]["seconds"] / result["int8"]["seconds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"int8 loses {result['f1_lost']:.2f} entity F1 points; "
          f"one pass {result['speedup_one_pass']:.2f}x faster. Wrote {out / 'int8_accuracy.json'}")
