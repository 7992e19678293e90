"""Dates in a search query: the span they name and the words left to search for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mcp_server_conversations.search.dates import SLACK_AFTER, SLACK_BEFORE, tells_of, understand, without_dates

NOW = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)


def named(query: str) -> tuple[str, tuple[date, date] | None]:
    """The words left and the days named, slack taken off again: [first, after)."""
    text, span = understand(query, NOW)
    if span is None:
        return text, None
    return text, ((span.start + SLACK_BEFORE).date(), (span.end - SLACK_AFTER).date())


@pytest.mark.parametrize(
    ("query", "words", "days"),
    [
        ("What did Maria cook in May 2023?", "What did Maria cook?", (date(2023, 5, 1), date(2023, 6, 1))),
        ("what did Jonas bake on 8 May 2023", "what did Jonas bake", (date(2023, 5, 8), date(2023, 5, 9))),
        ("trip on May 7th, 2023", "trip", (date(2023, 5, 7), date(2023, 5, 8))),
        ("2023-05-08 meeting notes", "meeting notes", (date(2023, 5, 8), date(2023, 5, 9))),
        ("the week of 1 May 2023 hike", "hike", (date(2023, 5, 1), date(2023, 5, 8))),
        ("the last week of June 2023 concert", "concert", (date(2023, 6, 24), date(2023, 7, 1))),
        ("December 2022 party", "party", (date(2022, 12, 1), date(2023, 1, 1))),
        ("budget during 2024", "budget", (date(2024, 1, 1), date(2025, 1, 1))),
        # no year: the latest such day or month not after today
        ("dinner on 8 May", "dinner", (date(2026, 5, 8), date(2026, 5, 9))),
        ("party on 24 December", "party", (date(2025, 12, 24), date(2025, 12, 25))),
        # relative to the time of the search
        ("what did we eat yesterday", "what did we eat", (date(2026, 12, 3), date(2026, 12, 4))),
        ("the movie last week", "the movie", (date(2026, 11, 23), date(2026, 11, 30))),
        ("the run three days ago", "the run", (date(2026, 12, 1), date(2026, 12, 2))),
        ("plans last month", "plans", (date(2026, 11, 1), date(2026, 12, 1))),
    ],
)
def test_a_date_phrase_becomes_a_span_and_leaves_the_words(query: str, words: str, days: tuple[date, date]) -> None:
    assert named(query) == (words, days)


@pytest.mark.parametrize(
    "query",
    [
        "Maria may go to the market",  # "may" the verb
        "march in the parade",  # "march" the verb
        "room 2023 on the third floor",  # a number, not a year
        "which breed did Jonas adopt?",
    ],
)
def test_words_that_only_look_like_dates_stay_words(query: str) -> None:
    assert understand(query, NOW) == (query, None)


def test_impossible_or_ambiguous_dates_name_no_span() -> None:
    assert understand("on 31 February 2023", NOW)[1] is None
    assert understand("the bill of 07/05/2023", NOW) == ("the bill", None)  # 7 May or 5 July


def test_a_query_of_only_a_date_keeps_its_text() -> None:
    text, span = understand("May 2023", NOW)
    assert text == "May 2023" and span is not None
    assert without_dates("in May 2023") == "in May 2023"


def test_several_dates_name_the_span_covering_them() -> None:
    assert named("between 3 May 2023 and 9 June 2023 trips") == (
        "between and trips",
        (date(2023, 5, 3), date(2023, 6, 10)),
    )


def test_span_bounds_are_inclusive_iso_strings_like_the_date_filters() -> None:
    _, span = understand("on 8 May 2023", NOW)
    assert span is not None
    assert span.bounds() == ("2023-05-07T00:00:00.000000Z", "2023-05-23T23:59:59.999999Z")


@pytest.mark.parametrize(
    ("text", "said", "tells"),
    [
        ("Three days ago I ran a half marathon", datetime(2023, 5, 1, 18, tzinfo=UTC), True),
        ("yesterday we went to the lake", datetime(2023, 4, 29, 8, tzinfo=UTC), True),
        ("walked the Old Mill loop earlier today", datetime(2023, 4, 28, 20, tzinfo=UTC), True),
        ("this afternoon I baked bread", datetime(2023, 4, 28, 20, tzinfo=UTC), True),
        ("last week was exhausting", datetime(2023, 5, 3, 9, tzinfo=UTC), True),  # the week of 24 April
        ("yesterday we went to the lake", datetime(2023, 5, 1, 8, tzinfo=UTC), False),  # 30 April
        ("I ran a half marathon", datetime(2023, 4, 28, 8, tzinfo=UTC), False),  # on the day, tells no date
        ("the race on 28 April 2023 was great", datetime(2023, 6, 1, 8, tzinfo=UTC), True),
    ],
)
def test_a_message_tells_of_the_asked_day_when_its_dates_read_from_when_it_was_said_fall_in_it(
    text: str, said: datetime, tells: bool
) -> None:
    _, span = understand("what happened on 28 April 2023", NOW)
    assert span is not None
    assert tells_of(text, said, span) is tells
