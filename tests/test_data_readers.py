"""Fine-tuning data readers: every format, column mapping, and a clear error (file:line) for each bad input."""

from __future__ import annotations

import json

import pytest

from fastdeberta.training.data import DataError, LabelMap, read_rows, read_squad, read_tagged, require_columns


def test_csv_tsv_jsonl_parquet_give_the_same_rows(tmp_path):
    rows = [{"text": "hello, world", "label": "a"}, {"text": 'say "hi"\tthere', "label": "b"}]
    (tmp_path / "d.csv").write_text('text,label\n"hello, world",a\n"say ""hi""\tthere",b\n', encoding="utf-8")
    (tmp_path / "d.tsv").write_text('text\tlabel\nhello, world\ta\n"say ""hi""\tthere"\tb\n', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n", encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "d.parquet"))
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.parquet"):
        got = read_rows(tmp_path / name)
        assert [r.data for r in got] == rows, name
    assert read_rows(tmp_path / "d.csv")[1].where.endswith("d.csv:3")
    assert read_rows(tmp_path / "d.jsonl")[0].where.endswith("d.jsonl:1")
    assert read_rows(tmp_path / "d.parquet")[1].where.endswith("d.parquet:row 2")


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "holds no records"),
    ("header.csv", "text,label\n", "holds no records"),
    ("ragged.csv", "text,label\na,b\nc,d,e\n", "ragged.csv:3: 3 fields, but the header has 2"),
    ("dup.csv", "text,text\na,b\n", "duplicate column names ['text']"),
    ("bad.jsonl", '{"text": "a"}\n{"text": oops}\n', "bad.jsonl:2: not valid JSON"),
    ("list.jsonl", '["a", "b"]\n', "list.jsonl:1: expected a JSON object"),
    ("data.xml", "<a/>", "unsupported data file type '.xml'"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        read_rows(path)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_rows(tmp_path / "nope.csv")
    (tmp_path / "latin.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_rows(tmp_path / "latin.csv")


def test_missing_column_names_the_line_and_the_option(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    rows = read_rows(path)
    with pytest.raises(DataError, match=r"d\.jsonl:2: has no column/field 'label' .*--label-column"):
        require_columns(rows, ["text", "label"], path, {"label": "--label-column"})


def test_label_map_sorted_numeric_and_unknown_label_error():
    assert LabelMap.from_values(["10", "2", "1"]).names == ["1", "2", "10"]
    labels = LabelMap.from_values(["neg", "pos", "neg"])
    assert labels.names == ["neg", "pos"] and labels.label2id == {"neg": 0, "pos": 1}
    with pytest.raises(DataError, match=r"f\.csv:7: label 'neutral' is not one the model knows \(\['neg', 'pos'\]\)"):
        labels.encode("neutral", "f.csv:7")


def test_conll_and_ner_jsonl(tmp_path):
    conll = tmp_path / "d.conll"
    conll.write_text("-DOCSTART- -X- O\n\nJohn NNP B-PER\nlives VBZ O\n\nin IN O\nParis NNP B-LOC\n", encoding="utf-8")
    got = read_tagged(conll)
    assert [(s.tokens, s.tags) for s in got] == [(["John", "lives"], ["B-PER", "O"]), (["in", "Paris"], ["O", "B-LOC"])]
    assert got[1].where.endswith("d.conll:6")
    bad = tmp_path / "bad.conll"
    bad.write_text("John B-PER\nlives VBZ O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conll:2: 3 columns, but earlier lines have 2"):
        read_tagged(bad)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n{"tokens": ["a"], "tags": ["O", "O"]}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: 1 tokens but 2 tags"):
        read_tagged(jsonl)


def test_squad_v1_v2_and_bad_answer_start(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "The cat sat on the mat.", "qas": [
        {"id": "1", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]},
        {"id": "2", "question": "Who flew?", "answers": [], "is_impossible": True}]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    got = read_squad(path)
    assert [(q.id, q.answers, q.is_impossible) for q in got] == [
        ("1", [{"text": "The cat", "answer_start": 0}], False), ("2", [], True)]
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"qas\[0\] \(id '1'\): answer 'The cat' is not at answer_start 3"):
        read_squad(path)
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "question": "q", "context": "xyz",
                                 "answers": {"text": ["y"], "answer_start": [1]}}) + "\n")
    assert read_squad(jsonl)[0].answers == [{"text": "y", "answer_start": 1}]
