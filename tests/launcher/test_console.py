"""The launcher's console: raw bytes of the console rank, other ranks' errors at line boundaries."""

from __future__ import annotations

import io
import os
from pathlib import Path

from fulmen.launcher.console import STDERR, STDOUT, Console, ConsoleRank, ErrorTail, TracebackFilter, _prefixed, is_error_line


def console() -> tuple[Console, io.BytesIO, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    return Console(out, err), out, err  # type: ignore[arg-type]


def test_a_note_waits_for_the_console_rank_to_end_its_line() -> None:
    shown, out, err = console()
    shown.write_raw(STDERR, b"\r 40%|####  ")
    shown.note("[rank1]:ValueError: boom")
    assert err.getvalue() == b"\r 40%|####  "  # not cut into the bar
    shown.write_raw(STDERR, b"\r100%|######|\n")
    assert err.getvalue() == b"\r 40%|####  \r100%|######|\n[rank1]:ValueError: boom\n"
    shown.write_raw(STDOUT, b"partial")
    shown.note("[rank1]:second")
    assert err.getvalue().endswith(b"boom\n")  # stdout mid-line holds it too (one terminal)
    shown.end_raw(STDOUT)  # the rank is gone: nothing to wait for
    assert err.getvalue().endswith(b"boom\n[rank1]:second\n") and out.getvalue() == b"partial"


def test_prefix_goes_at_line_starts_only() -> None:
    assert _prefixed(b"a\nb\rc", b"[r2]:", at_line_start=True) == b"[r2]:a\n[r2]:b\r[r2]:c"
    assert _prefixed(b"rest of c\n", b"[r2]:", at_line_start=False) == b"rest of c\n"


def test_console_rank_copies_bytes_unchanged_to_console_and_log(tmp_path: Path) -> None:
    shown, out, err = console()
    log = tmp_path / "rank_0.log"
    rank = ConsoleRank(shown, log)
    payload = "é ✓ 中文 🚀".encode()
    with open(rank.stdout_path, "wb") as stdout, open(rank.stderr_path, "wb") as stderr:
        rank.started()
        stdout.write(payload[:5])  # a character cut in two between writes
        stdout.flush()
        stderr.write(b"\r10%\r20%")
        stderr.flush()
        stdout.write(payload[5:])
    rank.finish()
    assert out.getvalue() == payload and err.getvalue() == b"\r10%\r20%"
    assert sorted(log.read_bytes()) == sorted(payload + b"\r10%\r20%")


def test_console_rank_finishes_when_a_pipe_stays_open(tmp_path: Path) -> None:
    shown, out, _ = console()
    rank = ConsoleRank(shown, tmp_path / "rank_0.log")
    straggler = os.open(rank.stdout_path, os.O_WRONLY)  # e.g. a grandchild that outlived the rank
    os.write(straggler, b"last words\n")
    rank.finish(timeout=2.0)
    os.close(straggler)
    assert out.getvalue() == b"last words\n"


def test_traceback_is_shown_whole_and_other_output_not() -> None:
    lines = [
        "epoch 1 step 3 loss 0.25",
        "the end without newlineTraceback (most recent call last):",
        '  File "train.py", line 3, in <module>',
        "    f()",
        "",
        "During handling of the above exception, another exception occurred:",
        "fulmen.errors.ClusterMismatchError: Trainer(devices=4) asks for 4",
        "HINT: use devices=2",
        "epoch 2",
        "RuntimeError: Connection closed by peer",
    ]
    keep = TracebackFilter()
    assert [keep.shown_part(line) for line in lines] == [
        None,
        "Traceback (most recent call last):",
        *lines[2:8],
        None,
        "RuntimeError: Connection closed by peer",
    ]


def test_error_tail_shows_other_ranks_errors_once_and_remembers_them(tmp_path: Path) -> None:
    shown, _, err = console()
    log = tmp_path / "rank_1.log"
    log.write_bytes(b"step 1\r\rstep 2\nTraceback (most recent call last):\n  File \"x\"\nValueError: bo")
    tail = ErrorTail(shown, {1: log, 2: tmp_path / "missing.log"}, poll_s=0.01)
    tail.start()
    with log.open("ab") as more:
        more.write(b"om\n")
    tail.stop()
    assert err.getvalue().decode() == (
        "[rank1]:Traceback (most recent call last):\n[rank1]:  File \"x\"\n[rank1]:ValueError: boom\n"
    )
    assert tail.shown == {1}


def test_error_lines_of_other_ranks() -> None:
    assert is_error_line("Traceback (most recent call last):")
    assert is_error_line("[rank1]: fulmen.errors.ClusterMismatchError: Trainer(devices=4) asks for")
    assert is_error_line("RuntimeError: Connection closed by peer")
    assert not is_error_line("epoch 1 step 3 loss 0.25")
    assert not is_error_line("using ErrorCorrection module")


def test_a_line_torch_already_prefixed_with_the_rank_is_not_prefixed_twice(tmp_path: Path) -> None:
    shown, _, err = console()
    log = tmp_path / "rank_1.log"
    log.write_bytes(b"[rank1]:Traceback (most recent call last):\n[rank1]:RuntimeError: gloo\n")
    tail = ErrorTail(shown, {1: log}, poll_s=0.01)
    tail.start()
    tail.stop()
    assert err.getvalue().decode() == "[rank1]:Traceback (most recent call last):\n[rank1]:RuntimeError: gloo\n"
