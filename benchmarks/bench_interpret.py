"""RecSAE interpretation on ml-latest-small: the issue's targets, measured.

For a SASRec and an iALS bundle trained with a leave-one-out holdout, runs the whole
`interpret` pipeline (1,024 latents, k = 8 unless told otherwise) and prints: FVU, dead
latents, nDCG@10 of the model vs its reconstructed vector (ratio; target ≥ 0.95), the
number of latents with confidence ≥ 0.8 (aim ≥ 100), the mean concept / unrelated shares
before and after ablating the 20 most confident concepts, and the wall time (the machine
is shared, so times are indicative). Reports and summaries go to --out.

    python benchmarks/bench_interpret.py --out /tmp/interpret-bench
    python benchmarks/bench_interpret.py --bundle bundles/sasrec --bundle bundles/ials
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def train(model: str, folder: Path) -> Path:
    """A bundle with a loo holdout, trained through the CLI (as a user would)."""
    if not (folder / "bundle.json").exists():
        command = [sys.executable, "-m", "whyrec.cli", "train", "--model", model]
        subprocess.run([*command, "--holdout", "loo", "--out", str(folder)], check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", type=Path, help="Bundle(s) to interpret.")
    parser.add_argument("--out", type=Path, default=Path("interpret-bench"))
    parser.add_argument("--latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()

    from whyrec.bundle import Bundle
    from whyrec.interpret import InterpretConfig, SAEConfig, interpret_bundle, summary
    from whyrec.interpret.report import write_html

    bundles = args.bundle or [
        train(name, args.out / "bundles" / name) for name in ("sasrec", "ials")
    ]
    rows = []
    for folder in bundles:
        started = time.perf_counter()
        bundle = Bundle.load(folder)
        config = InterpretConfig(sae=SAEConfig(latents=args.latents, k=args.k))
        result = interpret_bundle(bundle, config)
        seconds = time.perf_counter() - started
        data = summary(result)
        target = args.out / f"{data['model']}-{args.latents}-{args.k}"
        target.mkdir(parents=True, exist_ok=True)
        write_html(result, target / "report.html")
        (target / "summary.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))
        rows.append((data, seconds))

    for data, seconds in rows:
        mean = data["ablation_mean"] or {}
        original, reconstructed = data["ndcg@10_original"], data["ndcg@10_reconstructed"]
        ratio = reconstructed / original if original else float("nan")
        print(f"\n== {data['model']} ({data['probe']}), {data['latents']} latents, k={data['k']}")
        print(f"FVU analysis {data['fvu']:.4f}, training {data['fvu_training']:.4f}")
        dead, dead_analysis = data["dead_fraction"], data["dead_fraction_analysis"]
        print(f"dead latents {dead:.2%} (analysis {dead_analysis:.2%})")
        print(f"nDCG@10 {original:.4f} → {reconstructed:.4f} (ratio {ratio:.3f}; target ≥ 0.95)")
        print(f"confident latents (≥ 0.8): {data['confident_latents']} of {data['latents']}")
        if mean:
            print(
                f"ablation of {len(data['ablation'])} latents: concept share "
                f"{mean['concept_share_before']:.4f} → {mean['concept_share_after']:.4f} "
                f"(mean relative {mean['concept_change']:+.1%}); unrelated "
                f"{mean['other_share_before']:.4f} → {mean['other_share_after']:.4f} "
                f"(mean relative {mean['other_change']:+.1%}, |·| {mean['other_change_abs']:.1%})"
            )
            lower = sum(
                s["concept_share_after"] < s["concept_share_before"] for s in data["ablation"]
            )
            print(f"concept share lowered for {lower} of {len(data['ablation'])} latents")
        print(f"time {seconds:.0f} s ({data['seconds']})")


if __name__ == "__main__":
    main()
