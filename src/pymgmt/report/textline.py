"""The date and the escaping of every text line pymgmt writes, with nothing but `time`.

`pymgmt.report.logs` formats the lines (its docstring has the format);
these two pieces live apart so that the one-shot fast path
(`pymgmt.oneshot`), which writes its lines before the rest of pymgmt is
imported, writes them exactly alike.
"""

from __future__ import annotations

import time


def timestamp(t: float) -> str:
    """``2026-11-27T22:30:01.123+00:00``: local time with its offset, so a
    line read on another host, or after a DST change, is still unambiguous.

    What ``datetime.fromtimestamp(t).astimezone().isoformat(timespec=
    "milliseconds")`` says, from `time` alone (datetime costs a millisecond
    of every start, issue 13).
    """
    whole = float(int(t))  # math.modf(t), exactly (the subtraction below is exact), without math
    frac = t - whole  # rounded to microseconds as datetime rounds them
    sec, us = int(whole), round(frac * 1_000_000)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    elif us < 0:
        sec, us = sec - 1, us + 1_000_000
    local = time.localtime(sec)
    offset = local.tm_gmtoff
    sign = "-" if offset < 0 else "+"
    minutes, seconds = divmod(abs(offset), 60)
    zone = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}" + (f":{seconds:02d}" if seconds else "")
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{us // 1000:03d}{zone}"


def visible(line: str) -> str:
    """`line` with every character a terminal would act on (an escape
    sequence, a carriage return) written as its escape. Messages carry
    names and content from graphs, files and other hosts."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in line)


def change_text(field: str, old: object, new: object) -> str:
    """One change of a NOTICE line: ``mode 0600 -> 0644``, ``content``, ``run 'cmd'``."""
    if field == "run":
        return f"run {new!r}"
    if field == "content":
        return "content" if old is None else f"content {old} -> {new}"
    if old is None:
        return f"{field} {new}"
    return f"{field} {old} -> {new}"
