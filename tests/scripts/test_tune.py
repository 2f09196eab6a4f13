"""scripts/train/tune.py: the grid is extended past an edge while the best rate
lies at it (at most --max-extensions steps), and the best setting is what the
seeds run."""
import argparse
import json

import pytest
from train import tune
from train.run_cache import RUN_SETTINGS


class FakeRuns:
    """Scores as a function of the setting; records what was run."""

    def __init__(self, best_lr: float, task: str = "ents"):
        self.best_lr = best_lr
        self.task = task
        self.calls = []

    def get(self, system, setting, seed):
        self.calls.append((system, tune.setting_name(setting), seed))
        distance = abs(setting["lr"] - self.best_lr) / self.best_lr
        bonus = 0.01 if setting.get("scheme") == "BILUO" else 0.0
        return {"ents_f": 0.9 - 0.1 * distance + bonus}


@pytest.mark.parametrize(
    "best_lr,max_extensions,expected_lr,extra,n_runs",
    [
        (7e-5, 3, 5e-5, ["lr2.5e-05"], 3),  # 5e-5 wins at the bottom edge; 2.5e-5 tried, loses
        (1e-4, 3, 1e-4, ["lr0.0002"], 3),  # best at the top edge: 2e-4 is tried, loses
        (4e-4, 1, 2e-4, ["lr0.0002"], 3),  # 2e-4 wins, but one step is all that is allowed
        (4e-4, 3, 4e-4, ["lr0.0002", "lr0.0004", "lr0.0008"], 5),  # 4e-4 wins inside; 8e-4 loses
        (1e-2, 3, 8e-4, ["lr0.0002", "lr0.0004", "lr0.0008"], 5),  # stops at the cap, still at the edge
        (2e-5, 3, 2.5e-5, ["lr2.5e-05", "lr1.25e-05"], 4),  # bottom edge: 2.5e-5 wins, 1.25e-5 loses
    ],
)
def test_grid_extends_past_the_edge_while_the_best_is_there(best_lr, max_extensions, expected_lr, extra, n_runs):
    runs = FakeRuns(best_lr)
    best = tune.tune_system(runs, "hf_trainer", [5e-5, 1e-4], ["BIO", "BILUO"], max_extensions)
    assert best["lr"] == pytest.approx(expected_lr)
    names = [name for _, name, _ in runs.calls]
    assert names[:2] == ["lr5e-05", "lr0.0001"]
    for name in extra:
        assert name in names
    assert len(names) == len(set(names)) == n_runs


def test_tokclf_also_tunes_the_scheme_on_entities():
    runs = FakeRuns(1e-4)
    best = tune.tune_system(runs, "tokclf", [5e-5, 1e-4], ["BIO", "BILUO"], 3)
    assert best["scheme"] == "BILUO"
    assert {n for _, n, _ in runs.calls} >= {
        "lr5e-05_bio", "lr5e-05_biluo", "lr0.0001_bio", "lr0.0001_biluo"
    }
    tags = FakeRuns(1e-4, task="tag")
    assert "scheme" not in tune.tune_system(tags, "tokclf", [5e-5, 1e-4], ["BIO", "BILUO"], 3)


@pytest.mark.parametrize("gain,kept", [(0.005, True), (-0.005, False)])
def test_tricks_are_tried_on_tokclf_best_setting_and_kept_if_better(gain, kept):
    class WithAverages(FakeRuns):
        def get(self, system, setting, seed):
            result = super().get(system, setting, seed)
            return {"ents_f": result["ents_f"] + (gain if setting.get("averages") else 0.0)}

    runs = WithAverages(1e-4)
    best = tune.tune_system(runs, "tokclf", [5e-5, 1e-4], ["BIO", "BILUO"], 3)
    chosen = tune.try_tricks(runs, "tokclf", best, ["averages"])
    assert ("tokclf", "lr0.0001_biluo_avg", 0) in runs.calls
    assert chosen == (dict(best, averages=True) if kept else best)
    assert tune.setting_name(chosen).endswith("_avg") == kept
    other = WithAverages(1e-4)
    assert tune.try_tricks(other, "hf_trainer", {"lr": 1e-4}, ["averages"]) == {"lr": 1e-4}
    assert other.calls == []


def test_stages_run_every_system_base_grid_then_extensions_then_tricks_then_seeds():
    runs = FakeRuns(1e-4)
    chosen = tune.run_stages(runs, ["tokclf", "hf_trainer"], [5e-5, 1e-4], ["BIO", "BILUO"], 1, ["averages"], [0, 1])
    trained = list(dict.fromkeys(runs.calls))  # a real run is trained once, then read from its file
    assert trained == [
        *[("tokclf", f"lr{lr}_{scheme}", 0) for lr in ("5e-05", "0.0001") for scheme in ("bio", "biluo")],
        ("hf_trainer", "lr5e-05", 0), ("hf_trainer", "lr0.0001", 0),
        ("tokclf", "lr0.0002_biluo", 0), ("hf_trainer", "lr0.0002", 0),  # the extensions past the top edge
        ("tokclf", "lr0.0001_biluo_avg", 0),
        ("tokclf", "lr0.0001_biluo", 1), ("hf_trainer", "lr0.0001", 1),
    ]
    assert chosen == {"tokclf": {"lr": 1e-4, "scheme": "BILUO"}, "hf_trainer": {"lr": 1e-4}}


def test_each_trick_has_its_own_result_file_name():
    base = {"lr": 2e-4, "scheme": "BILUO"}
    names = {tune.setting_name(dict(base, **trick)) for trick in tune.TRICKS.values()}
    assert len(names) == len(tune.TRICKS)
    assert tune.setting_name(base) not in names
    assert tune.setting_name(dict(base, **tune.TRICKS["head_lr"], **tune.TRICKS["averages"])) == "lr0.0002_biluo_avg_head10"


def test_report_chooses_by_seed_0_and_gives_mean_and_sd_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "OUT", tmp_path)
    runs = [
        ("tokclf", {"lr": 5e-5, "scheme": "BIO"}, 0, 0.90),
        ("tokclf", {"lr": 2e-4, "scheme": "BILUO"}, 0, 0.92),
        ("tokclf", {"lr": 2e-4, "scheme": "BILUO"}, 1, 0.91),
        ("tokclf", {"lr": 2e-4, "scheme": "BILUO"}, 2, 0.94),
        ("tokclf", {"lr": 1e-4, "scheme": "BILUO"}, 0, 0.915),
        ("hf_trainer", {"lr": 1e-4}, 0, 0.91),
    ]
    for system, setting, seed, f in runs:
        result = {"system": system, "setting": setting, "seed": seed, "ents_f": f, "epochs": 3,
                  "train_seconds": 900.0, "machine": "test machine"}
        path = tmp_path / f"conll_sentence_{system}_{tune.setting_name(setting)}_seed{seed}.json"
        path.write_text(json.dumps(result))
    tune.report(reporting(dataset="conll"))
    text = (tmp_path / "conll_sentence.md").read_text()
    assert (
        "| tokclf | lr0.0002_biluo (grid not finished: 0.0002 at the top edge) | 92.33 +- 1.53 | 3 | "
        "92.00, 91.00, 94.00 | 92.50 |"
    ) in text
    assert (
        "| hf_trainer | lr0.0001 (grid not finished: 5e-05 not run) | 91.00 +- n/a (one seed) | 1 | 91.00 | - |"
    ) in text
    grid = [line.split(" | ")[1] for line in text.split("## Grid")[1].splitlines() if line.startswith("| tokclf")]
    assert grid == ["lr5e-05_bio", "lr0.0001_biluo", "lr0.0002_biluo"]  # by rate, not by name


def test_table_puts_both_datasets_chosen_settings_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "OUT", tmp_path)
    runs = [
        ("conll", "tokclf", {"lr": 1e-4, "scheme": "BIO"}, 0, {"ents_f": 0.91}),
        ("conll", "tokclf", {"lr": 2e-4, "scheme": "BILUO"}, 0, {"ents_f": 0.92}),
        ("conll", "tokclf", {"lr": 2e-4, "scheme": "BILUO"}, 1, {"ents_f": 0.90}),
        ("conll", "spacy_trf", {"lr": 2e-4}, 0, {"ents_f": 0.915}),
        ("ewt", "tokclf", {"lr": 5e-5}, 0, {"tag_acc": 0.953}),
        ("ewt", "tokclf", {"lr": 1e-4}, 0, {"tag_acc": 0.951}),
    ]
    for dataset, system, setting, seed, scores in runs:
        result = {"system": system, "setting": setting, "seed": seed, "epochs": 3, "train_seconds": 900.0,
                  "machine": "test machine", **scores}
        path = tmp_path / f"{dataset}_sentence_{system}_{tune.setting_name(setting)}_seed{seed}.json"
        path.write_text(json.dumps(result))
    tune.table(reporting())
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert "CoNLL-2003 dev entity F1: mean +- sd" in lines[0] and "EWT dev XPOS accuracy: mean +- sd" in lines[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:] if line.startswith("| ")}
    assert rows["tokclf"] == (
        "| tokclf | 91.00 +- 1.41 | 2 | 90.00 | lr0.0002_biluo (grid not finished: 5e-05 not run) | "
        "95.30 +- n/a (one seed) | 1 | - | lr5e-05 (grid not finished: 5e-05 at the bottom edge) |"
    )
    assert rows["spacy_trf"] == (
        "| spacy_trf | 91.50 +- n/a (one seed) | 1 | - | lr0.0002 (grid not finished: 5e-05, 0.0001 not run) | "
        "not run | 0 | - | - |"
    )
    assert rows["hf_trainer"].count("not run") == 2


def reporting(**args):
    """The arguments of `tune.py report` / `table`, at their defaults unless given."""
    defaults = {"unit": "sentence", "lrs": ",".join(f"{lr:g}" for lr in tune.BASE_LRS),
                "max_extensions": tune.MAX_EXTENSIONS, **RUN_SETTINGS}
    return argparse.Namespace(**{**defaults, **args})


def write_runs(out, dataset, runs):
    for system, setting, seed, f in runs:
        result = {"system": system, "setting": setting, "seed": seed, "epochs": 3, "train_seconds": 900.0,
                  "machine": "test machine", "ents_f" if dataset == "conll" else "tag_acc": f}
        (out / f"{dataset}_sentence_{system}_{tune.setting_name(setting)}_seed{seed}.json").write_text(json.dumps(result))


@pytest.mark.parametrize(
    "system,runs,why",
    [
        ("hf_trainer", [(5e-5, 0.90)], "0.0001 not run"),
        ("hf_trainer", [(5e-5, 0.90), (1e-4, 0.91)], "0.0001 at the top edge"),
        ("hf_trainer", [(5e-5, 0.92), (1e-4, 0.91)], "5e-05 at the bottom edge"),
        ("hf_trainer", [(5e-5, 0.90), (1e-4, 0.91), (2e-4, 0.905)], ""),
        ("hf_trainer", [(5e-5, 0.90), (1e-4, 0.91), (2e-4, 0.92), (4e-4, 0.93), (8e-4, 0.94)], ""),  # the cap
        ("tokclf", [(5e-5, 0.90), (1e-4, 0.91), (2e-4, 0.905)], "tricks not all tried"),
    ],
)
def test_table_says_when_a_chosen_setting_is_not_the_grid_last_word(tmp_path, monkeypatch, system, runs, why):
    monkeypatch.setattr(tune, "OUT", tmp_path)
    write_runs(tmp_path, "ewt", [(system, {"lr": lr}, 0, acc) for lr, acc in runs])
    tune.table(reporting())
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith(f"| {system} "))
    best = max(runs, key=lambda r: r[1])[0]
    chosen = row.split(" | ")[-1].rstrip(" |")
    assert chosen == (f"lr{best:g} (grid not finished: {why})" if why else f"lr{best:g}")
    if system == "tokclf":
        tricks = [({"lr": 1e-4, **t}, 0.90) for t in ({"averages": True}, {"head_lr_scale": 10.0}, {"layer_decay": 0.9})]
        write_runs(tmp_path, "ewt", [(system, setting, 0, acc) for setting, acc in tricks])
        tune.table(reporting())
        assert "(grid not finished" not in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize(
    "grid,why",
    [
        ({}, "5e-05 not run"),  # judged by the default grid (--lrs 5e-5,1e-4), 5e-5 is missing
        ({"lrs": "1e-4,2e-4"}, ""),  # the grid run was given: 2e-4 is interior
        ({"lrs": "1e-4,2e-4,4e-4,8e-4"}, "0.0008 not run"),
    ],
)
def test_grid_not_finished_is_judged_by_the_grid_run_was_given(tmp_path, monkeypatch, grid, why):
    monkeypatch.setattr(tune, "OUT", tmp_path)
    write_runs(tmp_path, "ewt", [("hf_trainer", {"lr": lr}, 0, acc) for lr, acc in [(1e-4, 0.91), (2e-4, 0.92), (4e-4, 0.915)]])
    tune.table(reporting(**grid))
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| hf_trainer "))
    chosen = row.split(" | ")[-1].rstrip(" |")
    assert chosen == (f"lr0.0002 (grid not finished: {why})" if why else "lr0.0002")
