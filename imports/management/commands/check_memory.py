"""Measure the memory a check takes: upload a file as a job, check it, print the outcome and the peak memory."""

import json
import resource
import time
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand

from imports.models import ImportKind
from imports.services.jobs import import_job_check, import_job_create


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
        # ru_maxrss is in kilobytes on Linux: the most this process held at once, the interpreter and Django included.
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures = {
            "file_mb": round(Path(path).stat().st_size / 1024 / 1024, 1),
            "status": job.status,
            "error": job.error[:160],
            "rows": job.total,
            "seconds": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(peak_mb, 1),
        }
        self.stdout.write(json.dumps(figures))
