"""Data-parallel training, `python -m spacy tokclf-train-ddp`: N processes
(torchrun, or Ray Train's TorchTrainer) train one pipeline from one spaCy
config, on shards of the same global batches.

    train.py          the training loop (spaCy's, made data-parallel) and its
                      launchers: train_from_config (each process), train_ray
    data_parallel.py  DataParallel: the optimizer step every process takes alike
    gradient_sync.py  GradientSync: gradients summed across processes; process
                      group, shards, seeds
"""
from .data_parallel import DataParallel
from .gradient_sync import GradientSync, init_process_group, shard_batch, world
from .train import train_distributed, train_from_config, train_ray

__all__ = [
    "DataParallel",
    "GradientSync",
    "init_process_group",
    "shard_batch",
    "train_distributed",
    "train_from_config",
    "train_ray",
    "world",
]
