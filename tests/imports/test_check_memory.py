"""The memory of a check stays under 300 MB whatever the file: each hostile shape is checked by `manage.py
check_memory` in a process of its own (with its own SQLite database), which reports its peak resident memory."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imports.xlsx_files import xlsx_with_shared_strings

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MB = 300


@pytest.fixture(scope="module")
def own_database(tmp_path_factory):
    """A migrated SQLite database for the measuring processes (the test's own is in memory)."""
    folder = tmp_path_factory.mktemp("memory")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_BROKER_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{folder}/db.sqlite3",
        VAR_DIR=str(folder),
        MEDIA_ROOT=str(folder / "media"),
        SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    return folder, env


def _measure(own_database, path: Path, kind: str = "points") -> dict:
    _folder, env = own_database
    result = subprocess.run(
        [sys.executable, "manage.py", "check_memory", str(path), "--kind", kind],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _csv(folder: Path, name: str, header: str, lines) -> Path:
    path = folder / name
    with open(path, "w", encoding="utf-8") as out:
        out.write(header + "\n")
        for line in lines:
            out.write(line)
    return path


def test_an_xlsx_whose_text_table_is_at_the_cap(own_database):
    path = own_database[0] / "strings.xlsx"
    xlsx_with_shared_strings(path, 690_000)  # 16 MB of shared strings, the most distinct strings the cap lets in
    figures = _measure(own_database, path)
    assert figures["status"] == "checked", figures
    assert figures["peak_rss_mb"] < LIMIT_MB, figures


@pytest.mark.parametrize(
    "shape",
    ["rows", "one_line", "long_records", "million_columns"],
)
def test_hostile_csv_shapes(own_database, shape):
    folder = own_database[0]
    if shape == "rows":  # 300,000 ordinary rows
        path = _csv(
            folder,
            "rows.csv",
            "email,points,reason",
            (f"m{i % 5000}@s.example,{i % 90 + 1},x\n" for i in range(300_000)),
        )
        expected = "checked"
    elif shape == "one_line":  # 20 MB without a line break
        path = _csv(folder, "line.csv", "email,points,reason", iter(["a," * 10_000_000]))
        expected = "failed"
    elif shape == "long_records":  # rows just under the record cap: 4 cells under the cell cap, full of line breaks
        cell = '"' + ("y" * 999 + "\n") * 1_000 + '"'
        row = f"a@s.example,5,{cell},{cell},{cell},{cell}\n"
        path = _csv(folder, "records.csv", "email,points,reason", (row for _ in range(10)))
        expected = "checked"
    else:  # a header of a million columns
        path = _csv(folder, "columns.csv", ",".join(f"c{i}" for i in range(1_000_000)), iter(["1\n"]))
        expected = "failed"
    figures = _measure(own_database, path)
    assert figures["status"] == expected, figures
    assert figures["peak_rss_mb"] < LIMIT_MB, figures
