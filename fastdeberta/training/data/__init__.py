"""Fine-tuning data: table readers (CSV/TSV/JSONL/Parquet), token-tagged sentences (JSONL/CoNLL),
SQuAD questions, label maps. Errors name the file and line."""

from .labels import LabelMap, label_name
from .ner import TaggedSentence, read_tagged
from .readers import TABLE_TYPES, DataError, Row, read_rows, require_columns
from .squad import QAExample, read_squad

__all__ = ["TABLE_TYPES", "DataError", "LabelMap", "QAExample", "Row", "TaggedSentence", "label_name",
           "read_rows", "read_squad", "read_tagged", "require_columns"]
