"""The embedded understanding on written requests, and free-text queries by hit@10.

Requests (`benchmarks/requests/*.txt`, format in its README) run as fresh cold-user
sessions through `Conversation` on a trained bundle. Reported: dialogue-act precision,
recall and F1 by category (micro over acts), the share of lists that honour every hard
constraint the system understood, the share of requests expecting a list that got one
(first turns and all), questions where none was wanted, critique direction success,
titles that hijacked a wish, and turn latency: wall clock and CPU time (process_time,
what a turn costs without the other processes of a busy machine), median and p95, plus
the ten slowest turns. `--requests generated` builds requests from the bundle's own
fields and values instead (constraints, "or", "but not", superlatives, critiques,
facets the catalog lacks), so any catalog shape (`whyrec data synth --shape ...`) can
be measured. Queries (`queries.tsv`) run through `Engine.recommend(text=...)`, with the
blend fitted at train time, against a peer in the same run: plain cosine on the full
item text; an odd/even split of the queries checks that calibration.

Everything (on the Makefile's bundle, `make run` trains it):

    python benchmarks/bench_understanding.py --bundle bundles/ml-latest-small-ease --json out.json

Turn latency alone, on a quiet machine (one command; p95 is `turn_ms_p95`, CPU time
`turn_cpu_ms_p95`; add --profile turns.prof for a cProfile of the turns):

    python benchmarks/bench_understanding.py --bundle bundles/ml-latest-small-ease --only requests

Latency excludes one-time warm-up (item and value encoding, critique directions), done
before the first timed turn.

With an LLM (`--llm-base-url`/`--llm-model`/`--llm-timeout`/`--llm-config`, the options
of `whyrec chat`, or the WHYREC_LLM_* variables with `--llm`), the requests also run
through the LLM conversation and both paths are reported side by side on the same
requests, with the share of turns the LLM's reading was used in. A slow local model may
not get through all of them: `--max-requests N` takes N requests spread evenly over the
files (every category keeps its share).

    python benchmarks/bench_understanding.py --bundle B --only requests \
        --llm-base-url http://127.0.0.1:8080/v1 --llm-model smollm2 --max-requests 60
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "requests"


def read_requests() -> list[dict]:
    out = []
    for path in sorted(HERE.glob("*.txt")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(";;")]
            parts += [""] * (3 - len(parts))
            turns, acts, checks = parts[:3]
            out.append(
                {
                    "id": f"{path.stem}:{number}",
                    "category": path.stem,
                    "turns": [t.strip() for t in turns.split(" >> ")],
                    "acts": {_act(a) for a in acts.split()},
                    "checks": checks.split(),
                }
            )
    return out


MISSING_FACETS = (
    ("directed by Alex Moreau", "director"),
    ("starring Sam Okafor", "actor"),
    ("under 90 minutes", "runtime"),
    ("in French", "language"),
)
"""People and facets no synthetic catalog has (names invented for the benchmark)."""
SUPERLATIVES = (("best", "quality"), ("most popular", "popular"), ("underrated", "underrated"))
CRITIQUES = (
    ("less popular", "popularity-"),
    ("more popular", "popularity+"),
    ("better rated", "quality+"),
)


def generated_requests(catalog, per_kind: int, seed: int = 0) -> list[dict]:
    """Requests built from the catalog's own fields and values, in catalog-free English:
    constraints, boolean phrasing, superlatives, second-turn critiques and facets the
    catalog lacks, each with its expected acts. Only values that name items (not numbers,
    not values of nearly every item) are used; the written requests are movie-worded,
    these run on any catalog shape."""
    rng = np.random.default_rng(seed)
    named = [
        (name, value)
        for name in catalog.fields
        for value, count in catalog.value_counts(name).items()
        if not value.replace(".", "", 1).isdigit() and 5 <= count <= len(catalog) // 2
    ]
    missing_fields = {f.lower() for f in catalog.fields}
    facets = [(p, f) for p, f in MISSING_FACETS if f not in missing_fields]
    if len(named) < 2:
        return []

    def pick(n: int) -> list[tuple[str, str]]:
        while True:
            chosen = [named[i] for i in rng.choice(len(named), n, replace=False)]
            if len({v.lower() for _, v in chosen}) == n:
                return chosen

    eligible = set(named)
    holders = []
    """Each item's eligible values, for items with two distinct ones."""
    for position in range(len(catalog)):
        have = {(f, v) for f in catalog.fields for v in catalog.values(f, position)} & eligible
        if len({v.lower() for _, v in have}) >= 2:
            holders.append(sorted(have))

    def together() -> list[tuple[str, str]]:
        have = holders[int(rng.integers(len(holders)))]
        while True:
            first, second = rng.choice(len(have), 2, replace=False)
            if have[first][1].lower() != have[second][1].lower():
                return [have[first], have[second]]

    def one(kind: str) -> tuple[list[str], set[str], list[str]]:
        """(turns, expected acts besides intent:recommend, checks) for one request."""
        (f, v), (g, w) = pick(2)
        if kind == "constraints":
            return [f"something {v}"], {f"include:{f}={v}"}, ["list"]
        if kind == "constraints2":  # two values one item has together: the list is not empty
            (f, v), (g, w) = together()
            return [f"{v} and {w}"], {f"include:{f}={v}", f"include:{g}={w}"}, ["list"]
        if kind == "boolean_or":
            group = "|".join(sorted([f"{f}={v}", f"{g}={w}"]))
            return [f"{v} or {w}"], {f"any_of:{group}"}, ["list"]
        if kind == "boolean_not":
            return [f"{v} but not {w}"], {f"include:{f}={v}", f"exclude:{g}={w}"}, ["list"]
        if kind == "superlatives":
            word, act = SUPERLATIVES[int(rng.integers(len(SUPERLATIVES)))]
            acts = {f"include:{f}={v}", f"superlative:{act}"}
            return [f"the {word} {v}"], acts, ["list", "noquestion"]
        if kind == "critiques":
            word, direction = CRITIQUES[int(rng.integers(len(CRITIQUES)))]
            return [f"something {v}", word], {f"critique:{direction}"}, ["list", f"dir:{direction}"]
        phrase, facet = facets[int(rng.integers(len(facets)))]
        acts = {f"include:{f}={v}", f"missing:{facet}"}
        return [f"something {v} {phrase}"], acts, ["list", "noquestion"]

    kinds = ("constraints",) + (("constraints2",) if holders else ())
    kinds += ("boolean_or", "boolean_not", "superlatives")
    kinds += ("critiques", "facets") if facets else ("critiques",)
    out = []
    for kind in kinds:
        for number in range(per_kind):
            turns, acts, checks = one(kind)
            out.append(
                {
                    "id": f"generated-{kind}:{number}",
                    "category": f"generated-{kind}",
                    "turns": turns,
                    "acts": {"intent:recommend", *acts},
                    "checks": checks,
                }
            )
    return out


def _act(written: str) -> str:
    """Titles and facet names are written with "_" for spaces; act names keep theirs."""
    kind, _, rest = written.partition(":")
    if kind in ("like", "dislike", "missing"):
        rest = rest.replace("_", " ")
    return f"{kind}:{rest}"


def honours(catalog, state, positions: list[int]) -> bool:
    """Every hard constraint in the state holds for every listed item."""
    for position in positions:
        for name, values in state.include.items():
            have = {v.lower() for v in catalog.values(name, position)}
            if not all(v.lower() in have for v in values):
                return False
        for name, values in state.exclude.items():
            have = {v.lower() for v in catalog.values(name, position)}
            if any(v.lower() in have for v in values):
                return False
        for group in state.any_of:
            if not any(
                v.lower() in {x.lower() for x in catalog.values(f, position)} for f, v in group
            ):
                return False
        year = catalog.year(position)
        if state.year_min is not None and (year is None or year < state.year_min):
            return False
        if state.year_max is not None and (year is None or year > state.year_max):
            return False
        for low, high in state.excluded_years:
            if year is not None and low <= year <= high:
                return False
    return True


def direction_ok(check: str, catalog, measures, before: list[int], after: list[int]) -> bool:
    kind = check.removeprefix("dir:")
    if kind.startswith("genres"):
        sign = 1 if kind[6] == "+" else -1
        values = {v.lower() for v in kind[7:].split(",")}

        def share(items: list[int]) -> float:
            return float(
                np.mean(
                    [any(v.lower() in values for v in catalog.values("genres", p)) for p in items]
                )
            )

        b, a = share(before), share(after)
        at_floor = (sign < 0 and b == 0.0 and a == 0.0) or (sign > 0 and b == 1.0 and a == 1.0)
        return at_floor or sign * (a - b) > 0
    sign = 1 if kind.endswith("+") else -1
    name = kind[:-1]
    if name == "year":
        values = catalog.years
        b, a = np.nanmedian(values[before]), np.nanmedian(values[after])
    elif name == "popularity":
        counts = measures.train.item_popularity()
        b, a = np.median(counts[before]), np.median(counts[after])
    else:
        b, a = np.mean(measures.quality[before]), np.mean(measures.quality[after])
    return bool(sign * (a - b) > 0)


def spread(requests: list[dict], limit: int | None) -> list[dict]:
    """`limit` requests spread evenly over the list (all of them without a limit)."""
    if not limit or limit >= len(requests):
        return requests
    picks = np.linspace(0, len(requests) - 1, limit).round().astype(int)
    return [requests[i] for i in dict.fromkeys(picks.tolist())]


def run_requests(
    bundle_path: str,
    requests: str = "written",
    per_kind: int = 20,
    profile: Path | None = None,
    llm=None,
    limit: int | None = None,
) -> dict:
    """`profile`: cProfile the turns (only the turns) into this file; `llm`: run the
    LLM conversation instead of the embedded one; `limit`: that many requests, spread."""
    from whyrec.bundle import Bundle
    from whyrec.engine import Engine
    from whyrec.llm import open_conversation
    from whyrec.store import SQLiteStore

    engine = Engine(Bundle.load(bundle_path))
    llm_read = llm_turns = 0
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "s.sqlite")
        conversation = open_conversation(engine, store=store, llm=llm)
        catalog = engine.catalog
        # what a service builds before taking requests (encoder, vectors, measures), and
        # one turn through the store
        conversation.warm_up()
        conversation.start().send("something mind-bending")
        counts = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn per category
        latencies: list[float] = []
        cpu_times: list[float] = []
        """CPU time of the turn: what it costs without the other processes of a busy box."""
        lists = honoured = 0
        wanted_first = got_first = wanted_any = got_any = 0
        unwanted_questions = noquestion_checks = 0
        directions = direction_hits = 0
        avoided = avoid_checks = 0
        failures: list[dict] = []
        profiler = cProfile.Profile() if profile else _NoProfile()
        slowest: list[tuple[float, str, str]] = []
        chosen = read_requests() if requests in ("written", "all") else []
        if requests in ("generated", "all"):
            chosen += generated_requests(catalog, per_kind)
        chosen = spread(chosen, limit)
        for request in chosen:
            session = conversation.start()
            before: list[int] = []
            turn = None
            for text in request["turns"]:
                before = list(session.state.shown) or before
                start, cpu = time.perf_counter(), time.process_time()
                profiler.enable()
                turn = session.send(text)
                profiler.disable()
                latencies.append((time.perf_counter() - start) * 1000)
                cpu_times.append((time.process_time() - cpu) * 1000)
                slowest.append((cpu_times[-1], request["id"], text))
                if llm is not None:
                    llm_turns += 1
                    source = turn.trace.get("llm", {}).get("understanding", {}).get("source")
                    llm_read += source == "llm"
            got = set(turn.understanding.get("acts", []))
            tp = len(got & request["acts"])
            counts[request["category"]][0] += tp
            counts[request["category"]][1] += len(got - request["acts"])
            counts[request["category"]][2] += len(request["acts"] - got)
            after = [catalog.position(i["item_id"]) for i in turn.items]
            if after:
                lists += 1
                honoured += honours(catalog, session.state, after)
            checks = request["checks"]
            if "list" in checks:
                wanted_any += 1
                got_any += bool(after)
                if not after:
                    failures.append({"id": request["id"], "check": "list", "reply": turn.reply})
                if len(request["turns"]) == 1:
                    wanted_first += 1
                    got_first += bool(after)
            if "noquestion" in checks:
                noquestion_checks += 1
                unwanted_questions += turn.question is not None
            for check in checks:
                if check.startswith("dir:"):
                    directions += 1
                    ok = bool(before and after) and direction_ok(
                        check, catalog, conversation.measures, before, after
                    )
                    direction_hits += ok
                    if not ok:
                        failures.append({"id": request["id"], "check": check})
                if check.startswith("avoid:"):
                    avoid_checks += 1
                    avoided += check[6:].replace("_", " ") not in [i["title"] for i in turn.items]
            if got != request["acts"]:
                failures.append(
                    {
                        "id": request["id"],
                        "missed": sorted(request["acts"] - got),
                        "extra": sorted(got - request["acts"]),
                    }
                )
    if profile:
        profiler.dump_stats(profile)
    by_category = {}
    for category, (tp, fp, fn) in sorted(counts.items()):
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        by_category[category] = {
            "precision": round(p, 3),
            "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
        }
    return {
        "requests": len(chosen),
        **({"llm": llm.describe(), "llm_reading_used": f"{llm_read}/{llm_turns}"} if llm else {}),
        "acts": by_category,
        "lists_honouring_constraints": f"{honoured}/{lists}",
        "specific_first_requests_with_list": f"{got_first}/{wanted_first}",
        "requests_expecting_list_with_list": f"{got_any}/{wanted_any}",
        "unwanted_questions": f"{unwanted_questions}/{noquestion_checks}",
        "critique_direction_success": f"{direction_hits}/{directions}",
        "wish_titles_avoided": f"{avoided}/{avoid_checks}",
        "turn_ms_median": round(statistics.median(latencies), 1),
        "turn_ms_p95": round(float(np.percentile(latencies, 95)), 1),
        "turn_cpu_ms_median": round(statistics.median(cpu_times), 1),
        "turn_cpu_ms_p95": round(float(np.percentile(cpu_times, 95)), 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "slowest_turns_cpu_ms": [
            {"cpu_ms": round(ms, 1), "id": rid, "text": text}
            for ms, rid, text in sorted(slowest, reverse=True)[:10]
        ],
        "failures": failures,
    }


class _NoProfile:
    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass


def _hit(scores: np.ndarray, wanted: set[int]) -> bool:
    return bool(set(np.argsort(-scores)[:10].tolist()) & wanted)


def run_queries(bundle_path: str) -> dict:
    """hit@10 with the blend the bundle was calibrated with (pseudo-queries at train
    time, so all 53 queries are held out), against plain cosine and the title guard; and,
    as a check on that calibration, the same grid fitted on the odd-numbered queries and
    reported on the even-numbered ones (never used by the engine)."""
    from whyrec.bundle import Bundle
    from whyrec.engine import Engine, _z
    from whyrec.text.encoder import encode_items, encode_query
    from whyrec.text.query_blend import SMOOTHING, WEIGHTS, blend, neighbour_average
    from whyrec.text.wishes import SemanticWishes

    engine = Engine(Bundle.load(bundle_path))
    guarded = Engine(engine.bundle)
    guarded.__dict__["text_matcher"] = SemanticWishes(engine.catalog, min_match=-1.0)
    catalog = engine.catalog
    full_text = encode_items(catalog)
    prior = _z(np.log1p(engine.popularity.astype(np.float64)))
    neighbours = neighbour_average(engine.bundle.train)
    ours = peer = with_guard = total = 0
    latencies, matches, targets, hits = [], [], [], []
    misses = []
    nobody = np.zeros(0, dtype=np.int64)
    for line in (HERE / "queries.tsv").read_text(encoding="utf-8").splitlines():
        query, wanted_titles = line.split("\t")
        wanted = {catalog.titles.index(t) for t in wanted_titles.split("|")}
        start = time.perf_counter()
        items = engine.recommend(nobody, k=10, explain=False, text=query)
        latencies.append((time.perf_counter() - start) * 1000)
        top = {i.position for i in items}
        ours += bool(top & wanted)
        hits.append(bool(top & wanted))
        peer += _hit(full_text @ encode_query(query), wanted)
        guard_top = {i.position for i in guarded.recommend(nobody, k=10, explain=False, text=query)}
        with_guard += bool(guard_top & wanted)
        matches.append(engine.text_matcher([(query, True)]))
        targets.append(wanted)
        total += 1
        if not top & wanted:
            misses.append({"query": query, "got": [i.title for i in items[:3]]})

    def grid_hits(rows: range) -> dict[tuple[float, float], float]:
        return {
            (w, s): float(
                np.mean(
                    [_hit(blend(matches[i], prior, w, s, neighbours), targets[i]) for i in rows]
                )
            )
            for s in SMOOTHING
            for w in WEIGHTS
        }

    second = second_set_hits(engine, nobody)
    odd, even = range(0, total, 2), range(1, total, 2)
    fitted = max(grid_hits(odd).items(), key=lambda kv: kv[1])[0]  # first best: smallest
    held_out = grid_hits(even)[fitted]
    calibrated_on = engine.bundle.info.get("text_query", {}).get("parameters")
    return {
        "queries": total,
        "blend_calibrated_at_train_time": calibrated_on,
        "hit@10": round(ours / total, 3),
        "hit@10_even_half": round(float(np.mean([hits[i] for i in even])), 3),
        "peer_plain_cosine_hit@10": round(peer / total, 3),
        "with_conversation_title_guard_hit@10": round(with_guard / total, 3),
        "split_check": {
            "fitted_on_odd_queries": {"popularity_weight": fitted[0], "smoothing": fitted[1]},
            "hit@10_on_even_queries": round(held_out, 3),
            "hit@10_all": round(grid_hits(range(total))[fitted], 3),
        },
        "query_ms_median": round(statistics.median(latencies), 1),
        "misses": misses,
        "second_set": second,
    }


def second_set_hits(engine, nobody: np.ndarray) -> dict:
    """hit@10 on `queries_second.tsv`: 60 descriptions of other well-known items, written
    after the first set, to check that a change to the text path helps beyond the 53
    queries it was looked at with (no parameter is fitted on either set)."""
    catalog = engine.catalog
    hits, misses = [], []
    for line in (HERE / "queries_second.tsv").read_text(encoding="utf-8").splitlines():
        query, wanted_titles = line.split("\t")
        wanted = {catalog.titles.index(t) for t in wanted_titles.split("|")}
        items = engine.recommend(nobody, k=10, explain=False, text=query)
        hits.append(bool({i.position for i in items} & wanted))
        if not hits[-1]:
            misses.append({"query": query, "got": [i.title for i in items[:3]]})
    return {"queries": len(hits), "hit@10": round(float(np.mean(hits)), 3), "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", choices=("requests", "queries"), default=None)
    parser.add_argument(
        "--requests",
        choices=("written", "generated", "all"),
        default="written",
        help="written: the 300 movie-worded requests; generated: requests built from the"
        " bundle's own fields and values (any catalog shape); all: both",
    )
    parser.add_argument("--per-kind", type=int, default=20, help="generated requests per kind")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the turns into this file"
    )
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--llm", action="store_true", help="Also run the LLM path.")
    parser.add_argument("--llm-base-url")
    parser.add_argument("--llm-model")
    parser.add_argument("--llm-timeout", type=float)
    parser.add_argument("--llm-config", type=Path)
    args = parser.parse_args()
    from whyrec.commands.llm_options import llm_config_from

    llm = llm_config_from(
        args.llm, args.llm_base_url, args.llm_model, None, args.llm_timeout, args.llm_config
    )
    result = {}
    if args.only != "queries":
        result["requests"] = run_requests(
            args.bundle, args.requests, args.per_kind, args.profile, limit=args.max_requests
        )
        if args.profile:
            result["requests"]["profile"] = str(args.profile)
        if llm is not None:
            result["requests_llm"] = run_requests(
                args.bundle, args.requests, args.per_kind, None, llm, args.max_requests
            )
    if args.only != "requests":
        result["queries"] = run_queries(args.bundle)
    short = {
        part: {k: v for k, v in values.items() if k not in ("failures", "misses")}
        for part, values in result.items()
    }
    print(json.dumps(short, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
