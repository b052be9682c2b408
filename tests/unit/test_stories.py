"""Stories: near-duplicate items within the window are one story, and one story gives one item alert."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import alerts.stories as stories
from alerts.policy import alert_id, item_alerts
from alerts.stories import (
    MAX_MEMBER_IDS,
    MAX_SIGNATURES,
    THRESHOLD,
    StoryIndex,
    estimated_similarity,
    jaccard,
    normalize,
    shingles,
    signature,
    story_alerts,
    story_id_for,
)
from alerts.subscriptions import Subscription
from pipelines.model import Alert, ClassifiedItem, NewsItem, TopicMatch

T0 = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

# --- the calibration pairs (title, body) ----------------------------------------------------------

TAIPEI = (
    "Former aide in Taiwan's presidential office jailed for spying for China",
    "A Taipei court on Tuesday sentenced a former aide in the presidential office to seven years in prison for "
    "passing classified information to Chinese intelligence, in a case that has embarrassed President Lai Ching-te. "
    "Prosecutors said the man, who worked for the ruling Democratic Progressive Party, had been recruited while "
    "visiting the mainland and was paid in cash for documents.",
)
# Another outlet's rewrite of the same wire copy: new headline, lead lightly edited.
TAIPEI_OTHER_OUTLET = (
    "Taiwan jails ex-presidential office aide over spying for Beijing",
    "A court in Taipei on Tuesday sentenced a former aide in the presidential office to seven years in prison for "
    "passing classified information to Chinese intelligence, a case that has embarrassed President Lai Ching-te. "
    "Prosecutors said the man, a former member of the ruling Democratic Progressive Party, was recruited while "
    "visiting mainland China.",
)
TAIPEI_EDITED = ("Former aide in Taiwan's presidential office jailed for spying for Beijing", TAIPEI[1])
TAIPEI_EDITED_TWICE = ("Ex-aide in Taiwan's presidential office jailed for spying for Beijing", TAIPEI[1])
TAIPEI_APPEAL = (
    "Taiwan ex-aide appeals seven-year sentence for spying for China",
    "A former aide in Taiwan's presidential office who was jailed last week for seven years for passing classified "
    "information to Chinese intelligence has lodged an appeal, his lawyer said on Monday, arguing that the documents "
    "were not secret.",
)
DRESDEN = (
    "German court convicts former AfD aide of spying for China",
    "A Dresden court on Tuesday sentenced Jian G., a former aide to a far-right member of the European Parliament, to "
    "four years and nine months in prison for passing information to Chinese intelligence. Prosecutors said he had "
    "spied on Chinese dissidents in Germany and handed over hundreds of parliamentary documents.",
)
LONDON = (
    "Two men charged with spying for China in UK",
    "Two British men have been charged with passing information to Chinese intelligence, the Metropolitan Police said "
    "on Tuesday, in a case involving a parliamentary researcher. Both deny the charges and will appear in court next "
    "month.",
)
# Typographic quotes in one copy, straight ones in the other.
HK = (
    "Foreign Office summons Chinese chargé d’affaires over Hong Kong bounties",
    "Britain called in China’s most senior diplomat in London to protest at rewards offered for information on "
    "activists living in the UK, describing the move as a threat to democracy and fundamental rights.",
)
HK_OTHER_OUTLET = (
    "UK summons China's top diplomat over Hong Kong bounties on activists",
    "Britain called in China's most senior diplomat in London on Thursday to protest at rewards offered for "
    "information on activists living in the UK, describing the move as a threat to democracy and to fundamental "
    "rights.",
)
THAI = ("Thailand cuts visa-free stay for tourists from 60 to 30 days", "")
THAI_EDITED = ("Thailand halves visa-free stay for tourists from 60 to 30 days", "")
THAI_OTHER = ("Thailand extends visa-free stay for Indian tourists to 60 days", "")

# (name, a, b, same story?, exact Jaccard, MinHash estimate) — measured; THRESHOLD = 0.4 sits between the
# highest different-story estimate (0.28) and the lowest same-story one (0.52). See alerts/stories.py.
PAIRS = [
    ("other outlet, wire rewrite", TAIPEI, TAIPEI_OTHER_OUTLET, True, 0.523, 0.523),
    ("other outlet, curly quotes", HK, HK_OTHER_OUTLET, True, 0.571, 0.555),
    ("headline edit, one word", TAIPEI, TAIPEI_EDITED, True, 0.941, 0.906),
    ("headline edit, two words", TAIPEI, TAIPEI_EDITED_TWICE, True, 0.914, 0.891),
    ("title-only edit", THAI, THAI_EDITED, True, 0.600, 0.570),
    ("different spy cases (Taipei, Dresden)", TAIPEI, DRESDEN, False, 0.115, 0.141),
    ("different spy cases (Taipei, London)", TAIPEI, LONDON, False, 0.055, 0.039),
    ("different spy cases (Dresden, London)", DRESDEN, LONDON, False, 0.071, 0.039),
    ("follow-up of the case (appeal)", TAIPEI, TAIPEI_APPEAL, False, 0.212, 0.180),
    ("different visa stories, titles only", THAI, THAI_OTHER, False, 0.231, 0.281),
]


def news(
    text: tuple[str, str],
    source: str,
    at: datetime = T0,
    *,
    item: str | None = None,
    also: list[str] | None = None,
) -> NewsItem:
    title, body = text
    return NewsItem(
        id=item or f"{source}/{title}",
        source=source,
        source_kind="test",
        title=title,
        body=body,
        ingested=at,
        also_sources=also or [],
    )


# --- similarity -----------------------------------------------------------------------------------


def test_normalize_folds_unicode_quotes_dashes_possessives_and_stop_words():
    assert normalize("China’s “spy” case — the ＡＩ chip's") == ["china", "spy", "case", "ai", "chip"]
    assert normalize("Taiwan's ex-aide") == normalize("Taiwan’s ex‐aide") == ["taiwan", "ex", "aide"]
    assert normalize("Don't panic!") == ["dont", "panic"]


def test_shingles_are_bigrams_plus_words_of_very_short_titles():
    assert shingles("Spy case shakes Taipei") == {"spy case", "case shakes", "shakes taipei"}
    assert shingles("Taiwan quake") == {"taiwan quake", "taiwan", "quake"}
    # The lead stops at ~300 characters, on a word boundary (no half word becomes a token).
    words = {w for s in shingles("T", " ".join(f"word{i}" for i in range(400))) for w in s.split()}
    assert words <= {f"word{i}" for i in range(45)} | {"t"} and "word40" in words
    assert signature(set()) is None


@pytest.mark.parametrize(("name", "a", "b", "same", "exact", "estimate"), PAIRS, ids=[p[0] for p in PAIRS])
def test_pair_similarities_justify_the_threshold(name, a, b, same, exact, estimate):
    sa, sb = shingles(*a), shingles(*b)
    measured = estimated_similarity(signature(sa), signature(sb))
    # The table above is what was measured: if normalisation or hashing changes, recalibrate it.
    assert jaccard(sa, sb) == pytest.approx(exact, abs=0.001)
    assert measured == pytest.approx(estimate, abs=0.001)
    assert (measured >= THRESHOLD) is same

    index = StoryIndex()
    first = index.assign(news(a, "outlet-a"))
    second = index.assign(news(b, "outlet-b", T0 + timedelta(hours=2)))
    assert (second.story_id == first.story_id) is same
    assert second.is_new is not same


def test_signatures_do_not_depend_on_the_process_hash_seed():
    code = "from alerts.stories import shingles, signature; import sys; print(list(signature(shingles(*sys.argv[1:]))))"
    runs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code, *TAIPEI], env=env, capture_output=True, text=True, check=True)
        runs.add(out.stdout.strip())
    assert runs == {str(list(signature(shingles(*TAIPEI))))}


# --- stories --------------------------------------------------------------------------------------


def test_same_story_from_another_outlet_joins_the_story():
    index = StoryIndex()
    first = index.assign(news(TAIPEI, "reuters"))
    second = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)))
    assert first.is_new and first.new_source and first.member_count == 1
    assert first.story_id == story_id_for("reuters/" + TAIPEI[0])
    assert second.story_id == first.story_id and not second.is_new
    assert second.member_count == 2 and second.new_source and second.new_sources == ["bbc"]
    assert second.sources == ["reuters", "bbc"]
    assert second.similarity == pytest.approx(0.523, abs=0.001)


def test_edited_headline_joins_the_story_without_a_new_source():
    index = StoryIndex()
    first = index.assign(news(TAIPEI, "reuters", item="r1"))
    edited = index.assign(news(TAIPEI_EDITED, "reuters", T0 + timedelta(minutes=30), item="r1-edit"))
    assert edited.story_id == first.story_id and edited.member_count == 2
    assert not edited.new_source and edited.new_sources == [] and edited.sources == ["reuters"]


def test_different_spy_cases_are_different_stories():
    index = StoryIndex()
    ids = {
        index.assign(news(text, "wire", T0 + timedelta(minutes=i))).story_id
        for i, text in enumerate((TAIPEI, DRESDEN, LONDON))
    }
    assert len(ids) == 3 and len(index) == 3


def test_the_same_story_three_days_later_is_a_new_story():
    index = StoryIndex()
    first = index.assign(news(TAIPEI, "reuters"))
    within = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=47)))
    three_days_on = T0 + timedelta(hours=47 + 72)
    later = index.assign(news(TAIPEI_OTHER_OUTLET, "guardian", three_days_on))
    assert within.story_id == first.story_id
    assert later.is_new and later.story_id != first.story_id and later.member_count == 1
    assert index.newest == three_days_on and len(index) == 1


def test_window_counts_from_the_last_member():
    index = StoryIndex(window=timedelta(hours=48))
    index.assign(news(TAIPEI, "reuters"))
    index.assign(news(TAIPEI_EDITED, "reuters", T0 + timedelta(hours=40), item="edit"))
    # 80 h after the first item but 40 h after the last one: still the same story.
    joined = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=80)))
    assert not joined.is_new and joined.member_count == 3


def test_story_ids_are_deterministic():
    sequence = [
        news(TAIPEI, "reuters"),
        news(DRESDEN, "dw", T0 + timedelta(minutes=5)),
        news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(minutes=10)),
        news(HK, "ft", T0 + timedelta(minutes=15)),
        news(HK_OTHER_OUTLET, "guardian", T0 + timedelta(minutes=20)),
    ]
    runs = []
    for _ in range(2):
        index = StoryIndex()
        runs.append([index.assign(i) for i in sequence])
    assert runs[0] == runs[1]
    assert [d.story_id for d in runs[0]] == [
        story_id_for(sequence[0].id),
        story_id_for(sequence[1].id),
        story_id_for(sequence[0].id),
        story_id_for(sequence[3].id),
        story_id_for(sequence[3].id),
    ]


def test_a_repeated_item_is_idempotent():
    index = StoryIndex()
    index.assign(news(TAIPEI, "reuters"))
    index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)))
    before = index.to_state()
    again = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)))
    assert again.duplicate and not again.is_new and not again.new_source
    assert again.member_count == 2 and again.sources == ["reuters", "bbc"]
    assert index.to_state() == before


def test_out_of_order_items_join_and_keep_the_story_id():
    index = StoryIndex()
    first = index.assign(news(TAIPEI, "reuters", T0 + timedelta(hours=10)))
    earlier = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0))
    assert earlier.story_id == first.story_id and not earlier.is_new and not earlier.late
    (story,) = index.to_state()["stories"]
    assert story["t0"] == T0.isoformat() and story["t1"] == (T0 + timedelta(hours=10)).isoformat()


def test_an_item_older_than_the_window_is_decided_but_not_kept():
    index = StoryIndex()
    index.assign(news(DRESDEN, "dw", T0 + timedelta(hours=100)))
    late = index.assign(news(TAIPEI, "reuters", T0))
    assert late.is_new and late.late and len(index) == 1
    # It can still join a live story whose members are within the window of it.
    index.assign(news(LONDON, "bbc", T0 + timedelta(hours=60)))
    joined = index.assign(news(LONDON, "sky", T0 + timedelta(hours=30)))
    assert joined.late and not joined.is_new and joined.member_count == 2


def test_also_sources_count_as_sources_of_the_story():
    index = StoryIndex()
    index.assign(news(TAIPEI, "reuters", also=["yahoo"]))
    again = index.assign(news(TAIPEI_OTHER_OUTLET, "yahoo", T0 + timedelta(hours=1)))
    assert not again.new_source and again.sources == ["reuters", "yahoo"]


# --- bounds and state -----------------------------------------------------------------------------

VOCABULARY = [f"w{i}" for i in range(5000)]


def unrelated(n: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(" ".join(rng.sample(VOCABULARY, 8)), " ".join(rng.sample(VOCABULARY, 30))) for _ in range(n)]


def test_stories_older_than_the_window_are_evicted():
    index = StoryIndex(window=timedelta(hours=48))
    for hour, text in enumerate(unrelated(200)):
        index.assign(news(text, "wire", T0 + timedelta(hours=hour)))
        # Only stories whose last member is within 48 h of the newest item are kept.
        assert len(index) <= 49
    assert len(index) == 49
    assert all(s["t1"] >= (T0 + timedelta(hours=199 - 48)).isoformat() for s in index.to_state()["stories"])


def test_max_stories_evicts_the_least_recently_updated():
    index = StoryIndex(max_stories=10)
    texts = unrelated(12)
    kept = index.assign(news(TAIPEI, "reuters"))
    for minute, text in enumerate(texts, start=1):
        index.assign(news(text, "wire", T0 + timedelta(minutes=minute)))
        if minute == 8:  # a new member makes the oldest story the most recently updated one
            index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(minutes=8, seconds=30)))
    assert len(index) == 10
    assert index.story_ids() == sorted([kept.story_id, *(story_id_for(f"wire/{t[0]}") for t in texts[3:])])


def test_lsh_only_compares_candidate_stories(monkeypatch):
    index = StoryIndex()
    for minute, text in enumerate(unrelated(300)):
        index.assign(news(text, "wire", T0 + timedelta(minutes=minute)))
    calls = []
    real = stories.estimated_similarity
    monkeypatch.setattr(stories, "estimated_similarity", lambda a, b: calls.append(1) or real(a, b))
    index.assign(news(TAIPEI, "reuters", T0 + timedelta(hours=6)))
    decision = index.assign(news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=7)))
    assert not decision.is_new and len(index) == 301
    assert len(calls) < 10  # not one comparison per story


def test_state_round_trips_through_json_and_continues_identically():
    sequence = [
        news(TAIPEI, "reuters"),
        news(DRESDEN, "dw", T0 + timedelta(minutes=5)),
        news(TAIPEI_EDITED, "reuters", T0 + timedelta(minutes=10), item="edit"),
    ]
    rest = [news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)), news(LONDON, "sky", T0 + timedelta(hours=2))]
    live = StoryIndex()
    for item in sequence:
        live.assign(item)
    state = json.loads(json.dumps(live.to_state()))
    restored = StoryIndex.from_state(state)
    assert restored.to_state() == live.to_state() and restored.newest == live.newest
    assert restored.assign(sequence[0]).duplicate  # member ids survive
    assert [restored.assign(i) for i in rest] == [live.assign(i) for i in rest]
    assert StoryIndex.from_state(None).to_state() == StoryIndex().to_state()


def test_state_of_a_story_stays_bounded():
    index = StoryIndex()
    for i in range(200):
        text = TAIPEI_OTHER_OUTLET if i % 2 else TAIPEI_EDITED
        # Real item ids are 16 hex digits (pipelines.model.item_id), sources feed URLs.
        index.assign(news(text, f"https://outlet{i}.example/feed.xml", T0 + timedelta(minutes=i), item=f"{i:016x}"))
    (story,) = index.to_state()["stories"]
    assert story["n"] == 200
    assert len(story["ids"]) == MAX_MEMBER_IDS and len(story["sigs"]) <= MAX_SIGNATURES
    assert len(story["src"]) == 32
    assert len(json.dumps(story)) < 4000


def test_loading_state_applies_a_smaller_cap_and_rejects_other_versions():
    index = StoryIndex()
    for minute, text in enumerate(unrelated(20)):
        index.assign(news(text, "wire", T0 + timedelta(minutes=minute)))
    assert len(StoryIndex.from_state(index.to_state(), max_stories=5)) == 5
    with pytest.raises(ValueError, match="version"):
        StoryIndex.from_state({**index.to_state(), "v": 99})


# --- alerts ---------------------------------------------------------------------------------------

SUBS = [Subscription(id="sec", topics=["spying"]), Subscription(id="all")]


def classified(item: NewsItem) -> ClassifiedItem:
    return ClassifiedItem(item=item, matches=[TopicMatch(topic="spying", score=0.8)])


def run(index: StoryIndex, item: NewsItem) -> list[Alert]:
    c = classified(item)
    return story_alerts(index.assign(item), c, item_alerts(c, SUBS))


def test_first_item_of_a_story_keeps_its_item_alerts_with_the_story_id():
    index = StoryIndex()
    item = news(TAIPEI, "reuters")
    plain = item_alerts(classified(item), SUBS)
    alerts = run(index, item)
    assert [a.kind for a in alerts] == ["alert.item", "alert.item"]
    assert [a.model_copy(update={"story_id": None}) for a in alerts] == plain
    assert {a.story_id for a in alerts} == {story_id_for(item.id)}


def test_a_new_outlet_turns_item_alerts_into_updates():
    index = StoryIndex()
    run(index, news(TAIPEI, "reuters"))
    item = news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1))
    alerts = run(index, item)
    story = story_id_for("reuters/" + TAIPEI[0])
    assert [a.kind for a in alerts] == ["alert.updated", "alert.updated"]
    assert [a.id for a in alerts] == [alert_id(s.id, "alert.updated", f"{story}/{item.id}") for s in SUBS]
    assert all(a.story_id == story for a in alerts)
    assert alerts[0].details == {"new_sources": ["bbc"], "sources": ["reuters", "bbc"], "members": 2}
    assert alerts[0].items[0].id == item.id and alerts[0].timestamp == item.ingested
    assert alerts[0].reason.startswith("story update: now 2 items from 2 outlets (new: bbc)")


def test_same_outlet_and_repeats_add_no_alert_and_never_a_second_item_alert():
    index = StoryIndex()
    sequence = [
        news(TAIPEI, "reuters"),
        news(TAIPEI_EDITED, "reuters", T0 + timedelta(minutes=20), item="edit"),
        news(TAIPEI, "reuters"),
        news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)),
        news(TAIPEI_EDITED_TWICE, "bbc", T0 + timedelta(hours=2), item="bbc-edit"),
        news(TAIPEI_OTHER_OUTLET, "bbc", T0 + timedelta(hours=1)),
    ]
    kinds = [[a.kind for a in run(index, i)] for i in sequence]
    assert kinds == [["alert.item"] * 2, [], [], ["alert.updated"] * 2, [], []]


def test_story_alerts_rejects_a_decision_for_another_item():
    index = StoryIndex()
    decision = index.assign(news(TAIPEI, "reuters"))
    other = classified(news(DRESDEN, "dw"))
    with pytest.raises(ValueError, match="decision is for item"):
        story_alerts(decision, other, item_alerts(other, SUBS))
