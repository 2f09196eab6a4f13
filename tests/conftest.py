import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from .util import BUILDERS

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
