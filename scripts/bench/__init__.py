"""Benchmarks: speed, memory and int8 of token_classifier against its peers
(benchmark.py, with systems.py, tables.py, layout.py, int8.py), tokclf-annotate
throughput (annotate.py) and data-parallel step time (ddp_measure.py)."""
