"""Measure the memory a check takes: upload a file as a job, check it, print the outcome and the peak memory."""

import json
import resource
import time
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand

from imports.models import ImportKind
from imports.services.jobs import import_job_check, import_job_create


def peak_resident_mb() -> float:
    """The most memory this process held at once (MB), the interpreter and Django included.

    Linux's VmHWM belongs to the process's own memory; ru_maxrss is kept across exec, so a process started by a big
    one (a test run) would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


class Command(BaseCommand):
    help = (
        "Check PATH as an import of --kind (nothing is applied) and print, as one JSON object on the last line, the "
        "job's status, its error, its rows, the seconds taken and this process's peak memory (resident, MB)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--kind", choices=ImportKind.values, default=ImportKind.POINTS)

    def handle(self, path, kind, **options):
        started = time.monotonic()
        with open(path, "rb") as handle:
            job = import_job_create(kind=kind, upload=File(handle, name=Path(path).name), reason="check_memory")
        job = import_job_check(job_id=job.pk)
        peak_mb = peak_resident_mb()
        figures = {
            "file_mb": round(Path(path).stat().st_size / 1024 / 1024, 1),
            "status": job.status,
            "error": job.error[:160],
            "rows": job.total,
            "seconds": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(peak_mb, 1),
        }
        self.stdout.write(json.dumps(figures))
