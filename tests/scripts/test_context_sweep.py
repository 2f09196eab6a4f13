"""scripts/context_sweep.py: the config a run trains, and the file name it
is kept under, follow its settings (a run with --averages must neither
train without them nor be skipped as the run without them)."""
import argparse

import context_sweep
import pytest


@pytest.mark.parametrize("averages", [False, True])
def test_context_config_sets_context_rate_scheme_and_averages(averages):
    config = context_sweep.context_config("conll", 16, 2e-4, 3, "BIO", averages)
    assert config["components"]["token_classifier"]["model"]["tok2vec"]["context"] == 16
    assert config["components"]["token_classifier"]["scheme"] == "BIO"
    assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == 2e-4
    assert config["training"]["optimizer"]["use_averages"] is averages
    assert config["system"]["seed"] == 3


def test_run_name_tells_averaged_runs_apart():
    args = argparse.Namespace(dataset="conll", unit="chunk", lr=2e-4, scheme="BILUO", averages=False)
    plain = context_sweep.run_name(args, 16, 0, "ents")
    args.averages = True
    averaged = context_sweep.run_name(args, 16, 0, "ents")
    assert plain == "conll_chunk_ctx16_biluo_lr0.0002_seed0"
    assert averaged == "conll_chunk_ctx16_biluo_lr0.0002_avg_seed0"
    # the names of the runs already kept (no averages) do not change
    args = argparse.Namespace(dataset="ewt", unit="doc", lr=1e-4, scheme="BILUO", averages=False)
    assert context_sweep.run_name(args, 0, 1, "tags") == "ewt_ctx0_lr0.0001_seed1"
