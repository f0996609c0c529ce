"""Rebuild a real-world ("wild") media folder from its manifest and fetched git mirrors.

    python tools/wild_set.py repos data/wild/dev.csv       # the repositories to fetch
    python tools/wild_set.py build data/wild/dev.csv ~/.cache/mesonet-data/wild-dev
    python tools/wild_set.py stats data/wild/dev.csv       # counts by label, kind, repository
    python tools/wild_set.py apart data/wild/dev.csv data/wild/train.csv  # no shared repo/file

The media never enter this repository: only the manifest does (columns
repo,commit,path,sha256,label,kind,note). ``build`` reads each row's bytes with
``git --git-dir=MIRROR cat-file blob COMMIT:PATH`` from the mirror of ``owner/name`` under
``--mirrors`` (``owner+name/repo``, as the fetch tool lays them out), checks their sha256
against the manifest and writes them to OUT/real/ or OUT/fake/ as
``<owner>__<name>__<path with / as __>``, the layout ``mesonet evaluate OUT`` reads.
A file whose bytes differ from the manifest is refused (exit 2, one line) and not written.
A file already in place with the right sha256 is kept, so a second build changes nothing.
See docs/wild-set.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

COLUMNS = ["repo", "commit", "path", "sha256", "label", "kind", "note"]
LABELS = ("real", "fake")
KINDS = ("image", "video")
DEFAULT_MIRRORS = Path("/work/.mirror")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class WildSetError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The manifest's rows, each checked: known columns, label, kind, hex digests, no repeats."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != COLUMNS:
                raise WildSetError(
                    f"{path}: columns must be {','.join(COLUMNS)}, not {reader.fieldnames}"
                )
            rows = list(reader)
    except OSError as error:
        raise WildSetError(f"cannot read the manifest {path}: {error.strerror}") from None
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        if any(row.get(column) in (None, "") for column in COLUMNS):
            raise WildSetError(f"{where}: every column needs a value")
        if not _REPO.match(row["repo"]):
            raise WildSetError(f"{where}: repo must be owner/name, not {row['repo']!r}")
        if not _HEX40.match(row["commit"]):
            raise WildSetError(f"{where}: commit must be 40 lower-case hex digits")
        if not _HEX64.match(row["sha256"]):
            raise WildSetError(f"{where}: sha256 must be 64 lower-case hex digits")
        if row["label"] not in LABELS:
            raise WildSetError(f"{where}: label must be real or fake, not {row['label']!r}")
        if row["kind"] not in KINDS:
            raise WildSetError(f"{where}: kind must be image or video, not {row['kind']!r}")
        name = file_name(row)
        if name in names:
            raise WildSetError(f"{where}: same file as line {names[name]}")
        if row["sha256"] in digests:
            raise WildSetError(f"{where}: same bytes (sha256) as line {digests[row['sha256']]}")
        names[name], digests[row["sha256"]] = line, line
    return rows


def file_name(row: dict[str, str]) -> str:
    """``owner__name__dir__file.ext``: unique across repositories, flat in OUT/<label>/."""
    owner, name = row["repo"].split("/")
    return "__".join([owner, name, *row["path"].split("/")])


def repositories(rows: list[dict[str, str]]) -> list[str]:
    """Each repository of the manifest once, in the manifest's order."""
    return list(dict.fromkeys(row["repo"] for row in rows))


def find_mirror(mirrors: Path, repo: str) -> Path | None:
    """The git directory of ``repo`` under ``mirrors``: ``owner+name/repo`` (the fetch
    tool's layout; ``owner+name/repo/.git`` for some snapshots) or ``owner+name`` itself;
    GitHub names are matched case-insensitively."""
    wanted = repo.replace("/", "+").lower()
    if not mirrors.is_dir():
        return None
    for entry in sorted(mirrors.iterdir()):
        if entry.name.lower() != wanted:
            continue
        for candidate in (entry / "repo", entry / "repo" / ".git", entry):
            if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                return candidate
    return None


def read_blob(git_dir: Path, commit: str, path: str) -> bytes:
    """The bytes of ``path`` at ``commit`` in the mirror, or a one-line reason it has none."""
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "blob", f"{commit}:{path}"],
        capture_output=True,
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise WildSetError(
            f"{git_dir} has no {path} at {commit[:12]} "
            f"({reason[-1] if reason else 'git failed'}; snapshots lack files of 4 MiB and more)"
        )
    return done.stdout


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(manifest: Path, out: Path, mirrors: Path, prune: bool = False) -> str:
    """Write every row to OUT/<label>/<file_name>; returns a one-line summary."""
    rows = read_manifest(manifest)
    found = {repo: find_mirror(mirrors, repo) for repo in repositories(rows)}
    missing = [repo for repo, git_dir in found.items() if git_dir is None]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        fetches = " ".join(f"github:{repo}" for repo in missing[:3])
        raise WildSetError(
            f"{len(missing)} repositories have no mirror under {mirrors}: {shown} (bring each "
            f"with the fetch tool, e.g. fetch {fetches}; "
            f"`python tools/wild_set.py repos {manifest}` lists them all)"
        )
    written = kept = 0
    wanted: set[Path] = set()
    for row in rows:
        folder = out / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / file_name(row)
        wanted.add(target)
        if target.is_file() and sha256_of(target) == row["sha256"]:
            kept += 1
            continue
        data = read_blob(found[row["repo"]], row["commit"], row["path"])
        actual = hashlib.sha256(data).hexdigest()
        if actual != row["sha256"]:
            target.unlink(missing_ok=True)  # never leave bytes the manifest does not vouch for
            raise WildSetError(
                f"refused {row['repo']}:{row['path']} at {row['commit'][:12]}: sha256 is "
                f"{actual}, the manifest says {row['sha256']} (not written)"
            )
        partial = target.with_name(target.name + ".part")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        written += 1
    extra = [
        path
        for label in LABELS
        if (out / label).is_dir()
        for path in sorted((out / label).iterdir())
        if path not in wanted
    ]
    for path in extra if prune else []:
        path.unlink()
    counts = Counter(row["label"] for row in rows)
    summary = (
        f"{out}: {counts['real']} real, {counts['fake']} fake "
        f"({written} written, {kept} already in place)"
    )
    if extra:
        summary += f"; {len(extra)} files not in the manifest " + (
            "removed" if prune else "left in place (--prune removes them)"
        )
    return summary


def apart(first: Path, second: Path) -> str:
    """Check that two manifests (the dev and the training set) share no repository and no
    file bytes; raises WildSetError naming what they share."""
    rows_a, rows_b = read_manifest(first), read_manifest(second)
    repos = sorted(
        {row["repo"].lower() for row in rows_a} & {row["repo"].lower() for row in rows_b}
    )
    digests = {row["sha256"] for row in rows_a} & {row["sha256"] for row in rows_b}
    if repos or digests:
        shared = [f"{len(repos)} repositories ({', '.join(repos[:5])})"] if repos else []
        shared += [f"{len(digests)} files by sha256"] if digests else []
        raise WildSetError(f"{first} and {second} share {' and '.join(shared)}")
    return (
        f"{first} ({len(rows_a)} files) and {second} ({len(rows_b)} files) "
        "share no repository and no file"
    )


def stats(rows: list[dict[str, str]]) -> str:
    """Counts by label, by label and kind, and by repository (real/fake)."""
    by_label = Counter(row["label"] for row in rows)
    by_kind = Counter((row["label"], row["kind"]) for row in rows)
    lines = [f"{len(rows)} files: {by_label['real']} real, {by_label['fake']} fake"]
    for label in LABELS:
        kinds = ", ".join(f"{by_kind[(label, kind)]} {kind}s" for kind in KINDS)
        lines.append(f"  {label}: {kinds}")
    per_repo = Counter((row["repo"], row["label"]) for row in rows)
    lines.append(f"{len(repositories(rows))} repositories (real/fake):")
    for repo in repositories(rows):
        lines.append(f"  {repo}: {per_repo[(repo, 'real')]}/{per_repo[(repo, 'fake')]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Rebuild: run `repos`, fetch each repository (fetch github:owner/name), then "
        "`build`. Exit status 2 with one line on a missing mirror, a missing file or a "
        "sha256 that differs from the manifest.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser(
        "build", help="write OUT/real/ and OUT/fake/ from the manifest and the mirrors"
    )
    build_parser.add_argument("manifest", type=Path)
    build_parser.add_argument("out", type=Path, help="e.g. ~/.cache/mesonet-data/wild-dev")
    build_parser.add_argument(
        "--mirrors",
        type=Path,
        default=DEFAULT_MIRRORS,
        help=f"folder holding the fetched mirrors, owner+name/repo (default {DEFAULT_MIRRORS})",
    )
    build_parser.add_argument(
        "--prune", action="store_true", help="remove files in OUT/real|fake not in the manifest"
    )
    repos_parser = commands.add_parser("repos", help="list the repositories to fetch")
    repos_parser.add_argument("manifest", type=Path)
    stats_parser = commands.add_parser("stats", help="counts by label, kind and repository")
    stats_parser.add_argument("manifest", type=Path)
    apart_parser = commands.add_parser(
        "apart", help="check that two manifests share no repository and no file"
    )
    apart_parser.add_argument("manifest", type=Path)
    apart_parser.add_argument("other", type=Path, help="e.g. data/wild/train.csv")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build(args.manifest, args.out.expanduser(), args.mirrors, args.prune))
        elif args.command == "apart":
            print(apart(args.manifest, args.other))
        elif args.command == "repos":
            print("\n".join(repositories(read_manifest(args.manifest))))
        else:
            print(stats(read_manifest(args.manifest)))
    except WildSetError as error:
        print(f"wild_set: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
