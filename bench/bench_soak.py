"""The soak's confusion matrix: healthy deploys blocked and faulty deploys passed, under network noise.

    .venv/bin/python bench/bench_soak.py [--healthy 50] [--faulty 20] [--seed 1]

What is run: ``--healthy`` full ``pytest smoke`` runs against ONE healthy 2-task stage, then
``--faulty`` runs spread over the runbook's faulty deploys (tests/soak.py ``FAULTY_DEPLOYS``: urlsafe,
rowcount, no_migrations, participant_can_invite on one task, restart_loop), a stage of their own
each. Every stage sits behind the soak's noise (tests/soak.py: resets and stalls on a few % of task
GETs, idle keep-alive closes, a 503 warm-up per task and run, AWS throttling/5xx/resets), seeded.

What is printed: per run, its exit code and categories; then the matrix (rows: healthy, faulty;
columns: exit 0 / 1 / 6 / other), healthy runs blocked (exit != 0: false failures) by category,
faulty runs passed (exit 0: missed) and faulty runs whose verdict lacks the fault's category, the
retries the verdicts report (read leniently from any verdict text that counts them) and the
faults the proxy injected. Prints figures; asserts nothing. Not run by ``make test``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.soak import AWS_FAULT_KINDS, FAULTY_DEPLOYS, TASK_FAULT_KINDS, RunOutcome, noisy_stage, soak_run  # noqa: E402


def column(exit_code: int) -> str:
    return str(exit_code) if exit_code in (0, 1, 6) else "other"


def healthy_soak(runs: int, seed: int, folder: Path) -> list[RunOutcome]:
    outcomes = []
    with noisy_stage(seed) as stage:
        for number in range(runs):
            outcome = soak_run(stage, folder / f"healthy-{number}")
            outcomes.append(outcome)
            print(f"healthy {number + 1:3}/{runs}: {outcome.describe()}", flush=True)
            for line in outcome.failing if outcome.exit_code else ():
                print(f"    {line}")
    return outcomes


def faulty_soak(runs: int, seed: int, folder: Path) -> list[tuple[str, str, RunOutcome]]:
    outcomes = []
    for index, deploy in enumerate(FAULTY_DEPLOYS):
        share = runs // len(FAULTY_DEPLOYS) + (1 if index < runs % len(FAULTY_DEPLOYS) else 0)
        if not share:
            continue
        with noisy_stage(seed + index + 1, deploy.scenario, deploy.faults) as stage:
            for number in range(share):
                outcome = soak_run(stage, folder / f"faulty-{deploy.id}-{number}")
                outcomes.append((deploy.id, deploy.category, outcome))
                print(f"faulty  {deploy.id:40} {number + 1}/{share}: {outcome.describe()}", flush=True)
    return outcomes


def print_matrix(healthy: list[RunOutcome], faulty: list[tuple[str, str, RunOutcome]]) -> None:
    columns = ("0", "1", "6", "other")
    print(f"\n{'':16}" + "".join(f"{'exit ' + c:>11}" for c in columns))
    for name, outcomes in (("healthy", healthy), ("faulty", [o for _, _, o in faulty])):
        counts = Counter(column(o.exit_code) for o in outcomes)
        print(f"{name + f' ({len(outcomes)})':16}" + "".join(f"{counts[c]:>11}" for c in columns))

    blocked = [o for o in healthy if o.exit_code != 0]
    print(f"\nhealthy runs blocked (false failures): {len(blocked)}/{len(healthy)}")
    for category, count in Counter(c for o in blocked for c in o.categories).most_common():
        print(f"  {category}: {count}")
    missed = [(deploy, o) for deploy, _, o in faulty if o.exit_code == 0]
    misnamed = [(deploy, o) for deploy, category, o in faulty if o.exit_code != 0 and category not in o.categories]
    print(f"faulty runs passed (missed): {len(missed)}/{len(faulty)}"
          + "".join(f"\n  {deploy}" for deploy, _ in missed))
    print(f"faulty runs not naming their fault's category: {len(misnamed)}/{len(faulty)}"
          + "".join(f"\n  {deploy}: {o.describe()}" for deploy, o in misnamed))
    extra = Counter(c for deploy, category, o in faulty for c in o.categories if c != category)
    if extra:
        print("  other categories beside the fault's: " + ", ".join(f"{c} x{n}" for c, n in extra.most_common()))

    everything = healthy + [o for _, _, o in faulty]
    print(f"\nretries the verdicts report: {sum(o.retries for o in healthy)} in healthy runs, "
          f"{sum(o.retries for _, _, o in faulty)} in faulty runs")
    injected: Counter[str] = Counter()
    for outcome in everything:
        injected.update(outcome.injected)
    print("proxy, over all runs: " + ", ".join(
        f"{kind} {injected[kind]}" for kind in ("tasks.requests", *TASK_FAULT_KINDS, "aws.requests", *AWS_FAULT_KINDS)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--healthy", type=int, default=50, help="healthy runs (one stage)")
    parser.add_argument("--faulty", type=int, default=20, help="faulty runs, spread over the runbook's faults")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder:
        healthy = healthy_soak(args.healthy, args.seed, Path(folder))
        faulty = faulty_soak(args.faulty, args.seed, Path(folder))
    print_matrix(healthy, faulty)
    print(f"\n{args.healthy} healthy + {args.faulty} faulty runs in {time.monotonic() - started:.0f} s (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
