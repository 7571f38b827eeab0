"""benchmark.py times the step the trainer runs, on every dataset, in each compile mode's
settings (the timings themselves are measured, never asserted)."""
import pytest

import benchmark
from conftest import ROOT
from trainer import Trainer


def test_the_benchmark_times_the_trainers_step_on_every_dataset(monkeypatch):
    monkeypatch.chdir(ROOT)  # benchmark.py reads ./data
    shapes, real = [], Trainer.step

    def recording_step(self, x, y, lr):
        shapes.append(tuple(x.shape))
        return real(self, x, y, lr)

    monkeypatch.setattr(Trainer, "step", recording_step)
    for dataset, side in (("mnist", 28), ("translated", 60), ("cluttered", 60),
                          ("cluttered100", 100)):
        r = benchmark.bench_training(benchmark.settings(dataset, "both", runs=2), "cpu", 8, 1,
                                     lambda: None)
        assert r["ms_per_run_step"] > 0 and shapes[-1] == (2, 8, 1, side, side), dataset


@pytest.mark.parametrize("mode", ["eager", "default", "reduce-overhead"])
def test_benchmark_settings_name_the_compile_mode(mode):
    cfg = benchmark.settings("mnist", "both", mode, runs=3)
    assert len(cfg) == 3 and cfg[0].compile == (mode != "eager")
    assert mode == "eager" or cfg[0].compile_mode == mode


def test_benchmark_settings_carry_the_batch_size():
    """--batch sets each run's batch size in the group rows (128: the strong recipe's)."""
    assert [c.batch_size for c in benchmark.settings("translated", "both", runs=2)] == [32, 32]
    assert [c.batch_size for c in benchmark.settings("translated", "both", runs=2,
                                                     batch=128)] == [128, 128]


def test_compiled_rows_past_the_deadline_are_listed_not_timed(monkeypatch):
    """--budget_s: an eager row is always timed; a compiled one not started by the deadline
    is listed under 'skipped'; the report is saved after every timed row."""
    monkeypatch.chdir(ROOT)
    report, saves = {"groups": [], "skipped": []}, []
    rows = [("mnist", "eager", 1), ("mnist", "default", 2), ("translated", "eager", 1)]
    benchmark.time_groups(rows, "cpu", 4, 1, lambda: None, 0.0, report,
                          lambda: saves.append(len(report["groups"])))
    assert [(g["dataset"], g["mode"], g["K"]) for g in report["groups"]] == [
        ("mnist", "eager", 1), ("translated", "eager", 1)]
    assert all(g["ms_per_run_step"] > 0 for g in report["groups"])
    assert report["skipped"] == [{"dataset": "mnist", "K": 2, "mode": "default"}]
    assert saves == [1, 2]
