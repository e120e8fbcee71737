"""``DataSourceContract``: what every data source promises the stages that read it."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract


DATA_KINDS = ("sft", "preferences", "prompts")
SPLITS = ("train", "eval")
ROLES = ("system", "user", "assistant")


def _check_messages(messages: Any, where: str) -> None:
    assert isinstance(messages, list) and messages, f"{where}: a non-empty list of messages, not {messages!r}"
    for turn in messages:
        assert isinstance(turn, dict) and turn.get("role") in ROLES and isinstance(turn.get("content"), str), \
            f"{where}: each message is {{'role': system|user|assistant, 'content': str}}, not {turn!r}"


class DataSourceContract(_ComponentContract):
    """What every data source promises the stages that read it (see ``interfaces.DataSource``).

    ``class TestMyData(DataSourceContract): name = "my_data"`` builds ``data=my_data`` as a run
    does and reads every kind (``sft``, ``preferences``, ``prompts``) of both splits: each is
    None or a ``datasets.Dataset`` with the columns TRL and the stages expect. Set ``provides``
    to the kinds your source must give for ``train``.
    """

    kind = "data_source"
    group = "data"
    provides: Sequence[str] = ()  # kinds that must have train rows; () : at least one kind does

    @pytest.fixture(scope="class")
    @classmethod
    def data_source(cls, contract_registry, tmp_path_factory, contract_overrides):
        """The source under test, built as a run builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory, contract_overrides)

    @pytest.fixture(scope="class")
    @classmethod
    def tables(cls, data_source) -> dict[tuple[str, str], Any]:
        return {(kind, split): getattr(data_source, kind)(split) for kind in DATA_KINDS for split in SPLITS}

    def test_implements_the_protocol(self, data_source):
        from alignkit.core.interfaces import DataSource

        assert isinstance(data_source, DataSource), "a data source needs sft(split), preferences(split), prompts(split)"

    def test_each_kind_is_none_or_a_dataset(self, tables):
        import datasets

        for (kind, split), table in tables.items():
            assert table is None or isinstance(table, datasets.Dataset), \
                f"{kind}('{split}') returned {type(table).__name__}: return a datasets.Dataset or None"

    def test_gives_training_data(self, tables):
        present = [kind for kind in DATA_KINDS if tables[kind, "train"] is not None and len(tables[kind, "train"])]
        assert present, "no kind has train rows"
        missing = [kind for kind in self.provides if kind not in present]
        assert not missing, f"no train rows of {missing}"

    def test_rows_have_the_expected_columns(self, tables):
        for (kind, split), table in tables.items():
            for i, row in enumerate(table or []):
                where = f"{kind}('{split}') row {i}"
                if kind == "sft":
                    _check_messages(row.get("messages"), f"{where} 'messages'")
                    assert any(t["role"] == "assistant" for t in row["messages"]), f"{where}: no assistant turn"
                    continue
                _check_messages(row.get("prompt"), f"{where} 'prompt'")
                if kind == "preferences":
                    for column in ("chosen", "rejected"):
                        assert isinstance(row.get(column), str), f"{where}: '{column}' must be the assistant's text"
                    strength = row.get("strength")
                    assert strength is None or 0.0 <= strength <= 1.0, f"{where}: strength {strength} not in [0, 1]"

    def test_reading_twice_gives_the_same_rows(self, data_source, tables):
        for kind in DATA_KINDS:
            again = getattr(data_source, kind)("train")
            first = tables[kind, "train"]
            assert (again is None) == (first is None), f"{kind}('train') is None only sometimes"
            if first is not None:
                assert again.to_list() == first.to_list(), f"{kind}('train') changed between two reads"
