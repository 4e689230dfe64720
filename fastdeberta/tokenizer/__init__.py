"""Exact DeBERTa tokenizers: SentencePiece (v2, v3, mDeBERTa) and GPT-2 byte-level BPE (v1).

The :class:`Tokenizer` picks a backend from the files found in a model folder:

* ``spm.model`` -- encoded with the ``sentencepiece`` library itself, so ids always equal
  ``SentencePieceProcessor.encode(text)`` (no re-implementation of the normalizer);
* ``vocab.json`` + ``merges.txt`` -- GPT-2 byte-level BPE through the ``tokenizers`` library;
* ``bpe_encoder.bin`` -- the original DeBERTa v1 vocabulary file (GPT-2 BPE plus DeBERTa's own id
  table), read with ``torch.load(weights_only=True)`` and run on the same byte-level BPE backend;
* ``tokenizer.json`` -- any ``tokenizers`` serialisation.

Special-token strings written in the text (``"[MASK]"``, ``"[CLS]"``, ... and added tokens) map to
their ids; the text between them is encoded on its own (SentencePiece) or by the ``tokenizers``
added-token machinery (BPE, where ``[MASK]`` also absorbs the space before it, as in transformers 4).

Inputs are laid out as ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with token type ids 0 for the
first segment (specials included) and 1 for ``B [SEP]``.

Offsets (``return_offsets_mapping=True``) are ``(start, end)`` indices into the Python string that
was passed in (code points, not bytes). Leading whitespace that a token absorbs (the ``"▁"`` marker of
SentencePiece, the ``"Ġ"`` of byte-level BPE) is *not* part of its span, so a token that is only a
``"▁"`` gets an empty span ``(p, p)`` at the end of the whitespace it stands for (for a leading ``"▁"``
that SentencePiece adds itself, that is the start of its own span, usually where the next token begins). When SentencePiece
splits one character into several byte-fallback pieces, the first pieces get an empty span at the
start of that character and the last piece gets the whole character. Special tokens and padding
get ``(0, 0)``. With ``is_split_into_words=True`` offsets are relative to each word, as in transformers.

The call takes transformers' arguments and returns its fields and accessors (the parity tests run
against transformers 5's ``DebertaV2Tokenizer`` / ``DebertaTokenizer``): ``word_ids()`` (a
SentencePiece word starts at each "▁" piece; each special token written in the text is a word),
``tokens()``, ``sequence_ids()``, ``char_to_token()`` (answered with transformers' spans, which
include the absorbed space), ``stride`` + ``return_overflowing_tokens`` with
``overflow_to_sample_mapping``, ``return_special_tokens_mask``, ``return_length``, ``padding_side``,
``truncation_side``, ``model_input_names``, and :meth:`Tokenizer.pad` for transformers' data collators.
Where transformers fails we refuse clearly instead: a stride not smaller than the window (transformers
panics in Rust), ``only_first`` / ``only_second`` down to nothing (it empties the row).

Errors (all :class:`fastdeberta.FastDebertaError`): text holding a lone surrogate (``"abc\ud800"``,
which UTF-8 cannot encode) raises :class:`UnencodableTextError` (a ``ValueError``) naming the argument,
item and character position -- nothing is replaced silently, and the check runs before anything is
encoded, so a failed call changes nothing. Wrong argument types raise ``InputTypeError`` (a
``TypeError``), unusable values ``InvalidInputError`` (a ``ValueError``), token ids outside the
vocabulary :class:`TokenIdError` (also an ``IndexError``).

Layout of the package: ``spm.py`` and ``bpe.py`` (backends, ``bpe_encoder.bin`` reader),
``specials.py`` (special tokens), ``inputs.py`` (argument checks), ``call.py`` / ``layout.py``
(truncation, windows, assembly, padding of a call), ``encoding.py`` (``BatchEncoding``, ``Encoding``),
``padding.py`` (``pad()``), ``files.py`` (folder format), ``core.py`` (the :class:`Tokenizer` facade).
"""

from .core import DEFAULT_MODEL_MAX_LENGTH, Tokenizer
from .encoding import BatchEncoding, Encoding
from .inputs import TokenIdError, UnencodableTextError

__all__ = [
    "DEFAULT_MODEL_MAX_LENGTH",
    "BatchEncoding",
    "Encoding",
    "TokenIdError",
    "Tokenizer",
    "UnencodableTextError",
]
