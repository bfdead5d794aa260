"""Shadow heads generated and written to disk (Maciazek & Allison, Algorithm 1, at scale).

Requirement (reconstruction issue): "100,000 shadow heads (N = 10, 10 classes, features of the
default extractor) generated and written to disk in at most 60 s on 2 cores; 1,000,000 in at
most 10 minutes with memory bounded by the shard size".

Features: :func:`privlab.studies.reconstruction.transfer.transfer_setting` (the cached base
network's 256-d features of the 2,500 transfer images; its training is not timed). Heads: the
Table 3 MNIST recipe (FC(10), 32 epochs of full-batch GD). Written as safetensors shards of
``--shard-size`` heads (parameters + training-set indices + the job's config hash) into a
temporary folder. Reported: wall time, heads per second, bytes written and the process's peak
RSS before and after (memory must not grow with the number of heads)."""

from __future__ import annotations

import _env  # noqa: F401  (must precede torch)

# isort: split
import argparse
import resource
import sys
import tempfile

from _common import Clock, load_note, machine_info, set_threads, write_result

from privlab.run.model_cache import default_cache_dir
from privlab.studies.reconstruction.shadow_heads import ShadowJob, generate_shadow_heads
from privlab.studies.reconstruction.transfer import transfer_setting
from privlab.training.heads import HeadSpec


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=100_000)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--limit", type=float, default=None, help="seconds (default by size)")
    parser.add_argument(
        "--backend", default="local", help="local, or ray (a new local Ray with 2 CPUs)"
    )
    args = parser.parse_args(argv)
    set_threads(2)
    before = machine_info()
    data = transfer_setting(cache_dir=default_cache_dir())
    job = ShadowJob(
        spec=HeadSpec(),
        n=10,
        count=args.heads,
        shard_size=args.shard_size,
        pool_sha256=data.sha256(),
    )
    rss0 = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="privlab-shadows-") as tmp, Clock() as clock:
        paths = generate_shadow_heads(job, data.features, data.labels, tmp, backend=args.backend)
        written = sum(p.stat().st_size for p in paths)
    rss1 = peak_rss_mb()
    limit = args.limit or (60.0 if args.heads <= 100_000 else 600.0)
    passed = clock.wall <= limit
    after = machine_info()
    result = {
        "requirement": f"{args.heads} heads (N = 10, 10 classes) to disk in ≤ {limit:.0f} s",
        "heads": args.heads,
        "shard_size": args.shard_size,
        "backend": args.backend,
        "seconds": clock.wall,
        "heads_per_second": args.heads / clock.wall,
        "bytes_written": written,
        "peak_rss_mb_before": rss0,
        "peak_rss_mb_after": rss1,
        "verdict": "PASS" if passed else "FAIL",
        "load_note": load_note(before, after),
        "machine": before,
    }
    suffix = "" if args.backend == "local" else f"_{args.backend}"
    path = write_result(f"shadow_heads_{args.heads}{suffix}", result)
    print(
        f"{args.heads} heads in {clock.wall:.1f} s ({args.heads / clock.wall:.0f}/s, "
        f"{written / 1e9:.2f} GB written, peak RSS {rss0:.0f} → {rss1:.0f} MB; limit "
        f"{limit:.0f} s): {result['verdict']}; {result['load_note']}; {path}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
