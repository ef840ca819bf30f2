"""Every dataset format paged: the browser's pages and engine.data.paged.iter_batches give
exactly the rows (and row problems) of a full engine.data.load.load_rows read."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.data.errors import DataError
from engine.data.load import load_rows
from engine.data.paged import iter_batches
from tui.services.dataset_index import PAGE, BadSource, ColumnarSource, CsvSource, LineSource
from tui.services.dataset_session import Workbench, apply_filter, open_source

N = 500


def _rows(n: int = N) -> list[dict]:
    return [{"id": i, "text": f"row {i} " + "x" * (i * 7 % 53),
             "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a" * (i % 11)}]}
            for i in range(n)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    import datasets

    d = tmp_path_factory.mktemp("paged")
    rows = _rows()
    out = {}
    with open(d / "a.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    out["jsonl"] = d / "a.jsonl"
    flat = [{"id": str(r["id"]), "text": r["text"]} for r in rows]
    with open(d / "a.csv", "w", newline="") as fh:
        fh.write("id,text\n")
        for r in flat:  # every 9th record holds a quoted newline, a quoted comma and quotes
            t = f'"{r["text"]}\nsecond line, with ""quotes"""' if int(r["id"]) % 9 == 0 else r["text"]
            fh.write(f"{r['id']},{t}\n")
            if int(r["id"]) % 50 == 0:
                fh.write("\n,\n")  # blank records: skipped, as load skips them
    out["csv"] = d / "a.csv"
    with open(d / "a.tsv", "w", newline="") as fh:
        fh.write("id\ttext\r\n" + "".join(f"{r['id']}\t{r['text']}\r\n" for r in flat))
    out["tsv"] = d / "a.tsv"
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, d / "a.parquet", row_group_size=37)
    out["parquet"] = d / "a.parquet"
    (d / "shards").mkdir()
    pq.write_table(table.slice(0, 200), d / "shards" / "part-00000.parquet", row_group_size=64)
    pq.write_table(table.slice(200), d / "shards" / "part-00001.parquet", row_group_size=64)
    out["shards"] = d / "shards"
    datasets.Dataset.from_list(rows).save_to_disk(str(d / "hf"), max_shard_size="40KB")
    out["hf"] = d / "hf"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows[:7]),
                          "train": datasets.Dataset.from_list(rows)}).save_to_disk(str(d / "hfdict"))
    out["hfdict"] = d / "hfdict"
    (d / "a.json").write_text(json.dumps(rows))
    out["json"] = d / "a.json"
    return out


def test_a_shard_directory_loads_as_its_files_in_order(sources):
    parts = [load_rows(f) for f in sorted(sources["shards"].iterdir())]
    assert load_rows(sources["shards"]).rows == [r for p in parts for r in p.rows]
    assert load_rows(sources["shards"], limit=250).rows == [r for p in parts for r in p.rows][:250]


def _full(path):
    """What a full read gives (a shard directory: its files one after the other)."""
    res = load_rows(path)
    assert not res.problems
    return res.rows, res.lines


def _open(path):
    src, notes = open_source(path)
    if hasattr(src, "index"):
        src.index.build()
        assert src.index.done and src.index.error is None
    return src, notes


KINDS = ["jsonl", "csv", "tsv", "parquet", "shards", "hf", "hfdict", "json"]


@pytest.mark.parametrize("kind", KINDS)
def test_pages_are_the_rows_of_a_full_read(sources, kind):
    path = sources[kind]
    rows, lines = _full(path)
    src, _ = _open(path)
    assert len(src) == len(rows) == N
    want_type = {"jsonl": LineSource, "csv": CsvSource, "tsv": CsvSource, "parquet": ColumnarSource,
                 "shards": ColumnarSource, "hf": ColumnarSource, "hfdict": ColumnarSource}.get(kind)
    if want_type:
        assert type(src) is want_type
    # first page, a page across a row group (37, 64) / Arrow file / cache-page boundary, the last page
    for a, b in ((0, PAGE), (60, 140), (190, 260), (N - 45, N)):
        got = src.rows(a, b - a)
        assert [r.data for r in got] == rows[a:b], (kind, a, b)
        assert [r.index for r in got] == list(range(a, b))
        assert [r.line for r in got] == lines[a:b]
    assert src.get(N - 1).data == rows[-1]
    assert src.get(123).data == rows[123]


@pytest.mark.parametrize("kind", KINDS)
def test_iter_batches_concatenated_is_the_full_read(sources, kind):
    rows, lines = _full(sources[kind])
    got, got_lines, starts = [], [], []
    for b in iter_batches(sources[kind], batch_rows=64):
        assert not b.errors
        starts.append(b.start)
        got += b.rows
        got_lines += b.lines
        assert 0 <= b.done_bytes <= b.total_bytes or b.total_bytes == 0
    assert got == rows and got_lines == lines
    assert starts == list(range(0, N, 64))
    tail = [r for b in iter_batches(sources[kind], batch_rows=100, start=450) for r in b.rows]
    assert tail == rows[450:]


def test_jsonl_with_bad_lines_same_rows_and_problems(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = _rows(40)
    lines = [json.dumps(r) for r in good]
    lines[3] = "{not json"
    lines[10] = "[1, 2]"
    lines[17] = ""                       # blank: not a record
    lines[25] = '{"a": 1} trailing'
    blob = ("\r\n".join(lines) + "\n").encode()
    blob = blob.replace(b'"q30"', b'"q\xff30"')  # one line of bad UTF-8
    p.write_bytes(b"\xef\xbb\xbf" + blob)
    res = load_rows(p)
    assert len(res.problems) == 4
    rows, errors, row_lines = [], [], []
    for b in iter_batches(p, batch_rows=7):
        rows += b.rows
        errors += b.errors
        row_lines += b.lines
    assert [r for r in rows if r is not None] == res.rows
    assert [ln for r, ln in zip(rows, row_lines) if r is not None] == res.lines
    assert errors == [(pr.row, pr.line, pr.message) for pr in res.problems]
    assert all(rows[i] is None for i, _, _ in errors)
    # the browser shows the same rows, the bad ones marked at the same lines
    src, _ = _open(p)
    shown = src.rows(0, len(src))
    assert [r.data for r in shown if r.error is None] == res.rows
    assert [r.line for r in shown if r.error] == [pr.line for pr in res.problems]


def test_cancelled_stops_iteration_and_index_build(sources, tmp_path):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    for kind in ("jsonl", "csv", "parquet", "hf"):
        calls.clear()
        got = list(iter_batches(sources[kind], batch_rows=10, cancelled=cancelled))
        assert 1 <= len(got) <= 3, kind
    big = tmp_path / "big.jsonl"
    big.write_text(("{\"text\": \"" + "y" * 200 + "\"}\n") * 30_000)  # 6 MB: the first 1 MB chunk, then stop
    src, _ = open_source(big)
    calls.clear()
    calls.extend([1, 1])
    src.index.build(cancelled=cancelled)
    assert not src.index.done and 0 < len(src.index) < 30_000


def test_csv_record_lines_and_session_mapping(sources):
    """CSV records keep the line they start on (quoted newlines span lines), so cleaning maps
    session rows onto the browser's rows."""
    src, _ = _open(sources["csv"])
    res = load_rows(sources["csv"])
    assert [r.line for r in src.rows(0, N)] == res.lines
    assert src.get(9).data["text"].endswith('second line, with "quotes"')
    wb = Workbench(src)
    wb.start_session()
    assert all(wb._sid(i) == i for i in range(N))
    wb.delete([5])
    assert wb.deleted(5) and not wb.deleted(6)


def test_csv_bad_record_is_one_unreadable_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"a,b\n1,2\n3,\xff\n4,5,6\n7,8\n")
    src, _ = _open(p)
    got = src.rows(0, 10)
    assert [r.data for r in got] == [{"a": "1", "b": "2"}, None, None, {"a": "7", "b": "8"}]
    assert "UTF-8" in got[1].error and "more than the 2 columns" in got[2].error
    with pytest.raises(DataError, match="UTF-8"):  # a full read refuses the file, as load does
        list(iter_batches(p))
    (tmp_path / "nohead.csv").write_text("\n\n")
    with pytest.raises(BadSource, match="empty|header"):
        open_source(tmp_path / "nohead.csv")


def test_saved_dataset_dict_opens_train_split(sources):
    src, notes = _open(sources["hfdict"])
    assert notes == ["split 'train' of test, train"]
    assert load_rows(sources["hfdict"]).notes == notes


def test_sort_and_filter_by_length_read_no_rows(sources):
    """Length terms come from the source's lengths() (index bytes / Arrow column scan)."""
    for kind in ("jsonl", "parquet", "hf", "json"):
        src, _ = _open(sources[kind])
        wb = Workbench(src)
        lens = src.lengths()
        assert len(lens) == N and (lens > 0).all()
        read = []
        orig = src.rows
        src.rows = lambda a, c: read.append(a) or orig(a, c)
        cut = int(sorted(lens)[N // 2])
        got = apply_filter(wb, f"len>{cut} & sort:-len")
        assert read == [], kind
        want = sorted((i for i in range(N) if lens[i] > cut), key=lambda i: -lens[i])
        assert got.tolist() == want
        # a content term still reads rows, and combines with the length mask
        got = apply_filter(wb, f"len>{cut} & row 1")
        assert read and got.tolist() == [i for i in range(N) if lens[i] > cut and str(i).startswith("1")]
        src.rows = orig
    jl, _ = _open(sources["jsonl"])
    with open(sources["jsonl"], "rb") as fh:
        assert jl.lengths().tolist() == [len(line.rstrip(b"\n")) for line in fh]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
async def test_data_screen_pages_parquet_and_csv(tmp_path, kind):
    """The Data screen opens each through its paged source: first and last rows shown, the
    file untouched."""
    from tui.widgets.data.rows_table import RowsTable
    from tui_data_helpers import Host, chat_row, sha256, visible_rows, wait_for

    n = 10_000
    if kind == "parquet":
        path = tmp_path / "chat.parquet"
        pq.write_table(pa.Table.from_pylist([chat_row(i) for i in range(n)]), path, row_group_size=1024)
    else:
        path = tmp_path / "chat.csv"
        path.write_text("prompt,completion\n" + "".join(f'"question number {i}\nmore",answer {i}\n' for i in range(n)))
    before = sha256(path)
    app = Host(path, model_path=None)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: any("question number 0" in r for r in visible_rows(app)), what="first rows")
        await wait_for(pilot, lambda: app.screen.loaded, what="source open")
        table = app.screen.query_one(RowsTable)
        assert table.count == n
        await pilot.press("end")
        assert table.source_index() == n - 1
        await wait_for(pilot, lambda: any(f"question number {n - 1}" in r for r in visible_rows(app)),
                       what="the last row on screen")
    assert sha256(path) == before


def test_jsonl_blank_and_whitespace_lines_are_skipped_as_load_skips_them(tmp_path):
    p = tmp_path / "ws.jsonl"
    p.write_bytes(b'{"a": 1}\r\n\r\n   \r\n{"a": 2}\n\t \n{}\n  {"a": 3}  \n \t')
    res = load_rows(p)
    src, _ = _open(p)
    shown = src.rows(0, 100)
    assert [r.data for r in shown] == res.rows and [r.line for r in shown] == res.lines


def test_text_corpus_dir_streams_like_load(tmp_path):
    for k in range(3):
        (tmp_path / f"doc{k}.md").write_text(f"# Doc {k}\n\npara one\n\n\npara two of {k}\n")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    for documents in ("file", "blank_line"):
        res = load_rows(tmp_path, text_documents=documents)
        got = [b for b in iter_batches(tmp_path, batch_rows=2, text_documents=documents)]
        assert [r for b in got for r in b.rows if r is not None] == res.rows
        assert [e[2] for b in got for e in b.errors] == [pr.message for pr in res.problems]


def test_preview_reads_only_the_first_records(sources):
    from tui.services.dataset_preview import load_preview

    for kind in ("parquet", "csv", "hfdict", "jsonl"):
        pv = load_preview(str(sources[kind]), limit=5)
        assert pv.error is None and len(pv.rows) == 5, kind
        assert pv.rows[0][pv.columns.index("text")].startswith("row 0")
    assert "not found" in load_preview(str(sources["csv"]) + ".missing").error


def test_csv_error_mid_file_leaves_the_rows_before_it_and_one_bad_row(tmp_path, monkeypatch):
    import csv

    real = csv.field_size_limit
    monkeypatch.setattr(csv, "field_size_limit", lambda n=None: real(50) if n is not None else real())
    p = tmp_path / "long.csv"
    p.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(100)) + "5," + "y" * 100 + "\n7,8\n")
    with pytest.raises(DataError, match="field larger than field limit"):
        load_rows(p)
    src, _ = open_source(p)
    src.index.build()
    assert src.index.done and len(src) == 101
    assert [r.data for r in src.rows(0, 100)] == [{"a": str(i), "b": "x"} for i in range(100)]
    last = src.get(100, full=True)
    assert last.data is None and last.line == 102 and "rest of the file was not read" in last.error


def test_jsonl_line_endings_split_as_load_splits_them(tmp_path):
    """LF, CRLF and lone CR (old Mac) endings, mixed, blank lines and a bad line among them."""
    p = tmp_path / "endings.jsonl"
    p.write_bytes(b'{"a": 1}\r{"a": 2}\r\n\r{bad\n{"a": 3}\r\r\n{"a": 4}\r')
    res = load_rows(p)
    src, _ = _open(p)
    shown = src.rows(0, 100)
    assert [r.data for r in shown if r.error is None] == res.rows
    assert [r.line for r in shown if r.error is None] == res.lines
    assert [r.line for r in shown if r.error] == [pr.line for pr in res.problems]


def test_tiny_read_chunks_cut_records_anywhere(tmp_path, monkeypatch):
    """Chunk edges fall inside lines, CRLF pairs, quoted CSV fields and UTF-8 characters."""
    import engine.data.paged as paged
    import tui.services.dataset_index as dataset_index

    for mod, names in ((dataset_index, ("FIRST_CHUNK", "CHUNK")), (paged, ("CHUNK", "CSV_CHUNK"))):
        for name in names:
            monkeypatch.setattr(mod, name, 5)
    j = tmp_path / "t.jsonl"
    j.write_bytes('{"a": "é1"}\r\n\r\n{"a": 2}\r{x\n  \n{"a": "ü3"}\r\n'.encode())
    c = tmp_path / "t.csv"
    c.write_bytes('h1,h2\r\n"a\r\nb",é\r\n\r\n,\nc,"d,""e"""\n'.encode())
    for p in (j, c):
        res = load_rows(p)
        got = [b for b in iter_batches(p, batch_rows=2)]
        assert [r for b in got for r in b.rows if r is not None] == res.rows
        assert [e for b in got for e in b.errors] == [(pr.row, pr.line, pr.message) for pr in res.problems]
        src, _ = _open(p)
        shown = src.rows(0, 100)
        assert [r.data for r in shown if r.error is None] == res.rows
        assert [r.line for r in shown if r.error is None] == res.lines
