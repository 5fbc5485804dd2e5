"""Run one report job in this process and print what it cost: `python -m
tests.reporting.export_worker <report id>` (the 200k-entry export test's subprocess, and the
by-hand 1M-entry measurement). Prints one JSON line: the job's outcome, the seconds it took,
and the peak resident memory of this process (ru_maxrss) before and after the job."""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def peak_rss_kb() -> int:
    """This process image's peak resident memory (kB). Linux's ru_maxrss keeps the forking
    parent's high-water mark across exec (a big pytest worker would count); VmHWM does not."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "treasury.settings")
    import django

    django.setup()
    import pandas  # noqa: F401  (the job imports it anyway; counted in the baseline)

    from reporting.tasks import generate_report

    baseline = peak_rss_kb()
    started = time.perf_counter()
    outcome = generate_report(int(sys.argv[1]))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                **outcome,
                "seconds": seconds,
                "baseline_rss_kb": baseline,
                "peak_rss_kb": peak_rss_kb(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
