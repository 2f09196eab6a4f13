import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from .util import BUILDERS, make_examples, make_nlp, train

# CI runs the same generated examples every time, so a failure there can be
# reproduced; local runs explore new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: the tiny encoders gain nothing from two, and two
    threads stall each other on a busy 2-core machine."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(scope="session")
def encoders(tmp_path_factory) -> dict:
    """Directories of tiny random encoders, one per tokenizer family."""
    root = tmp_path_factory.mktemp("encoders")
    return {family: build(Path(root) / family) for family, build in BUILDERS.items()}


@pytest.fixture(params=sorted(BUILDERS))
def encoder(request, encoders) -> Path:
    """Each tokenizer family in turn."""
    return encoders[request.param]


@pytest.fixture
def wordpiece(encoders) -> Path:
    return encoders["wordpiece"]


# Trained tiny pipelines shared by several test files (each module trains its own copy).


@pytest.fixture(scope="module")
def tagging_nlp(encoders):
    """Trained ents + tag pipeline; the tiny encoder has dropout 0.1, so a
    prediction that ran in train mode would change the answers."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), 30)
    return nlp


@pytest.fixture(scope="module")
def trained(encoders):
    """Briefly trained (ents + tag): scores well away from 0 and 1."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    examples = make_examples(nlp)
    train(nlp, examples, n_iter=12)
    return nlp, examples


@pytest.fixture
def pipeline(trained):
    """The trained pipeline with any calibration or threshold reset after the test."""
    nlp, examples = trained
    pipe = nlp.get_pipe("token_classifier")
    saved = {k: pipe.cfg[k] for k in ("calibration", "threshold", "config_threshold")}
    yield nlp, examples
    pipe.cfg.update(saved)
