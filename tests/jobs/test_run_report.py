"""``fulmen report``: the HTML page parsed back: its sections, figures and table cells."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fulmen.jobs import report_plots
from fulmen.jobs.run_report import logged_metric_series, render_report, write_report
from tests.jobs.test_run_timeline import preempted_once_events


class PageParser(HTMLParser):
    """Collects section ids, figure ids (with whether each holds an <svg>), and each section's table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, bool] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._figure: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(str(found["id"]))
        elif tag == "figure":
            self._figure = str(found["id"])
            self.figures[self._figure] = False
        elif tag == "svg" and self._figure:
            self.figures[self._figure] = True
        elif tag == "tr" and self.sections:
            self.rows.setdefault(self.sections[-1], []).append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[self.sections[-1]][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._figure is None:
            self.text.append(data)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "train-1"
    run.mkdir()
    (run / "events.jsonl").write_text("".join(json.dumps({**e, "host": "n1"}) + "\n" for e in preempted_once_events()))
    history = [{"time": 110.0 + 5 * i, "step": 2 * i, "metric": "val_loss", "metric_value": 1.0 / (i + 1)}
               for i in range(5)] + [{"time": 155.0, "step": 10, "metric": "val_loss", "metric_value": 0.1}]
    (run / "progress.jsonl").write_text("".join(json.dumps(p) + "\n" for p in history))
    (run / "progress.json").write_text(json.dumps({**history[-1], "total": 16, "steps_per_s": 0.5}))
    logs = run / "csv" / "version_0"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train_loss,val_loss\n0,3,0.9,\n0,7,0.5,\n0,7,,0.4\n1,15,0.2,0.3\n")
    return run


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def test_the_page_has_every_section_the_plots_and_the_attempt_table(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    page = parse(render_report(run_dir, "job 5 (slurm) train", plots=True, now=200.0))
    assert page.sections == ["summary", "curve", "logged", "attempts", "lost", "checkpoints", "events"]
    assert page.figures == {"curve-plot": True, "logged-plot": True, "attempts-plot": True}
    header, first, second = page.rows["attempts"]
    assert header[:4] == ["attempt", "started", "ended", "wall time"]
    assert first[3:8] == ["20s (20.0s)", "-", "19s (19.0s)", "1.00s in 2", "-"]
    assert first[8] == "stopped at step 8 with exit code 75: preempted"
    assert second[3:8] == ["20s (20.0s)", "20s (20.0s)", "20s (20.0s)", "0.00s in 0", "0 (from step 8)"]
    lost = dict(page.rows["lost"][1:])
    assert lost["queue waits between attempts"] == "20s (20.0s)"
    assert lost["work redone after resumes"] == "0 steps (0s (0.0s))"
    summary = dict(page.rows["summary"][1:])
    assert (summary["attempts"], summary["preemptions"], summary["final state"]) == ("2", "1", "finished")
    assert [row[1] for row in page.rows["checkpoints"][1:]] == ["4", "8"]
    assert len(page.rows["events"]) == 1 + len(preempted_once_events())
    assert not any("Plots need matplotlib" in text for text in page.text)


def test_without_matplotlib_the_tables_stay_and_the_page_names_the_extra(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_plots, "available", lambda: False)
    page = parse(render_report(run_dir, "job 5", now=200.0))
    assert page.figures == {}
    assert any("pip install 'fulmen[report]'" in text for text in page.text)
    assert len(page.rows["attempts"]) == 3 and page.rows["logged"][1][0] == "train_loss"


def test_logged_metrics_come_from_metrics_csv_by_step(run_dir: Path) -> None:
    assert logged_metric_series(run_dir) == {"train_loss": [(3.0, 0.9), (7.0, 0.5), (15.0, 0.2)],
                                             "val_loss": [(7.0, 0.4), (15.0, 0.3)]}


def test_write_report_defaults_into_the_run_dir_and_a_run_without_events_still_renders(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-yet"
    empty.mkdir()
    path = write_report(empty)
    assert path == empty / "report.html"
    page = parse(path.read_text())
    assert "summary" in page.sections and "attempts" in page.sections and page.figures == {}


def test_a_logger_outside_the_run_dir_is_found_through_result_json(run_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "logs" / "version_3"
    elsewhere.mkdir(parents=True)
    (elsewhere / "metrics.csv").write_text("epoch,step,lr\n0,1,0.1\n")
    (run_dir / "result.json").write_text(json.dumps({"state": "finished", "log_dir": str(elsewhere)}))
    assert logged_metric_series(run_dir)["lr"] == [(1.0, 0.1)]


def test_the_curve_marks_each_signal_stop_requeue_and_resume_once(run_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    page = render_report(run_dir, "job 5", plots=True, now=200.0)
    curve = page[page.index('<figure id="curve-plot">'):page.index("</figure>", page.index('<figure id="curve-plot">'))]
    labels = [label for label in ("signal SIGUSR2", "stopped 8", "requeued", "resumed 8") if f">{label}<" in curve]
    assert labels == ["signal SIGUSR2", "stopped 8", "requeued", "resumed 8"]
    assert curve.count(">signal SIGUSR2<") == 1  # one signal event per rank, one mark


def test_tensorboard_scalars_of_every_attempt_make_one_curve(tmp_path: Path) -> None:
    from fulmen.loggers import TensorBoardLogger

    run = tmp_path / "run"
    for steps in ((0, 1), (2, 3)):  # two attempts: two event files in one version
        logger = TensorBoardLogger(str(run), name="lightning_logs", version=0)
        for step in steps:
            logger.log_metrics({"train_loss": 1.0 / (step + 1), "epoch": 0}, step=step)
        logger.finalize("success")
    (run / "lightning_logs" / "version_0" / "broken.tfevents.x").write_bytes(b"\x00garbage")
    assert logged_metric_series(run) == {"train_loss": [(0.0, 1.0), (1.0, 0.5), (2.0, pytest.approx(1 / 3)),
                                                        (3.0, 0.25)]}
