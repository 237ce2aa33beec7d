"""The audit's progress bar: drawn on a terminal with \\r, ended with a newline; silent elsewhere."""

import io

from bureau.tools.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_rewritten_line():
    out = Terminal()
    bar = ProgressBar(out)
    bar(0, 4, 0)
    bar(4, 4, 120)  # the last update is always drawn
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 1
    assert "0/4 blocks" in text and f"[{'#' * 30}] 4/4 blocks" in text and "receipts/s, ETA 0 s" in text


def test_a_stream_that_is_no_terminal_gets_nothing():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar(1, 2, 10)
    bar(2, 2, 20)
    bar.close()
    assert out.getvalue() == ""


def test_a_caller_may_show_its_own_figures_after_the_bar():
    out = Terminal()
    bar = ProgressBar(out)
    bar(3, 4, detail="sim 18:00, 120 receipts")
    bar.close()
    text = out.getvalue()
    assert f"[{'#' * 22}{'.' * 8}] sim 18:00, 120 receipts " in text and "blocks" not in text
