"""Loading a saved token_classifier (its `from_disk` and `from_bytes`): its
files read with errors that name them, the saved cfg merged with the config
the pipeline is loaded with, and the cfg checked against the loaded model.

What the loading config sets is what the component does, so that nlp.config
never shows a value the component does not use: the settings that only
change how predictions are written (RUNTIME_SETTINGS) are the config's, and
a config that changes what the head was trained for (`tasks`, `scheme`,
`model.nO`) is refused by name. When no override is given, spacy.load builds
the pipeline from its saved config.cfg, so the config holds the saved values.
"""
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, MutableMapping, Optional, Tuple

import srsly
from spacy import util
from spacy.errors import Errors as SpacyErrors
from thinc.api import Model

from .calibrated import check_calibration
from .errors import Errors, Warnings, error
from .labels import SCHEMES, TASKS, LabelLayout, is_valid_cfg

# Settings that only change how predictions are written to the docs.
RUNTIME_SETTINGS = ("overwrite", "spans_key", "threshold")


def config_settings(cfg: MutableMapping[str, Any], model: Model) -> Dict[str, Any]:
    """The settings a new component was built with, as nlp.config shows them:
    its cfg's tasks, scheme and RUNTIME_SETTINGS, and "nO", the head's size
    that the config sets (`model.nO`; None when the labels decide it)."""
    settings = {key: cfg[key] for key in ("scheme",) + RUNTIME_SETTINGS}
    settings["tasks"] = list(cfg["tasks"])
    settings["nO"] = head_outputs(model)
    return settings


def head_outputs(model: Model) -> Optional[int]:
    """The head's outputs; None before it is sized (or without a head)."""
    if not model.has_ref("output_layer"):
        return None
    output_layer = model.get_ref("output_layer")
    return output_layer.get_dim("nO") if output_layer.has_dim("nO") else None


def load_from_disk(
    pipe: Any, path: Path, exclude: Iterable[str], built: Dict[str, Any]
) -> None:
    """`TokenClassifier.from_disk`: read the component's directory into `pipe`
    (built with the settings `built`, see config_settings). A missing,
    truncated or corrupted file raises an error that names the file."""
    deserialize = {
        # spaCy's default reader skips a missing cfg: labels would then be
        # empty and the first prediction would crash in numpy.
        "cfg": lambda p: merge_loaded_cfg(
            pipe.name, pipe.cfg, read_saved(pipe.name, p, read_cfg_file), built
        ),
        "vocab": lambda p: pipe.vocab.from_disk(p, exclude=exclude),
        "model": lambda p: read_saved(
            pipe.name, p, lambda f: pipe.model.from_bytes(f.read_bytes())
        ),
    }
    util.from_disk(path, deserialize, exclude)
    check_loaded_cfg(pipe.name, pipe.cfg, head_outputs(pipe.model), f"The file {path / 'cfg'}")
    check_trained_settings(pipe.name, pipe.cfg, built)


def load_from_bytes(
    pipe: Any, bytes_data: bytes, exclude: Iterable[str], built: Dict[str, Any]
) -> None:
    """`TokenClassifier.from_bytes`: as TrainablePipe.from_bytes, with the
    saved cfg merged as from disk."""

    def load_model(data: bytes) -> None:
        try:
            pipe.model.from_bytes(data)
        except AttributeError:
            raise ValueError(SpacyErrors.E149) from None

    deserialize = {
        "cfg": lambda b: merge_loaded_cfg(pipe.name, pipe.cfg, srsly.json_loads(b), built),
        "vocab": lambda b: pipe.vocab.from_bytes(b, exclude=exclude),
        "model": load_model,
    }
    util.from_bytes(bytes_data, deserialize, exclude)
    check_loaded_cfg(pipe.name, pipe.cfg, head_outputs(pipe.model), "The component's cfg")
    check_trained_settings(pipe.name, pipe.cfg, built)


def read_saved(name: str, path: Path, read: Callable[[Path], Any]) -> Any:
    """Read a file written by `to_disk`; a missing or unreadable file raises an
    error that names it, whatever failed underneath (msgpack, json, torch)."""
    if not path.is_file():
        raise FileNotFoundError(error(Errors.FILE_MISSING, name, path=path))
    try:
        return read(path)
    except Exception as err:
        raise ValueError(
            error(Errors.FILE_UNREADABLE, name, path=path, error=f"{type(err).__name__}: {err}")
        ) from err


def read_cfg_file(path: Path) -> Dict[str, Any]:
    """The saved cfg; it must hold "tasks", "scheme" and "labels"."""
    cfg = srsly.read_json(path)
    if not isinstance(cfg, dict) or not {"tasks", "scheme", "labels"} <= set(cfg):
        raise ValueError(Errors.CFG_FILE_SHAPE)
    return cfg


def merge_loaded_cfg(
    name: str, cfg: MutableMapping[str, Any], saved: Any, built: Dict[str, Any]
) -> None:
    """Take the saved cfg (labels, calibration, ...) over the one the
    component was built with, except for the runtime settings: those of the
    loading config (`built`) stand (a saved threshold set on the component,
    not in its config, gives way with a warning). A config `model.nO` other
    than the saved head's is refused here, before the model is read; other
    tasks or another scheme after it (check_trained_settings), once the cfg
    is known to describe the saved model. A component saved before
    initialize (no labels, no head) takes the config's tasks and scheme. A
    cfg that is not valid is merged as it is, for check_loaded_cfg to
    report."""
    if not isinstance(saved, dict):
        saved = {}
    runtime: Tuple[str, ...] = RUNTIME_SETTINGS
    if is_valid_cfg(saved):
        if not any(saved["labels"][task] for task in saved["tasks"]):
            # Never initialized: nothing is fixed yet.
            saved = {**saved, "labels": {task: [] for task in built["tasks"]}}
            runtime += ("tasks", "scheme")
        else:
            check_head_size(name, saved, built["nO"])
            if "ents" not in saved["tasks"]:
                # Without entities the scheme means nothing: the config's stands.
                runtime += ("scheme",)
        warn_if_threshold_dropped(name, saved, built["threshold"])
    cfg.update(saved)
    for key in runtime:
        cfg[key] = list(built[key]) if key == "tasks" else built[key]
    # The threshold of the config: a threshold set on the component later
    # differs from it (see warn_if_threshold_dropped).
    cfg["config_threshold"] = built["threshold"]


def check_head_size(name: str, saved: Dict[str, Any], n_given: Optional[int]) -> None:
    """Raise if the loading config sets a head size (`model.nO`) other than
    the saved labels make."""
    layout = LabelLayout.from_cfg(saved)
    if n_given is not None and n_given != layout.n_outputs:
        raise ValueError(
            error(
                Errors.HEAD_SIZE_FIXED_AT_TRAINING,
                name,
                n_saved=layout.n_outputs,
                labels={task: list(labels) for task, labels in layout.labels.items()},
                scheme=layout.scheme,
                n_given=n_given,
            )
        )


def check_trained_settings(
    name: str, cfg: MutableMapping[str, Any], built: Dict[str, Any]
) -> None:
    """Raise if the loading config sets other tasks, or (with entities)
    another scheme, than the loaded cfg holds: the head was trained for
    those."""
    checks = [("tasks", list(cfg["tasks"]), Errors.TASKS_FIXED)]
    if "ents" in cfg["tasks"]:
        checks.append(("scheme", cfg["scheme"], Errors.SCHEME_FIXED))
    for setting, value, why in checks:
        if value != built[setting]:
            raise ValueError(
                error(
                    Errors.SETTING_FIXED_AT_TRAINING,
                    name,
                    setting=setting,
                    saved=json.dumps(value),
                    given=json.dumps(built[setting]),
                    why=why,
                )
            )


def warn_if_threshold_dropped(name: str, saved: Dict[str, Any], given: Optional[float]) -> None:
    """Warn when the saved threshold was set on the component after it was
    built (it differs from the saved "config_threshold") and the loading
    config sets the threshold it was built with, which replaces it."""
    threshold = saved.get("threshold")
    built_with = saved.get("config_threshold", threshold)
    if not _same_threshold(threshold, built_with) and _same_threshold(given, built_with):
        warnings.warn(
            error(
                Warnings.SAVED_THRESHOLD_NOT_IN_CONFIG,
                name,
                saved=_shown(threshold, "null"),
                saved_py=_shown(threshold, "None"),
                given=_shown(given, "null"),
            )
        )


def _shown(threshold: Any, none: str) -> str:
    """A threshold as a config (none="null") or Python (none="None") value."""
    if threshold is None:
        return none
    return format(threshold, ".10g") if isinstance(threshold, float) else repr(threshold)


def _same_threshold(a: Any, b: Any) -> bool:
    # With a tolerance: srsly's JSON reader can be one ulp off.
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return a == b or (numbers and abs(a - b) <= 1e-9)


def check_loaded_cfg(
    name: str, cfg: MutableMapping[str, Any], n_model_outputs: Optional[int], source: str
) -> None:
    """Raise if the loaded cfg is not valid or does not describe the loaded
    model (n_model_outputs: the head's outputs, None when not sized), as
    after a hand edit or a cfg copied from another pipeline: predictions
    would otherwise read the wrong columns of the head."""
    valid = is_valid_cfg(cfg)
    problem = None
    if valid:
        try:
            problem = check_calibration(cfg.get("calibration"), list(cfg["tasks"]))
            threshold = cfg.get("threshold")
            if threshold is not None and not (
                isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0
            ):
                problem = Errors.THRESHOLD_IN_CFG.format(threshold=threshold)
        except (KeyError, TypeError, AttributeError):
            valid, problem = False, None
    if valid and problem:
        raise ValueError(error(Errors.CFG_NOT_VALID, name, source=source, problem=problem))
    if not valid:
        raise ValueError(
            error(
                Errors.CFG_NO_SETTINGS,
                name,
                source=source,
                tasks=list(TASKS),
                schemes=list(SCHEMES),
                cfg=str(cfg)[:300],
            )
        )
    layout = LabelLayout.from_cfg(cfg)
    if n_model_outputs is not None and n_model_outputs != layout.n_outputs:
        raise ValueError(
            error(
                Errors.CFG_MODEL_MISMATCH,
                name,
                source=source,
                labels={task: list(labels) for task, labels in layout.labels.items()},
                n_labels=layout.n_outputs,
                scheme=layout.scheme,
                n_model=n_model_outputs,
            )
        )
