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
get ``(0, 0)``.
"""

from .core import DEFAULT_MODEL_MAX_LENGTH, Tokenizer
from .encoding import BatchEncoding, Encoding
from .inputs import TokenIdError, UnencodableTextError

__all__ = ["DEFAULT_MODEL_MAX_LENGTH", "BatchEncoding", "Encoding", "TokenIdError", "Tokenizer", "UnencodableTextError"]
