"""What does an explained top-10 list cost, next to producing it? Every user of a bundle.

Times `Engine.recommend(explain=False)` (score + filter + top-k, the peer) and
`Engine.recommend(explain=True, user_id=...)` (the same plus a full `Explanation` per
item: attribution, attribute paths, constraint checks, co-interaction counts,
confidence) for every user of a trained bundle (or EASE fitted on the spot), plus
`Engine.explain` for a why-not item. Prints mean, median and p99 milliseconds per user
and the explained / plain ratio.

`--dump FILE` writes every explained list (`to_dict(with_explanation=True)`), why-not
explanations and filtered lists as JSON; `--compare FILE` checks the current outputs
against such a dump (exact, and the largest float difference when not), so a speed-up
can prove it changed nothing. `--timings FILE` saves the figures, `--reference FILE`
prints the ratio of this run's figures to saved ones (same machine, same bundle).

    PYTHONPATH=src python benchmarks/bench_explain.py --bundle /tmp/ease --dump before.json
    PYTHONPATH=src python benchmarks/bench_explain.py --bundle /tmp/ease --compare before.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import shorten

import numpy as np

from whyrec.bundle import Bundle
from whyrec.core import Query
from whyrec.engine import Engine
from whyrec.filters import ItemFilter

WHY_NOT_RANK = 50
"""Why-not items are taken at this rank of the unfiltered list (outside any top-10)."""

DUMP_EVERY = 10
"""Why-not and filtered requests are dumped for every this-many-th user."""

FILTERED = ItemFilter(include={"genres": {"Comedy"}}, year_min=1990)


def load_engine(args: argparse.Namespace) -> Engine:
    if args.bundle is not None:
        return Engine(Bundle.load(args.bundle))
    from whyrec.data.loaders import load_dataset
    from whyrec.models import EASE

    dataset = load_dataset(args.data)
    return Engine(Bundle(EASE().fit(dataset), dataset))


def median_ms(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def summary(times: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(times),
        "median": statistics.median(times),
        "p99": float(np.percentile(times, 99)),
    }


def outputs(engine: Engine, users: list[str], k: int) -> dict:
    """Everything an explained request answers, as JSON-ready data (for --dump/--compare)."""
    lists, why_not, filtered = {}, {}, {}
    for index, user in enumerate(users):
        history = engine.user_history(user)
        answer = engine.recommend(history, k=k, explain=True, user_id=user)
        lists[user] = [r.to_dict(with_explanation=True) for r in answer]
        if index % DUMP_EVERY:
            continue
        unfiltered = engine.recommend(history, k=WHY_NOT_RANK, explain=False)
        why_not[user] = [
            engine.explain(Query(user, history, k=k), r.position).to_dict() for r in unfiltered[-1:]
        ] + [  # an item the filter rules out, and one it keeps, ranked inside the filter
            engine.explain(Query(history=history, item_filter=FILTERED, k=k), r.position).to_dict()
            for r in (unfiltered[0], unfiltered[-1])
        ]
        kept = engine.recommend(history, k=k, item_filter=FILTERED, user_id=user)
        filtered[user] = [r.to_dict(with_explanation=True) for r in kept]
    # a history without a known user (nobody left out of the co-interaction counts)
    anonymous = engine.recommend(engine.user_history(users[0])[:5], k=k)
    return {
        "k": k,
        "lists": lists,
        "why_not": why_not,
        "filtered": filtered,
        "anonymous": [r.to_dict(with_explanation=True) for r in anonymous],
    }


def differences(old: object, new: object, where: str = "") -> Iterator[tuple[str, object, object]]:
    """(path, old, new) of every leaf that differs between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from differences(old.get(key), new.get(key), f"{where}/{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from differences(a, b, f"{where}[{i}]")
    elif old != new:
        yield where, old, new


def compare(reference: Path, current: dict) -> bool:
    """Print how the current outputs differ from a dump; True when identical."""
    old = json.loads(reference.read_text())
    for section in ("lists", "why_not", "filtered"):  # a --users run checks its users only
        old[section] = {u: v for u, v in old[section].items() if u in current[section]}
    found = list(differences(old, json.loads(json.dumps(current))))
    if not found:
        print(f"outputs identical to {reference}")
        return True
    floats = [
        abs(a - b)
        for _, a, b in found
        if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool)
    ]
    print(f"{len(found)} differences from {reference} ({len(floats)} of them floats)")
    if floats:
        print(f"  largest float difference: {max(floats):.3g}")
    for path, a, b in found[:10]:
        print(f"  {path}: {shorten(repr(a), 150)} -> {shorten(repr(b), 150)}")
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="a trained bundle folder")
    parser.add_argument("--data", default="ml-latest-small", help="fit EASE here if no bundle")
    parser.add_argument("--users", type=int, default=None, help="first N users (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per user (median)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--dump", type=Path, default=None, help="write all outputs as JSON")
    parser.add_argument("--compare", type=Path, default=None, help="check outputs vs a dump")
    parser.add_argument("--timings", type=Path, default=None, help="save the figures as JSON")
    parser.add_argument("--reference", type=Path, default=None, help="figures to compare with")
    args = parser.parse_args()

    engine = load_engine(args)
    users = list(engine.bundle.train.user_ids)[: args.users]
    histories = {u: engine.user_history(u) for u in users}
    engine.recommend(histories[users[0]], k=args.k)  # build the explainer (graph) once

    plain, explained, why_not = [], [], []
    for user in users:
        history = histories[user]
        plain.append(
            median_ms(lambda h=history: engine.recommend(h, k=args.k, explain=False), args.repeats)
        )
        explained.append(
            median_ms(
                lambda h=history, u=user: engine.recommend(h, k=args.k, explain=True, user_id=u),
                args.repeats,
            )
        )
        outside = engine.recommend(history, k=WHY_NOT_RANK, explain=False)[-1].position
        why_not.append(
            median_ms(
                lambda q=Query(user, history, k=args.k), i=outside: engine.explain(q, i),
                args.repeats,
            )
        )
    figures = {
        "plain": summary(plain),
        "explained": summary(explained),
        "why_not": summary(why_not),
    }
    lengths = [len(h) for h in histories.values()]
    print(
        f"{engine.model.name} on {engine.bundle.train.name}: {len(users)} users "
        f"(history median {statistics.median(lengths):.0f} items), k={args.k}, "
        f"median of {args.repeats} calls per user"
    )
    print(f"{'ms per user':<32}{'mean':>8}{'median':>8}{'p99':>8}")
    labels = {
        "plain": f"recommend top-{args.k}, plain",
        "explained": f"recommend top-{args.k}, explained",
        "why_not": f"why-not (rank {WHY_NOT_RANK} item)",
    }
    for name, label in labels.items():
        row = figures[name]
        print(f"{label:<32}{row['mean']:8.2f}{row['median']:8.2f}{row['p99']:8.2f}")
    ratio = figures["explained"]["mean"] / figures["plain"]["mean"]
    print(f"ratio explained / plain (mean): {ratio:.2f}x")
    if args.reference is not None:
        old = json.loads(args.reference.read_text())
        for name, label in labels.items():
            speedups = "  ".join(
                f"{stat} {old[name][stat] / figures[name][stat]:.2f}x"
                for stat in ("mean", "median", "p99")
            )
            print(f"speed-up vs {args.reference.name}, {label}: {speedups}")
    if args.timings is not None:
        args.timings.write_text(json.dumps(figures, indent=1))

    if args.dump is not None or args.compare is not None:
        current = outputs(engine, users, args.k)
        if args.dump is not None:
            args.dump.write_text(json.dumps(current))
            print(f"outputs written to {args.dump}")
        if args.compare is not None and not compare(args.compare, current):
            sys.exit(1)


if __name__ == "__main__":
    main()
