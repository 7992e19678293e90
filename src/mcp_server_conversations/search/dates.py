"""Dates in a search query: found, taken out of the words searched for, and turned into the span
of message timestamps they point at.

A question like "what did Maria cook in May 2023?" names a time, not words a message holds:
messages tell events ("we cooked paella yesterday"), and the calendar is in their timestamps.
So a date phrase never reaches full-text or the embedding as words; the service searches the span
first (search/dates.py `DateSpan.bounds`) and fills the rest of the page from the whole scope.

The span is the named day, week, month or year, widened by SLACK_BEFORE before (time zones) and
SLACK_AFTER after: people tell what happened days or weeks later. Relative phrases ("yesterday",
"last week", "3 days ago") are resolved against the time of the search. A day or month without a
year is its latest occurrence not after today. Day/month/year written with slashes are ambiguous
(7/5 is May or July) and are only taken out of the words.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..models import SearchResult
from ..util import to_iso

SLACK_BEFORE = timedelta(days=1)
SLACK_AFTER = timedelta(days=15)
# The words a chat message dates what it tells with ("yesterday", "three days ago", "last week"): a
# question naming a day searches them within its span, so a message that tells of that day is a
# candidate even when it shares no other word with the question. ("evening" is not among them: it
# stems to "even", which would make every message holding that word one.)
TELLING_WORDS = ("yesterday", "today", "tonight", "ago", "morning", "afternoon", "last", "week", "weekend")
TELLS_SCAN = 2000  # characters of a candidate read for dates (tool outputs can be long; chat turns are not)

_MONTH_NAMES = "january february march april may june july august september october november december".split()
_MONTHS = "|".join(_MONTH_NAMES + ["jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"])
_DAY = r"(?P<{0}>\d{{1,2}})(?:st|nd|rd|th)?"
_M = r"(?P<{0}>" + _MONTHS + r")\.?"
_YEAR = r"(?P<{0}>(?:19|20)\d\d)"
_PREP = r"(?:(?:in|on|around|during|since|by|from|until|at|of)\s+)?"
_UNIT = r"(?P<unit>day|week|weekend|month|year)s?"
_NUMBER = r"(?P<count>\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|a\s+couple\s+of|a\s+few)"
_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_WORDS |= {"eight": 8, "nine": 9, "ten": 10, "a couple of": 2, "a few": 3}

_PATTERNS = [
    ("iso", r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?z?)?"),
    ("slashed", r"\d{1,2}[/.]\d{1,2}[/.]\d{2,4}"),
    (
        "part",
        rf"(?:the\s+)?(?P<part>first|last|second|third)\s+week\s+of\s+{_M.format('m')}(?:,?\s+{_YEAR.format('y')})?",
    ),
    (
        "day",
        rf"(?:the\s+)?(?:(?P<span>week|weekend)\s+of\s+)?(?:the\s+)?(?:"
        rf"{_DAY.format('d')}\s+(?:of\s+)?{_M.format('m')}(?:,?\s+{_YEAR.format('y')})?"
        rf"|{_M.format('m2')}\s+{_DAY.format('d2')}(?!\d)(?:,?\s+{_YEAR.format('y2')})?)",
    ),
    ("month", rf"(?:the\s+)?(?:month\s+of\s+)?{_M.format('m')},?\s+{_YEAR.format('y')}"),
    ("bare-month", rf"(?:in|during|since|until|of)\s+(?:the\s+month\s+of\s+)?{_M.format('m')}(?!\w)"),
    ("year", rf"(?:in|during|of|since|until)\s+(?:the\s+year\s+)?{_YEAR.format('y')}"),
    ("ago", rf"{_NUMBER}\s+{_UNIT}\s+ago"),
    ("last", r"(?:the\s+)?(?P<which>last|past|previous|this)\s+(?P<unit>week|weekend|month|year)"),
    ("named", r"(?P<word>yesterday|(?:earlier\s+)?today|tonight|the\s+day\s+before\s+yesterday)"),
    ("part-of-day", r"(?:this|earlier\s+this)\s+(?:morning|afternoon|evening)"),
]
_DATES = [(name, re.compile(rf"\b{_PREP}(?:{p})\b", re.IGNORECASE)) for name, p in _PATTERNS]


def _found(text: str) -> list[tuple[str, re.Match[str]]]:
    """The date phrases in `text`, in order; where two overlap, the one listed first above wins
    ("the last week of June" before "last week")."""
    taken: list[tuple[str, re.Match[str]]] = []
    starts: list[int] = []  # the taken matches' starts, sorted (they never overlap)
    for name, pattern in _DATES:
        for m in pattern.finditer(text):
            i = bisect.bisect_left(starts, m.start())
            before_ends = i == 0 or taken[i - 1][1].end() <= m.start()
            if before_ends and (i == len(starts) or m.end() <= starts[i]):
                starts.insert(i, m.start())
                taken.insert(i, (name, m))
    return taken


@dataclass(frozen=True)
class DateSpan:
    """Timestamps a query's dates point at: [start, end), slack included; the days named, [first,
    after), without it."""

    start: datetime
    end: datetime
    first: date
    after: date

    def bounds(self) -> tuple[str, str]:
        """The span as search bounds (ISO strings, both inclusive, as parse_date_bound makes them)."""
        return to_iso(self.start), to_iso(self.end - timedelta(microseconds=1))


def _month(name: str) -> int:
    name = name.lower().rstrip(".")
    return next(i for i, m in enumerate(_MONTH_NAMES, start=1) if m.startswith(name[:3]))


def _month_span(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    return first, date(year + month // 12, month % 12 + 1, 1)


def _latest(month: int, day: int | None, today: date) -> int:
    """The year of the latest such day (or month) not after today."""
    this = date(today.year, month, day or 1)
    return today.year if this <= today else today.year - 1


def _span(kind: str, m: re.Match[str], today: date) -> tuple[date, date] | None:
    """The days [first, after) a matched phrase names, or None (ambiguous or impossible)."""
    g = m.groupdict()
    try:
        if kind == "iso":
            d = date(int(g["y"]), int(g["mo"]), int(g["d"]))
            return d, d + timedelta(days=1)
        if kind == "part":
            month = _month(g["m"])
            year = int(g["y"]) if g["y"] else _latest(month, None, today)
            first, after = _month_span(year, month)
            if g["part"].lower() == "last":
                return after - timedelta(days=7), after
            k = {"first": 0, "second": 1, "third": 2}[g["part"].lower()]
            return first + timedelta(days=7 * k), first + timedelta(days=7 * k + 7)
        if kind == "day":
            month = _month(g["m"] or g["m2"])
            day_no = int(g["d"] or g["d2"])
            year_text = g["y"] or g["y2"]
            year = int(year_text) if year_text else _latest(month, day_no, today)
            d = date(year, month, day_no)
            if g["span"]:
                return d, d + timedelta(days=7 if g["span"].lower() == "week" else 3)
            return d, d + timedelta(days=1)
        if kind == "month":
            return _month_span(int(g["y"]), _month(g["m"]))
        if kind == "bare-month":
            month = _month(g["m"])
            return _month_span(_latest(month, None, today), month)
        if kind == "year":
            return date(int(g["y"]), 1, 1), date(int(g["y"]) + 1, 1, 1)
        if kind == "ago":
            count = g["count"].lower()
            n = int(count) if count.isdigit() else _WORDS[re.sub(r"\s+", " ", count)]
            unit = g["unit"].lower()
            days = {"day": 1, "week": 7, "weekend": 7, "month": 30, "year": 365}[unit] * n
            d = today - timedelta(days=days)
            width = {"day": 1, "week": 7, "weekend": 7, "month": 30, "year": 365}[unit]
            return d - timedelta(days=width // 2), d + timedelta(days=width // 2 + 1)
        if kind == "last":
            unit, which = g["unit"].lower(), g["which"].lower()
            if unit in ("week", "weekend"):
                monday = today - timedelta(days=today.weekday())
                first = monday if which == "this" else monday - timedelta(days=7)
                return first, first + timedelta(days=7)
            if unit == "month":
                first, after = _month_span(today.year, today.month)
                if which != "this":
                    first, after = _month_span(
                        *((today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12))
                    )
                return first, after
            year = today.year if which == "this" else today.year - 1
            return date(year, 1, 1), date(year + 1, 1, 1)
        if kind == "named":
            word = re.sub(r"\s+", " ", g["word"].lower()).removeprefix("earlier ")
            back = {"today": 0, "tonight": 0, "yesterday": 1, "the day before yesterday": 2}[word]
            d = today - timedelta(days=back)
            return d, d + timedelta(days=1)
        if kind == "part-of-day":
            return today, today + timedelta(days=1)
    except (ValueError, KeyError, StopIteration):  # 31 February, a word we do not read as a number
        return None
    return None  # slashed: ambiguous


def understand(text: str, now: datetime | None = None) -> tuple[str, DateSpan | None]:
    """The query without its date phrases, and the span they name (the union of all of them),
    widened by the slack; the text unchanged and None when it names no date."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    spans = []
    for kind, m in _found(text):
        found = _span(kind, m, today)
        if found:
            spans.append(found)
    stripped = without_dates(text)
    if not spans:
        return stripped, None
    first, after = min(s[0] for s in spans), max(s[1] for s in spans)
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC) - SLACK_BEFORE
    end = datetime.combine(after, datetime.min.time(), tzinfo=UTC) + SLACK_AFTER
    return stripped, DateSpan(start, end, first, after)


def tells_of(text: str, said_at: datetime, span: DateSpan) -> bool:
    """Whether `text`, said at `said_at`, dates something it tells into the span's days: "yesterday",
    "three days ago", "last week" read against the day it was said. Such a message is about the
    asked time, where one that only falls in the span's slack may be about anything."""
    return any(
        first < span.after and after > span.first
        for first, after in _told_days(text[:TELLS_SCAN], said_at.astimezone(UTC).date())
    )


@functools.lru_cache(maxsize=4096)
def _told_days(text: str, said: date) -> tuple[tuple[date, date], ...]:
    """The days a message's date phrases name, read from the day it was said. Remembered: the same
    messages come back as candidates search after search, and reading a text for dates is the
    costly part (a dozen patterns over it)."""
    days = (_span(kind, m, said) for kind, m in _found(text))
    return tuple(d for d in days if d)


def told_first(
    results: list[SearchResult], span: DateSpan, told_from: Sequence[SearchResult] | None = None
) -> list[SearchResult]:
    """`results` (best first) with those that tell of the span's days (`tells_of`) ahead of the rest.
    The telling ones are taken from `told_from` in its order (default: `results`), so a caller can
    add candidates found otherwise and choose their order; the rest keep `results`' order."""

    def tells(r: SearchResult) -> bool:
        return bool(r.content) and tells_of(r.content or "", datetime.fromisoformat(r.created_at), span)

    told: list[SearchResult] = []
    ids: set[str] = set()
    for r in results if told_from is None else told_from:
        if r.message_id not in ids and tells(r):
            told.append(r)
            ids.add(r.message_id)
    if not told:
        return results
    return told + [r for r in results if r.message_id not in ids]


def without_dates(text: str) -> str:
    """`text` with its date phrases left out (the whole text if nothing else is left)."""
    left = text
    for _, m in reversed(_found(text)):  # from the end: earlier offsets stay valid
        left = left[: m.start()] + " " + left[m.end() :]
    stripped = re.sub(r"\s+([?!.,;:])", r"\1", re.sub(r"\s+", " ", left)).strip(" ,")
    return stripped if re.search(r"\w", stripped) else text.strip()
