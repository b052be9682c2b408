"""Splitting files into articles: boundaries, titles, boilerplate, dates, decoding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.sources.articles import (
    BinaryFileError,
    decode_text,
    find_published,
    paragraphs,
    split_articles,
    strip_boilerplate,
)
from tests.conftest import seed_text


def test_seed_004_splits_into_its_concatenated_articles():
    articles = split_articles(seed_text("004"))
    assert len(articles) >= 9
    openings = [a.body.split("\n\n")[0][:50] for a in articles]
    assert openings[0].startswith("LONDON — The U.K.’s data protection watchd")
    assert openings[1].startswith("Millions of people are forming emotional")  # after the "Tag -" line
    assert any(o.startswith("SHANGHAI — As Keir Starmer arrived") for o in openings)
    assert any(o.startswith("ABOARD THE PRIME MINISTER’S PLANE TO BEIJING —") for o in openings)
    assert sum(o.startswith("BEIJING —") for o in openings) == 2
    assert sum(o.startswith("LONDON —") for o in openings) == 4


def test_seed_004_fresh_lead_without_dateline_starts_an_article():
    titles = [a.title for a in split_articles(seed_text("004"))]
    assert any(t.startswith("The U.K. and China have announced a new services partnership") for t in titles)


def test_tag_line_is_not_article_text():
    for article in split_articles(seed_text("004")):
        assert "Tag - Technology UK" not in article.body


@pytest.mark.parametrize("prefix", ["000", "001", "002", "003"])
def test_single_article_files_stay_one_item(prefix):
    assert len(split_articles(seed_text(prefix))) == 1


def test_headline_is_the_title_when_the_file_has_one():
    assert split_articles(seed_text("000"))[0].title == (
        "Labour’s softening stance towards China reinforced by dropped spy case"
    )
    # 003 opens with a notification prompt: boilerplate goes first, then the headline is found.
    assert split_articles(seed_text("003"))[0].title == (
        "UK Foreign Secretary David Lammy to visit China in an attempt to reset frosty relations"
    )


def test_title_without_headline_is_the_first_sentence_without_dateline():
    title = split_articles(seed_text("004"))[0].title
    assert title.startswith("The U.K.’s data protection watchdog has opened a formal investigation")
    assert "LONDON" not in title
    assert len(title) <= 141


def test_boilerplate_is_stripped():
    body = split_articles(seed_text("003"))[0].body
    for junk in (
        "Your support helps us",
        "Your donation allows us",
        "Your support makes all the difference",
        "Thank you for registering",
        "Please refresh the page",
        "Notifications can be managed",
        "Stay up to date with notifications",
    ):
        assert junk not in body
    assert "Read more at DailyMail" not in split_articles(seed_text("000"))[0].body
    assert "Support Just the News" not in split_articles(seed_text("002"))[0].body


def test_duplicated_captions_are_kept_once():
    body = split_articles(seed_text("001"))[0].body
    assert body.count("Parliamentary aide Chris Cash (pictured)") == 1
    assert body.count("(Stock image)") == 1
    # same caption once with straight and once with curly quotes: still one
    assert body.count("During her short tenure, Liz Truss had a desire") == 2  # text + one caption


def test_strip_boilerplate_keeps_short_repeated_lines():
    assert strip_boilerplate(["Analysis", "Body text one.", "Analysis"]) == ["Analysis", "Body text one.", "Analysis"]


@pytest.mark.parametrize(
    ("para", "expected"),
    [
        ("Published: January 29, 2026 10:57pm", datetime(2026, 1, 29, 22, 57, tzinfo=UTC)),
        ("Thursday 17 October 2024 14:16 BST", datetime(2024, 10, 17, 13, 16, tzinfo=UTC)),
        ("Updated 3 March 2025", datetime(2025, 3, 3, tzinfo=UTC)),
        ("2025-06-01T08:30:00+02:00", datetime(2025, 6, 1, 6, 30, tzinfo=UTC)),
        ("Sept. 4, 2023 at 9:05 a.m. EDT", datetime(2023, 9, 4, 13, 5, tzinfo=UTC)),
    ],
)
def test_dates_are_parsed_to_utc(para, expected):
    assert find_published(["Headline", para])[0] == expected


def test_dates_inside_long_body_sentences_are_not_publication_dates():
    para = "In a speech on 12 May 2025 the minister said " + "many things " * 20
    assert find_published([para]) == (None, None)


def test_seed_dates_and_date_line_removed_from_body():
    article = split_articles(seed_text("002"))[0]
    assert article.published == datetime(2026, 1, 29, 22, 57, tzinfo=UTC)
    assert "Published:" not in article.body
    assert split_articles(seed_text("000"))[0].published is None


def test_hard_wrapped_lines_are_unwrapped_into_paragraphs():
    text = (
        "LONDON — The first paragraph is long enough to wrap across two lines of text\n"
        "and ends here.\n"
        "The second paragraph starts on a new line and is also long enough to wrap the\n"
        "text again.\n"
        "Short third one.\n"
        "A fourth paragraph that is long enough to wrap the text onto another line of\n"
        "output.\n"
    )
    assert paragraphs(text) == [
        "LONDON — The first paragraph is long enough to wrap across two lines of text and ends here.",
        "The second paragraph starts on a new line and is also long enough to wrap the text again.",
        "Short third one.",
        "A fourth paragraph that is long enough to wrap the text onto another line of output.",
    ]


def test_decode_utf8_with_bom_and_invalid_bytes():
    assert decode_text("\ufeffHéllo".encode()) == ("Héllo", False)
    text, replaced = decode_text("Caf\xe9 news about tariffs".encode("latin-1"))
    assert replaced and text.startswith("Caf\ufffd news")


def test_binary_is_refused():
    with pytest.raises(BinaryFileError):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(BinaryFileError):
        decode_text(bytes(range(1, 32)) * 50)
