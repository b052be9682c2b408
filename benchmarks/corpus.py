"""Deterministic synthetic corpus: realistic articles resampled from the seeds' sentences.

Each article mixes sentences from two or three seed articles (so topic mixes vary), gets a dateline
and a date spread over months, and is ~2 KB. Files hold several articles, like seed 004.

    python -m benchmarks.corpus OUT_DIR --articles 100000 [--per-file 10] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.sources.articles import decode_text, split_articles

__all__ = ["generate_articles", "seed_sentences", "write_corpus"]

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
DATELINES = ["LONDON", "BEIJING", "SHANGHAI", "HONG KONG", "TAIPEI", "BRUSSELS", "WASHINGTON", "TOKYO"]
_SPLIT = re.compile(r"(?<=[.!?”\"’])\s+(?=[A-Z“\"])")


def seed_sentences() -> list[list[str]]:
    """Sentences of each seed article (one list per article)."""
    groups = []
    for path in sorted(SEEDS.glob("*.txt")):
        for article in split_articles(decode_text(path.read_bytes())[0]):
            sentences = [s.strip() for s in _SPLIT.split(article.body.replace("\n\n", " ")) if len(s) > 40]
            if sentences:
                groups.append(sentences)
    return groups


def generate_articles(n: int, seed: int = 7, target_bytes: int = 2000) -> list[tuple[str, str, datetime]]:
    """n (title, body, published) triples, deterministic for a given seed."""
    rng = random.Random(seed)
    groups = seed_sentences()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(n):
        mix = rng.sample(groups, k=rng.choice((2, 3)))
        body: list[str] = []
        size = 0
        while size < target_bytes:
            sentence = rng.choice(rng.choice(mix))
            body.append(sentence)
            size += len(sentence.encode()) + 1
        title = rng.choice(rng.choice(mix))[:110].rsplit(" ", 1)[0]
        published = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
        out.append((title, " ".join(body), published))
    return out


def write_corpus(out_dir: Path, n: int, per_file: int = 10, seed: int = 7) -> list[Path]:
    """Write n articles into files of ``per_file`` concatenated articles; returns the file paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    paths = []
    articles = generate_articles(n, seed)
    for f, first in enumerate(range(0, n, per_file)):
        chunk = []
        for title, body, published in articles[first : first + per_file]:
            stamp = published.strftime("%d %B %Y %H:%M") + " GMT"
            chunk.append(f"{rng.choice(DATELINES)} — {title}. {stamp}.\n\n{body}\n\nTag - Benchmark\n")
        path = out_dir / f"corpus_{f:06d}.txt"
        path.write_text("\n".join(chunk), encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    paths = write_corpus(args.out_dir, args.articles, args.per_file, args.seed)
    print(f"wrote {args.articles} articles in {len(paths)} files to {args.out_dir}")


if __name__ == "__main__":
    main()
