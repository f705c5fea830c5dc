"""JSONL datasets: records are validated line by line, and bad lines are named."""

import hashlib
import json
from dataclasses import dataclass, field

import pytest

from myopia.errors import MyopiaError
from myopia.faithfulness.records import (
    read_records,
    read_table,
    schema,
    table_path,
    table_sha256,
    write_records,
)


@dataclass(frozen=True)
class Example:
    id: str
    score: float
    present: bool
    tags: list[str] = field(default_factory=list)

    def check(self) -> None:
        if not self.id:
            raise ValueError("field 'id' must not be empty")


def test_round_trip_keeps_every_field(tmp_path):
    records = [Example("a", 1.5, True, ["x"]), Example("b", 2, False)]
    path = write_records(tmp_path / "data.jsonl", records)
    assert read_records(path, Example) == records


def test_schema_says_which_fields_are_required():
    rows = {row["name"]: row for row in schema(Example)}
    assert rows["id"] == {"name": "id", "type": "a string", "required": True}
    assert rows["tags"]["required"] is False and rows["tags"]["type"] == "a list of strings"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"id": "b", "present": true}', "missing field 'score'"),
        ('{"id": "b", "score": "high", "present": true}', "field 'score' must be a number"),
        ('{"id": "b", "score": 1, "present": 1}', "field 'present' must be true or false"),
        ('{"id": "b", "score": 1, "present": true, "tag": []}', "unknown field 'tag'"),
        ('{"id": "b", "score": 1, "present": true, "tags": [1]}', "a list of strings"),
        ('{"id": "", "score": 1, "present": true}', "must not be empty"),
        ('{"id": "b", "score": 1,', "not valid JSON"),
        ('["b", 1, true]', "expected a JSON object"),
    ],
)
def test_a_bad_line_is_named_with_its_number(tmp_path, line, says):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a", "score": 1, "present": true}\n\n' + line + "\n")
    with pytest.raises(MyopiaError) as error:
        read_records(path, Example)
    message = str(error.value)
    assert f"{path} line 3:" in message and says in message
    assert "\n" not in message


def test_missing_and_empty_files_say_what_to_give(tmp_path):
    with pytest.raises(MyopiaError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl", Example)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(MyopiaError, match="no records"):
        read_records(tmp_path / "empty.jsonl", Example)


def test_the_readme_documents_every_field_and_its_example_is_valid():
    import re
    from pathlib import Path

    from myopia.faithfulness.article_data import ArticleQuestion
    from myopia.faithfulness.quote_data import QuoteRequest
    from myopia.faithfulness.records import record_from_dict
    from myopia.faithfulness.tool_output_data import ToolTranscript

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for record_type in (QuoteRequest, ToolTranscript, ArticleQuestion):
        row = next(line for line in readme.splitlines() if f"| `{record_type.__name__}`" in line)
        for field_row in schema(record_type):
            assert f"`{field_row['name']}`" in row, (record_type.__name__, field_row["name"])
    [example] = re.findall(r"```json\n(.*?)\n```", readme, re.S)
    assert record_from_dict(json.loads(example), QuoteRequest).target == "ship"


@dataclass(frozen=True)
class Labelled:
    name: str
    messages: dict[str, str]


def test_an_object_field_takes_strings_only(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"name": "a", "messages": {"dns": "no host"}}\n')
    assert read_records(path, Labelled) == [Labelled("a", {"dns": "no host"})]
    path.write_text('{"name": "a", "messages": {"dns": 6}}\n')
    with pytest.raises(MyopiaError, match="line 1: field 'messages' must be an object"):
        read_records(path, Labelled)


def _table_types() -> dict[str, type]:
    from myopia.faithfulness.article_data import Fact, OffTopicQuestion
    from myopia.faithfulness.quote_data import Stopword
    from myopia.faithfulness.tool_output_data import Page, Tool

    return {
        "article_facts.jsonl": Fact,
        "off_topic_questions.jsonl": OffTopicQuestion,
        "pages.jsonl": Page,
        "tools.jsonl": Tool,
        "quote_stopwords.jsonl": Stopword,
    }


def test_every_packaged_table_is_checked_and_round_trips(tmp_path):
    """Each table loads through the record checks, and writing its records back gives the
    same bytes: the files hold exactly what the generators read, in their order."""
    types = _table_types()
    assert set(table_sha256()) == set(types)  # a new table needs its record type here
    for name, record_type in types.items():
        records = read_table(name, record_type)
        copy = write_records(tmp_path / name, records)
        packaged = table_path(name).read_bytes()
        assert copy.read_bytes() == packaged, name
        assert table_sha256()[name] == hashlib.sha256(packaged).hexdigest()


def test_a_bad_table_line_names_the_table_line_and_field(tmp_path, monkeypatch):
    from myopia.faithfulness import records
    from myopia.faithfulness.tool_output_data import Tool

    package = tmp_path / "planted_tables"
    (package / "tables").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    good = table_path("tools.jsonl").read_text().splitlines()[0]
    bad = json.loads(good) | {"page": "pdf"}
    (package / "tables" / "tools.jsonl").write_text(good + "\n" + json.dumps(bad) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(records, "TABLES", "planted_tables")
    with pytest.raises(MyopiaError) as error:
        read_table("tools.jsonl", Tool)
    message = str(error.value)
    assert message.startswith("planted_tables/tables/tools.jsonl line 2: page must be one of")
    assert "\n" not in message
