"""Helpers of the import tests: make an upload from text and run it through the service as the tasks do."""

from django.core.files.base import ContentFile

from imports.services.jobs import import_job_apply, import_job_check, import_job_create


def upload(text: str | bytes, *, kind: str = "points", reason: str = "", actor=None, name: str = "file.csv"):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return import_job_create(kind=kind, upload=ContentFile(data, name=name), reason=reason, actor=actor)


def checked(text, **kwargs):
    job = upload(text, **kwargs)
    return import_job_check(job_id=job.pk)


def applied(text, **kwargs):
    job = checked(text, **kwargs)
    return import_job_apply(job_id=job.pk)
