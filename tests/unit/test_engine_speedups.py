"""The C hot path (newsmon_speedups) gives exactly what the pure-Python engine gives.

Same topics, scores and evidence (text, spans, order, weights) on the labelled sets, the seeds,
and thousands of generated texts that mix topic patterns with the awkward parts of real text:
punctuation, case, dotted acronyms, typographic quotes, NFKC-changing characters, non-Latin
scripts, astral characters and letters whose lower case is longer (which take the Python path).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pipelines.classify.engine import Engine, _patterns, speedups_available
from pipelines.classify.rules import load_topics, parse_topics
from pipelines.sources.articles import split_articles

pytestmark = pytest.mark.skipif(
    not speedups_available(), reason="newsmon_speedups is not built (no C compiler when newsmon was installed)"
)

DATA = Path(__file__).resolve().parent.parent / "data"
SEEDS = Path(__file__).resolve().parents[2] / "seeds"

RULES = """
version = 1
title_weight = 2.5
max_count = 2

[[topics]]
id = "spying"
label = "Spying"
definition = "espionage"
threshold = 2.0
terms = { "spy*" = 2, "espionage" = 3, "MI5" = 1.5, "UK" = 0.5, "chargé d'affaires" = 1, "H-1B" = 1, "spy ring" = 1 }
none_of = ["spy film"]
mask = ["spy camera*", "spy ring"]
all_of = [["spy*", "espionage", "MI5", "agent*"]]
near = [{ a = ["agent*", "MI5"], b = ["china", "beijing"], window = 3, weight = 1.5 },
        { a = ["spy*"], b = ["spy*"], window = 2, weight = 0.5 }]

[[topics]]
id = "trade"
label = "Trade"
definition = "tariffs"
threshold = 3.0
terms = { "tariff*" = 2, "anti-dumping" = 3, "energy" = -1, "U.S." = 0.5, "US" = 0.5, "e-commerce" = 1 }
mask = ["energy tariff*"]
near = [{ a = ["import*"], b = ["dut*", "tariff*"], window = 4, weight = 2 }]
"""

NOISE = [
    " ",
    " ",
    " ",
    "  ",
    ", ",
    ". ",
    "\n",
    "\t",
    "-",
    "—",
    "’s ",
    "'",
    '"',
    "“",
    "”",
    "(",
    ")",
    "/",
    "&",
    "…",
    "\u00a0",
    "ﬁ",
    "Ⅻ",
    "²",
    "İ",
    "ß",
    "é",
    "É",
    "Straße",
    "北京",
    "😀",
    "x",
    "9",
    "_",
    "#",
    "UK",
    "U.K.",
    "u.k.",
    "US",
    "us",
    "U.S.",
    "MI5",
    "mi5",
    "H-1B",
    "H1B",
    "h-1b",
    "the",
    "and",
    "of",
    "said",
    "Spy",
    "SPYING",
    "espionageX",
    "anti dumping",
    "antidumping",
    "Anti-Dumping",
    "e commerce",
    "ecommerce",
    "chargé d’affaires",
    "charge d'affaires",
]


def _words(topics) -> list[str]:
    words = sorted({p.rstrip("*") for rule in topics.topics for p in _patterns(rule)})
    return words + [w + "s" for w in words[::7]] + [w.upper() for w in words[::11]] + [w.title() for w in words[::5]]


def _texts(words: list[str], count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        title = "".join(rng.choice(words if rng.random() < 0.4 else NOISE) for _ in range(rng.randint(0, 12)))
        body = "".join(rng.choice(words if rng.random() < 0.35 else NOISE) for _ in range(rng.randint(0, 400)))
        out.append((title, body))
    return out


def _labelled() -> list[tuple[str, str]]:
    items = []
    for name in (
        "dev_labeled",
        "check_labeled",
        "holdout_labeled",
        "trade_rights_labeled",
        "mixed_labeled",
        "fresh_labeled",
    ):
        for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            items.append((row["title"], row.get("summary") or row.get("body") or ""))
    for path in sorted(SEEDS.glob("*.txt")):
        items += [(a.title, a.body) for a in split_articles(path.read_text(encoding="utf-8"))]
    return items


def _same(topics, items) -> None:
    compiled, reference = Engine(topics), Engine(topics, speedups=False)
    assert compiled.compiled and not reference.compiled
    differ = []
    for title, body in items:
        got = [m.model_dump_json() for m in compiled.classify(title, body)]
        want = [m.model_dump_json() for m in reference.classify(title, body)]
        if got != want:
            differ.append((title[:80], got, want))
    assert not differ, f"{len(differ)} of {len(items)} items differ; first: {differ[0]}"


def test_shipped_topics_agree_on_labelled_sets_and_seeds():
    items = _labelled()
    assert len(items) > 1000
    _same(load_topics(), items)


def test_shipped_topics_agree_on_generated_texts():
    topics = load_topics()
    _same(topics, _texts(_words(topics), 1500, seed=3))


def test_every_rule_kind_agrees_on_generated_texts():
    topics = parse_topics(RULES)
    _same(topics, _texts([*_words(topics), "agent", "agents", "china", "import", "duty", "camera"], 3000, seed=7))


def test_results_are_real_models_with_evidence_spans_into_the_original_text():
    title, body = "MI5 and the ﬁrst spy", "Ⅻ Britain’s spy chief said the U.K. spying case…"
    (match,) = Engine(parse_topics(RULES)).classify(title, body)
    assert type(match).__name__ == "TopicMatch" and match.model_fields_set == {"topic", "score", "evidence"}
    for ev in match.evidence:
        source = title if ev.field == "title" else body
        assert source[ev.start : ev.end] == ev.text
    assert [e.text for e in match.evidence if e.field == "body"] == ["spy", "spying", "U.K."]


def test_lower_case_that_changes_length_takes_the_python_path():
    eng = Engine(parse_topics(RULES))
    (match,) = eng.classify("İstanbul spy case", "MI5 said espionage")
    assert match.topic == "spying"
    assert {e.text for e in match.evidence} >= {"spy", "MI5", "espionage"}


def test_forcing_speedups_off_or_on():
    topics = parse_topics(RULES)
    assert not Engine(topics, speedups=False).compiled
    assert Engine(topics, speedups=True).compiled


# --- review findings: misuse of the C type must raise, never crash or corrupt ------------------------


def _spec(eng: Engine):
    """The arguments Engine._compile_fast passes, rebuilt for direct calls."""
    import newsmon_speedups

    from pipelines.classify.engine import _FOLD
    from pipelines.model import Evidence, TopicMatch

    return newsmon_speedups, dict(
        lower_keys=[(" x", [(0, False)])], cased_keys=[], patterns=["x"], topics=[], max_count=3,
        topic_ids=[], evidence_type=Evidence, match_type=TopicMatch, fold=dict(_FOLD),
    )  # fmt: skip


def test_a_failed_init_leaves_an_engine_that_refuses_work_and_cannot_be_reinitialised():
    module, kwargs = _spec(Engine(parse_topics(RULES)))
    broken = module.Engine.__new__(module.Engine)
    with pytest.raises(ValueError):
        broken.__init__(**{**kwargs, "topics": [(1.0, 2.0, [(99, 1.0)], [], [], [], [])]})  # unknown pattern id
    with pytest.raises(RuntimeError, match="not initialised"):
        broken.classify_text("x", "x")
    with pytest.raises(RuntimeError, match="runs once"):
        broken.__init__(**kwargs)


def test_model_types_that_object_new_refuses_are_rejected_up_front():
    module, kwargs = _spec(Engine(parse_topics(RULES)))

    class NotAModel(dict):
        pass

    with pytest.raises(TypeError):
        module.Engine(**{**kwargs, "evidence_type": NotAModel})


def test_targets_whose_length_changes_while_read_are_rejected():
    module, kwargs = _spec(Engine(parse_topics(RULES)))

    class Lying(list):
        def __len__(self):
            return 0

    with pytest.raises(ValueError, match="bad targets"):
        module.Engine(**{**kwargs, "lower_keys": [(" x", Lying([(0, False)] * 64))]})


def test_the_engine_keeps_its_own_copy_of_the_pattern_names():
    eng = Engine(parse_topics(RULES))
    before = [m.model_dump_json() for m in eng.classify("MI5 spy", "espionage in the U.K.")]
    eng._pattern_names.clear()
    assert [m.model_dump_json() for m in eng.classify("MI5 spy", "espionage in the U.K.")] == before


def test_negative_zero_weights_keep_their_sign():
    topics = parse_topics(RULES.replace("title_weight = 2.5", "title_weight = 1e-200"))
    # Title gains underflow to 0.0 (tariff*, weight 2) and to -0.0 (energy, weight -1) in one engine.
    body = "tariffs and a tariff, anti-dumping"
    _same(topics, [("tariff", body), ("energy", body), ("tariff energy", body)])
    (match,) = Engine(topics).classify("energy", body)
    assert "-0.0" in match.model_dump_json()


def test_rules_with_very_many_distinct_characters_use_the_python_engine():
    cjk = [chr(0x4E00 + i) + chr(0x5E00 + i) for i in range(3000)]
    terms = ", ".join(f'"{w}" = 1' for w in cjk)
    topics = parse_topics(
        f'version = 1\n[[topics]]\nid = "c"\nlabel = "c"\ndefinition = "c"\nthreshold = 2\nterms = {{ {terms} }}\n'
    )
    eng = Engine(topics)
    assert not eng.compiled  # the dense build table would be too large: Python, with a warning
    assert [m.topic for m in eng.classify(cjk[0], cjk[1])] == ["c"]
    with pytest.raises(ValueError, match="too many or too long"):
        Engine(topics, speedups=True)
