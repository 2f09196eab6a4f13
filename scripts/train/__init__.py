"""Scripts that train: the project's train / calibrate / evaluate /
check-package steps (jobs.py), data-parallel training (ddp.py), and the runs
behind the comparison tables: peers side by side (compare.py, with
compare_systems.py), tuned over seeds (tune.py), sentence context
(context_sweep.py); run_cache.py decides when a kept run may be reused."""
