"""tools/wild_set.py: a wild-set folder rebuilt from its manifest and a fetched git mirror."""

from __future__ import annotations

import csv
import hashlib
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "wild_set.py"
COLUMNS = ["repo", "commit", "path", "sha256", "label", "kind", "note"]
GIT = [
    "git",
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.org",
    "-c",
    "init.defaultBranch=main",
]


def png(width: int, height: int, seed: int) -> bytes:
    """A small valid RGB PNG made from raw bytes."""
    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 3 + seed) % 256 for x in range(width * 3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True)


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, str, dict[str, bytes]]:
    """A bare mirror of a two-file repository laid out as the fetch tool does:
    MIRRORS/acme+faces/repo. Returns (MIRRORS, commit, {path: bytes})."""
    work = tmp_path / "work"
    files = {"samples/group.png": png(20, 12, 1), "results/swap out.png": png(16, 16, 2)}
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
    subprocess.run([*GIT, "init", "-q", str(work)], check=True)
    subprocess.run([*GIT, "-C", str(work), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "-q", "-m", "media"], check=True)
    mirrors = tmp_path / "mirrors"
    bare = mirrors / "acme+faces" / "repo"
    subprocess.run([*GIT, "clone", "-q", "--bare", str(work), str(bare)], check=True)
    head = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return mirrors, head, files


def manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows_for(commit: str, files: dict[str, bytes]) -> list[dict[str, str]]:
    return [
        {
            "repo": "acme/faces",
            "commit": commit,
            "path": "samples/group.png",
            "sha256": hashlib.sha256(files["samples/group.png"]).hexdigest(),
            "label": "real",
            "kind": "image",
            "note": "group photo, ~3 people",
        },
        {
            "repo": "acme/faces",
            "commit": commit,
            "path": "results/swap out.png",
            "sha256": hashlib.sha256(files["results/swap out.png"]).hexdigest(),
            "label": "fake",
            "kind": "image",
            "note": "face swap output",
        },
    ]


def test_build_writes_real_and_fake_with_their_names_and_bytes_and_is_idempotent(tmp_path, mirror):
    mirrors, commit, files = mirror
    csv_path = manifest(tmp_path / "dev.csv", rows_for(commit, files))
    out = tmp_path / "out"
    first = run("build", csv_path, out, "--mirrors", mirrors)
    assert first.returncode == 0, first.stderr
    real = out / "real" / "acme__faces__samples__group.png"
    fake = out / "fake" / "acme__faces__results__swap out.png"
    assert real.read_bytes() == files["samples/group.png"]
    assert fake.read_bytes() == files["results/swap out.png"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted([real.name, fake.name])
    assert b"1 real, 1 fake (2 written, 0 already in place)" in first.stdout
    stamp = real.stat().st_mtime_ns
    second = run("build", csv_path, out, "--mirrors", mirrors)
    assert second.returncode == 0 and b"(0 written, 2 already in place)" in second.stdout
    assert real.stat().st_mtime_ns == stamp and real.read_bytes() == files["samples/group.png"]
    fake.write_bytes(b"tampered")  # a wrong file in place is replaced by the right bytes
    third = run("build", csv_path, out, "--mirrors", mirrors)
    assert b"(1 written, 1 already in place)" in third.stdout
    assert fake.read_bytes() == files["results/swap out.png"]


def test_a_file_whose_sha256_differs_from_the_manifest_is_refused_and_not_written(tmp_path, mirror):
    mirrors, commit, files = mirror
    rows = rows_for(commit, files)
    rows[1]["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
    out = tmp_path / "out"
    done = run("build", manifest(tmp_path / "dev.csv", rows), out, "--mirrors", mirrors)
    assert done.returncode == 2
    message = done.stderr.decode()
    assert message.count("\n") == 1 and "Traceback" not in message
    assert "refused acme/faces:results/swap out.png" in message and "not written" in message
    assert not (out / "fake").exists() or not any((out / "fake").iterdir())
    assert (out / "real" / "acme__faces__samples__group.png").is_file()


def test_a_missing_mirror_is_named_with_the_fetch_that_brings_it(tmp_path, mirror):
    mirrors, commit, files = mirror
    rows = rows_for(commit, files)
    rows[0]["repo"] = "other/people"
    out = tmp_path / "out"
    done = run("build", manifest(tmp_path / "dev.csv", rows), out, "--mirrors", mirrors)
    assert done.returncode == 2
    message = done.stderr.decode()
    assert message.count("\n") == 1
    assert "other/people" in message and "fetch github:other/people" in message
    assert "acme/faces" not in message.split("(")[0]
    assert not out.exists()


def test_a_path_absent_from_the_mirror_is_one_line(tmp_path, mirror):
    mirrors, commit, files = mirror
    rows = rows_for(commit, files)
    rows[0]["path"] = "samples/too_big.mp4"
    done = run(
        "build", manifest(tmp_path / "dev.csv", rows), tmp_path / "out", "--mirrors", mirrors
    )
    assert done.returncode == 2 and done.stderr.decode().count("\n") == 1
    assert b"no samples/too_big.mp4" in done.stderr and b"4 MiB" in done.stderr


def test_repos_and_stats_and_a_malformed_manifest(tmp_path, mirror):
    mirrors, commit, files = mirror
    rows = rows_for(commit, files)
    csv_path = manifest(tmp_path / "dev.csv", rows)
    assert run("repos", csv_path).stdout.decode().split() == ["acme/faces"]
    stats = run("stats", csv_path).stdout.decode()
    assert "2 files: 1 real, 1 fake" in stats and "real: 1 images, 0 videos" in stats
    assert "acme/faces: 1/1" in stats
    rows[1]["sha256"] = rows[0]["sha256"]
    duplicate = run("stats", manifest(tmp_path / "dup.csv", rows))
    assert duplicate.returncode == 2 and b"same bytes (sha256) as line 2" in duplicate.stderr
    rows[1]["label"] = "forged"
    bad = run("stats", manifest(tmp_path / "bad.csv", rows))
    assert bad.returncode == 2 and b"label must be real or fake" in bad.stderr


def test_a_snapshot_laid_out_as_repo_dot_git_is_found(tmp_path, mirror):
    mirrors, commit, files = mirror
    other = tmp_path / "other"
    subprocess.run(
        [
            *GIT,
            "clone",
            "-q",
            "--no-checkout",
            str(mirrors / "acme+faces" / "repo"),
            str(other / "acme+faces" / "repo"),
        ],
        check=True,
    )
    assert (other / "acme+faces" / "repo" / ".git" / "HEAD").is_file()
    csv_path = manifest(tmp_path / "dev.csv", rows_for(commit, files))
    done = run("build", csv_path, tmp_path / "out", "--mirrors", other)
    assert done.returncode == 0, done.stderr
    real = tmp_path / "out" / "real" / "acme__faces__samples__group.png"
    assert real.read_bytes() == files["samples/group.png"]


def test_apart_names_what_two_manifests_share(tmp_path, mirror):
    _, commit, files = mirror
    rows = rows_for(commit, files)
    dev = manifest(tmp_path / "dev.csv", rows[:1])
    other = dict(rows[1], repo="someone/else")
    train = manifest(tmp_path / "train.csv", [other])
    fine = run("apart", dev, train)
    assert fine.returncode == 0 and b"share no repository and no file" in fine.stdout
    same_repo = manifest(tmp_path / "same_repo.csv", [rows[1]])
    shared = run("apart", dev, same_repo)
    assert shared.returncode == 2 and b"1 repositories (acme/faces)" in shared.stderr
    same_bytes = manifest(tmp_path / "same_bytes.csv", [dict(rows[0], repo="someone/else")])
    copied = run("apart", dev, same_bytes)
    assert copied.returncode == 2 and b"1 files by sha256" in copied.stderr
