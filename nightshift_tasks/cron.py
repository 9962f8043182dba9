"""Five-field cron expressions: each field checked against its range (so `61 25 * * *` is a
config error, not a crontab line that never fires), expanded to values for the backends
without cron syntax, and the next time one fires, for `status` and `cron status`.

Fields are minute, hour, day of month, month (or jan-dec) and day of week (0-7, 0 and 7
both Sunday, or sun-sat); each item is `*`, N, N-M, or either with `/STEP`, joined by
commas. Day of month and day of week follow cron: when both are restricted, either matches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))
NAMES = {3: ["", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
         4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}  # cron's names, each at its number
SEARCH_DAYS = 366 * 8  # "0 0 29 2 1" first fires within 8 years (Feb 29 or a Monday)
Fields = list[list[int] | None]  # per field its values; None where any value matches


def _number(text: str, index: int) -> int:
    if text.isdigit():
        return int(text)
    if text and text in NAMES.get(index, []):
        return NAMES[index].index(text)
    names = f" or a name ({', '.join(n for n in NAMES[index] if n)})" if index in NAMES else ""
    raise ValueError(f"{text!r} is not a number{names} in the {FIELDS[index][0]} field")


def expand(expression: str) -> Fields:
    """The values of each field; ValueError saying which item is wrong and what is allowed."""
    texts = expression.lower().split()
    if len(texts) != 5:
        raise ValueError("is not a five-field cron expression (minute hour day-of-month month "
                         "day-of-week)")
    fields: Fields = []
    for index, text in enumerate(texts):
        name, low, high = FIELDS[index]
        values: set[int] = set()
        for item in text.split(","):
            span, slash, step = item.partition("/")
            first, _, last = span.partition("-")
            start = low if span == "*" else _number(first, index)
            end = high if span == "*" or (slash and not last) else _number(last or first, index)
            if not (low <= start <= high and low <= end <= high):
                raise ValueError(f"{item!r} is outside the {name} field's range {low}-{high}")
            if start > end:
                raise ValueError(f"{item!r} runs backwards; write the lower {name} first")
            if slash and (not step.isdigit() or int(step) < 1):
                raise ValueError(f"{item!r} needs a step of 1 or more after the /")
            values.update(range(start, end + 1, int(step or 1)))
        values = {v % 7 for v in values} if index == 4 else values
        full = set(range(low, 7 if index == 4 else high + 1))
        fields.append(None if values == full else sorted(values))
    return fields


def next_run(fields: Fields, after: datetime) -> datetime:
    """The first minute after `after` (local wall clock) at which the expression fires."""
    minute, hour, mday, month, wday = fields
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for offset in range(SEARCH_DAYS):
        day = (start + timedelta(days=offset)).date()
        by_mday = mday is None or day.day in mday
        by_wday = wday is None or (day.weekday() + 1) % 7 in wday
        if (month is not None and day.month not in month) or not (
                by_mday or by_wday if mday is not None and wday is not None else by_mday and by_wday):
            continue
        for h in hour if hour is not None else range(24):
            for m in minute if minute is not None else range(60):
                at = start.replace(year=day.year, month=day.month, day=day.day, hour=h, minute=m)
                if at >= start:
                    return at
    raise ValueError("never fires: no month it allows has that day")
