"""Loading a saved token_classifier: its files read with errors that name
them, the saved cfg merged with the config the pipeline is loaded with, and
the cfg checked against the loaded model."""
from pathlib import Path
from typing import Any, Callable, Dict, MutableMapping, Optional

import srsly

from .calibration import check_calibration
from .errors import Errors, error
from .labels import SCHEMES, TASKS, LabelLayout, is_valid_cfg


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


def merge_loaded_cfg(cfg: MutableMapping[str, Any], saved: Dict[str, Any]) -> None:
    """Take the saved cfg over the one the component was built with, keeping
    a threshold that the loading config sets (see keep_config_threshold)."""
    given = cfg.get("config_threshold")
    cfg.update(saved)
    keep_config_threshold(cfg, given)


def keep_config_threshold(cfg: MutableMapping[str, Any], given: Optional[float]) -> None:
    """After loading a saved cfg: the saved threshold stands (a threshold
    set on the component before it was saved is kept), unless the config
    the pipeline is loaded with sets another threshold than the one it was
    saved with, as `spacy.load(path, config={"components": {name:
    {"threshold": 0.8}}})` does: then that one wins."""
    saved = cfg.get("config_threshold")
    # Compared with a tolerance: srsly's JSON reader can be one ulp off.
    same = saved == given or (
        isinstance(saved, (int, float))
        and isinstance(given, (int, float))
        and abs(saved - given) <= 1e-9
    )
    if not same:
        cfg["threshold"] = given
    cfg["config_threshold"] = given


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
