"""Submit one job and wait for it, in a process of its own so its peak RSS is its own.

``python -m bench.scale_submit DATASET OUTPUT_URL SOURCE...`` with the ``AUTODS_*``
settings in the environment; prints one JSON line: job id, seconds from submit to
succeeded, and this process's VmHWM in KiB.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    import autods
    from autods.config import Settings
    from autods.db.session import engine_for
    from bench.common import proc_status_kib
    from bench.pipeline_overhead import job_state, release_results

    dataset, output_url, *sources = argv
    settings = Settings()
    start = time.perf_counter()
    job = autods.submit(sources, dataset, settings=settings, output_url=output_url,
                        embed=False)
    submitted = time.perf_counter() - start
    engine = engine_for(settings.database.url)
    while True:
        status, error, _ = job_state(engine, job.id)
        if status in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    release_results()
    sys.stdout.write(json.dumps({"job_id": job.id, "status": status, "error": error,
                                 "elapsed_s": elapsed, "submit_s": submitted,
                                 "vmhwm_kib": proc_status_kib(os.getpid(), "VmHWM")}) + "\n")
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
