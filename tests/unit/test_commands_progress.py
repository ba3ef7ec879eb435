"""The drain progress line: rewritten in place on a terminal, one line per change in logs and pipes."""

import io

from asrtop.commands import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_pipe_gets_one_line_per_change():
    out = io.StringIO()
    p = Progress("n1", out)
    for n, t in ((3, 0.0), (3, 0.5), (2, 1.0), (None, 1.5), (None, 2.0), (0, 2.6)):
        p(n, t)
    p.end()
    # 3 last seen at 0.5 s, 2 at 1.0 s: 2 per second, about 1 s left (the rollout's estimate and words)
    assert out.getvalue().splitlines() == ["n1: 3 in flight, waited 0.0 s",
                                           "n1: 2 in flight, waited 1.0 s, about 1.0 s left",
                                           "n1: ? in flight, waited 1.5 s", "n1: 0 in flight, waited 2.6 s"]


def test_tty_rewrites_in_place_and_ends_the_line():
    out = Tty()
    p = Progress("n1", out)
    p(2, 0.0)
    p(2, 0.5)
    p(0, 1.0)
    p.end()
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 3 and text.endswith("n1: 0 in flight, waited 1.0 s\n")
    assert text.count("\n") == 1
