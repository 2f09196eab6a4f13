"""The project's data-parallel training step: `spacy project run train-ddp`.

    torchrun --standalone --nproc-per-node N scripts/train/ddp.py CONFIG --encoder ENCODER --epochs E
    python scripts/train/ddp.py CONFIG --encoder ENCODER --ray-workers N    # Ray Train

The same data, batches and schedule as `scripts/train/jobs.py train` (one process),
trained by N processes with spacy_tokclf.distributed: each reads its shard of
every global batch of 32 sentences, the gradients are summed across processes
before each step, rank 0 evaluates and writes training/CONFIG-ddp/model-best
and model-last. --timings writes rank 0's seconds per part of a step.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import PROJECT, UNITS, project_overrides


def overrides_for(args, verbose: bool = False) -> dict:
    """jobs.py train's settings: corpora, encoder, batches and schedule."""
    overrides = project_overrides(
        args.config, args.unit, args.encoder, args.epochs, args.max_steps, verbose=verbose
    )
    if args.dev_limit:
        overrides["corpora.dev.limit"] = args.dev_limit
    return overrides


def main(args) -> None:
    import torch.distributed as dist

    from spacy_tokclf.distributed import init_process_group, train_from_config, train_ray

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config_path = PROJECT / "configs" / f"{args.config}.cfg"
    output = PROJECT / "training" / (args.output or f"{args.config}-ddp")
    if args.ray_workers:
        train_ray(
            config_path, output, workers=args.ray_workers, overrides=overrides_for(args),
            gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
        )
        return
    rank, world_size, local_rank = init_process_group(args.gpu, timeout_minutes=60)
    # Rank 0 writes the sentence corpora if they are missing; the others wait.
    if rank == 0:
        overrides = overrides_for(args)
    if world_size > 1:
        dist.barrier()
    if rank > 0:
        overrides = overrides_for(args)
    if rank == 0:
        print(f"Training {config_path.name} on {world_size} process(es) -> {output}")
    timings: dict = {}
    try:
        train_from_config(
            config_path, output, overrides=overrides, gpu_id=local_rank if args.gpu else -1,
            timings=timings,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0 and args.timings:
        Path(args.timings).parent.mkdir(parents=True, exist_ok=True)
        Path(args.timings).write_text(json.dumps(timings, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--unit", choices=UNITS, default="chunk")
    parser.add_argument("--gpu", action="store_true", help="one GPU per process, NCCL")
    parser.add_argument("--ray-workers", type=int, default=0, help="launch with Ray Train")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--output", default=None, help="under training/; default CONFIG-ddp")
    parser.add_argument("--dev-limit", type=int, default=0, help="evaluate on the first N dev docs")
    parser.add_argument("--timings", default=None, help="write rank 0's seconds per part of a step")
    main(parser.parse_args())
