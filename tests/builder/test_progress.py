"""blox_env.progress: the one progress-bar helper (rich); bars nest, disabled bars are no-ops, stdout stays clean."""

from __future__ import annotations

import pytest

from blox_env.progress import ProgressBar, track


def test_track_yields_everything_and_nested_bars_work(capsys: pytest.CaptureFixture[str]) -> None:
    seen = []
    with ProgressBar(2, description="outer", keep=True) as outer:
        for i in range(2):
            seen += list(track(range(3), description=f"inner {i}"))
            outer.update(description=f"outer {i}")
    assert seen == [0, 1, 2] * 2
    assert capsys.readouterr().out == ""  # bars draw on stderr


def test_disabled_bar_is_a_no_op() -> None:
    bar = ProgressBar(None, description="off", enabled=False)
    bar.update(5)
    bar.close()
    bar.close()
    assert list(track(iter([1, 2]), description="off", enabled=False)) == [1, 2]


def test_close_is_idempotent_and_a_bar_closes_on_error() -> None:
    with pytest.raises(RuntimeError), ProgressBar(3, description="boom") as bar:
        bar.update()
        raise RuntimeError("stop")
    bar.close()
