"""`tokclf-train-ddp --ray-workers 2`: Ray Train's TorchTrainer starts the
processes (a local 2-CPU cluster, gloo) and rank 0 saves the pipeline."""
import importlib.util
import os
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from .test_distributed import EXTRA_DATA, PROJECT, still_encoder  # noqa: F401  (fixture)
from .util import TRAIN_DATA

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason='needs Ray Train, the ray extra: pip install "spacy-tokclf[ray]"',
)


def test_ray_train_launches_two_workers(still_encoder, tmp_path):  # noqa: F811
    nlp = spacy.blank("en")
    docs = [Example.from_dict(nlp.make_doc(t), a).reference for t, a in TRAIN_DATA + EXTRA_DATA]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)  # a local cluster of 2 CPUs
    cmd = [
        sys.executable, "-m", "spacy", "tokclf-train-ddp", str(PROJECT / "configs" / "ner.cfg"),
        "--output", str(out), "--ray-workers", "2",
        "--paths.train", str(tmp_path / "train.spacy"),
        "--paths.dev", str(tmp_path / "train.spacy"),
        "--paths.encoder", str(still_encoder),
        "--training.max_epochs", "0", "--training.max_steps", "2",
        "--training.batcher.size", "20",
        "--training.logger.progress_bar", "null",
    ]  # fmt: skip
    result = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Data-parallel: 2 process(es)" in output
    assert "world_rank=1" in output
    loaded = spacy.load(out / "model-last")
    assert loaded.pipe_names == ["sentencizer", "token_classifier"]  # as configs/ner.cfg ships
    assert (out / "model-best").is_dir()
