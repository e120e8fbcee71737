"""Pairs in, labels out: alignkit JSONL, Argilla and Label Studio JSON.

* Pairs JSONL: ``prompt`` plus ``response_a``/``response_b`` (or ``chosen``/``rejected``,
  imported as A and B; their order is not a label). ``prompt`` is a string or chat messages.
* Preference JSONL export: the canonical ``prompt``/``chosen``/``rejected``/``strength``/
  ``source`` records, per label (with ``annotator`` and ``tie``) or aggregated per item
  (``strength`` = aggregated P(chosen preferred), with ``votes`` and ``agreement``).
* Argilla (2.x record dicts, ``dataset.records.to_list(flatten=False)``): fields ``prompt``
  (chat messages), ``response_a``, ``response_b``; question ``preference`` with values
  ``a``/``b``/``tie``; a discarded response is a skip.
* Label Studio tasks: ``data`` holds ``prompt`` (text), ``response_a``, ``response_b``;
  results of a ``<Pairwise name="preference">`` tag (``{"selected": "left"|"right"}``), a
  ``<Choices name="verdict">`` with ``tie``, and cancelled annotations as skips.
  ``LABEL_STUDIO_CONFIG`` is the matching labelling interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from alignkit.core.errors import DataError
from alignkit.plugins.human.agreement import aggregate as aggregate_votes
from alignkit.plugins.human.store import Store, StoreError

LABEL_STUDIO_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="preference" toName="response_a,response_b"/>
  <Text name="response_a" value="$response_a"/>
  <Text name="response_b" value="$response_b"/>
  <Choices name="verdict" toName="prompt" showInline="true">
    <Choice value="tie"/>
  </Choices>
</View>"""


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _prompt(value: Any, path: str, line: int | None) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise DataError("expected a non-empty string or a list of {role, content} messages", path=path, line=line,
                    field="prompt")


def _text(value: Any, path: str, line: int | None, field: str) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0].get("content")
    if not isinstance(value, str) or not value.strip():
        raise DataError("expected a non-empty string", path=path, line=line, field=field)
    return value


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pairs from JSONL (``.json``, ``.csv`` and ``.parquet`` as ``data=files`` reads them);
    every record is checked before anything is imported. Errors name the file's own line
    (blank lines count, as in an editor) and field, bytes that are not UTF-8 included."""
    from alignkit.plugins.data import loaders

    path = str(path)
    if not Path(path).is_file():
        raise DataError("file not found", path=path)
    loc = loaders.Location(path, "file", str(Path(path).absolute()))
    pairs = []
    for line, row in loaders.iter_rows(loc):
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", path=path, line=line)
        if "prompt" not in row:
            raise DataError("missing", path=path, line=line, field="prompt")
        a_field, b_field = ("response_a", "response_b") if "response_a" in row else ("chosen", "rejected")
        for field in (a_field, b_field):
            if field not in row:
                raise DataError("missing (a pair needs response_a/response_b or chosen/rejected)",
                                path=path, line=line, field=field)
        meta = {k: v for k, v in row.items() if k not in ("prompt", a_field, b_field)}
        pairs.append({"prompt": _prompt(row["prompt"], path, line),
                      "response_a": _text(row[a_field], path, line, a_field),
                      "response_b": _text(row[b_field], path, line, b_field), "meta": meta})
    return pairs


def run_pairs(run_dir: str | Path) -> list[dict[str, Any]]:
    """Pairs a run sampled: the newest ``pairs`` artifact (else ``preferences``) in summary.json."""
    run_dir = Path(run_dir)
    summary_file = run_dir / "summary.json"
    if not summary_file.exists():
        raise DataError("not a run directory (no summary.json)", path=str(run_dir))
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    for name in ("pairs", "preferences"):
        for stage in reversed(list(summary.get("stages", {}).values())):
            rel = (stage.get("artifacts") or {}).get(name)
            if not rel:
                continue
            target = run_dir / rel
            files = [target] if target.is_file() else [p for p in (target / "train.jsonl", target / "eval.jsonl")
                                                      if p.exists()]
            pairs: list[dict[str, Any]] = []
            for file in files:
                pairs += read_pairs(file)
            if pairs:
                return pairs
    raise DataError("the run has no 'pairs' or 'preferences' artifact to import", path=str(summary_file))


# -- preference JSONL ------------------------------------------------------------------------


def _record(item: Any, a_wins: bool, strength: float, source: str) -> dict[str, Any]:
    chosen, rejected = (item.response_a, item.response_b) if a_wins else (item.response_b, item.response_a)
    prompt = item.prompt if not isinstance(item.prompt, str) else [{"role": "user", "content": item.prompt}]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "strength": round(strength, 6),
            "source": source}


def export_preferences(store: Store, project: str, aggregate: str = "majority") -> list[dict[str, Any]]:
    """Preference records: ``aggregate="none"`` gives one per label, else one per labelled item."""
    items = {item.id: item for item in store.items(project)}
    labels = store.labels(project)
    source = f"human:{project}"
    out: list[dict[str, Any]] = []
    if aggregate == "none":
        for label in labels:
            if label.choice == "skip":
                continue
            item = items[label.item_id]
            record = _record(item, label.choice != "b", 0.5 if label.choice == "tie" else 1.0, source)
            record.update(item_id=item.id, annotator=label.annotator, tie=label.choice == "tie",
                          principles=list(label.principles), comment=label.comment)
            out.append(record)
        return out
    annotators: dict[int, list[str]] = {}
    for label in labels:
        if label.choice != "skip":
            annotators.setdefault(label.item_id, []).append(label.annotator)
    for item_id, agg in sorted(aggregate_votes(labels, aggregate).items()):
        item = items[item_id]
        a_wins = agg.probability >= 0.5
        record = _record(item, a_wins, agg.probability if a_wins else 1.0 - agg.probability, source)
        record.update(item_id=item.id, tie=agg.preferred == "tie", votes=agg.votes,
                      agreement=round(agg.agreement, 6), annotators=annotators.get(item_id, []),
                      aggregate=aggregate)
        out.append(record)
    return out


# -- Argilla -----------------------------------------------------------------------------


def export_argilla(store: Store, project: str) -> list[dict[str, Any]]:
    by_item: dict[int, list[dict[str, Any]]] = {}
    for label in store.labels(project):
        response = ({"value": None, "user_id": label.annotator, "status": "discarded"} if label.choice == "skip"
                    else {"value": label.choice, "user_id": label.annotator, "status": "submitted"})
        by_item.setdefault(label.item_id, []).append(response)
    records = []
    for item in store.items(project):
        prompt = item.prompt if not isinstance(item.prompt, str) else [{"role": "user", "content": item.prompt}]
        records.append({
            "id": item.key,
            "fields": {"prompt": prompt, "response_a": item.response_a, "response_b": item.response_b},
            "metadata": {"alignkit_item_id": item.id, "origin_run": item.origin_run,
                         "origin_stage": item.origin_stage},
            "responses": {"preference": by_item.get(item.id, [])},
            "suggestions": {},
        })
    return records


def import_argilla(store: Store, project: str, records: Iterable[dict[str, Any]], source: str = "argilla"
                   ) -> tuple[int, int]:
    """Items and their responses from Argilla records; returns (items, labels) imported."""
    pairs, responses = [], []
    for index, record in enumerate(records, start=1):
        where = f"{source} (record {index})"
        fields = record.get("fields") if isinstance(record, dict) else None
        if not isinstance(fields, dict):
            raise DataError("expected a record with 'fields'", path=where, field="fields")
        pairs.append({"prompt": _prompt(fields.get("prompt"), where, None),
                      "response_a": _text(fields.get("response_a"), where, None, "fields.response_a"),
                      "response_b": _text(fields.get("response_b"), where, None, "fields.response_b"),
                      "meta": {"argilla_id": record.get("id")}})
        answers = (record.get("responses") or {}).get("preference") or []
        parsed = []
        for answer in answers:
            user = answer.get("user_id")
            if not user:
                raise DataError("a response needs a user_id", path=where, field="responses.preference")
            if answer.get("status") == "discarded":
                parsed.append((str(user), "skip"))
            elif answer.get("status", "submitted") == "submitted":
                value = answer.get("value")
                if value not in ("a", "b", "tie"):
                    raise DataError(f"expected a, b or tie, got {value!r}", path=where,
                                    field="responses.preference.value")
                parsed.append((str(user), value))
        responses.append(parsed)
    return _import(store, project, pairs, responses)


# -- Label Studio ------------------------------------------------------------------------


def export_label_studio(store: Store, project: str) -> list[dict[str, Any]]:
    by_item: dict[int, list[dict[str, Any]]] = {}
    for label in store.labels(project):
        if label.choice == "skip":
            annotation = {"completed_by": {"email": label.annotator}, "was_cancelled": True, "result": []}
        elif label.choice == "tie":
            annotation = {"completed_by": {"email": label.annotator}, "was_cancelled": False, "result": [
                {"from_name": "verdict", "to_name": "prompt", "type": "choices", "value": {"choices": ["tie"]}}]}
        else:
            annotation = {"completed_by": {"email": label.annotator}, "was_cancelled": False, "result": [
                {"from_name": "preference", "to_name": "response_a", "type": "pairwise",
                 "value": {"selected": "left" if label.choice == "a" else "right"}}]}
        if label.comment:
            annotation["result"].append({"from_name": "comment", "to_name": "prompt", "type": "textarea",
                                         "value": {"text": [label.comment]}})
        by_item.setdefault(label.item_id, []).append(annotation)
    return [{"id": item.id, "data": {"prompt": prompt_text(item.prompt), "prompt_messages": item.prompt,
                                     "response_a": item.response_a, "response_b": item.response_b,
                                     "alignkit_key": item.key},
             "annotations": by_item.get(item.id, [])} for item in store.items(project)]


def _ls_user(annotation: dict[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return None if who is None else str(who)


def import_label_studio(store: Store, project: str, tasks: Iterable[dict[str, Any]], source: str = "label-studio"
                        ) -> tuple[int, int]:
    pairs, responses = [], []
    for index, task in enumerate(tasks, start=1):
        where = f"{source} (record {index})"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise DataError("expected a task with 'data'", path=where, field="data")
        prompt = data.get("prompt_messages") or data.get("prompt")
        pairs.append({"prompt": _prompt(prompt, where, None),
                      "response_a": _text(data.get("response_a"), where, None, "data.response_a"),
                      "response_b": _text(data.get("response_b"), where, None, "data.response_b"),
                      "meta": {"label_studio_id": task.get("id")}})
        parsed = []
        for annotation in task.get("annotations") or []:
            user = _ls_user(annotation)
            if user is None:
                raise DataError("an annotation needs completed_by", path=where, field="annotations")
            if annotation.get("was_cancelled"):
                parsed.append((user, "skip"))
                continue
            choice = None
            for result in annotation.get("result") or []:
                value = result.get("value") or {}
                if result.get("type") == "pairwise":
                    choice = {"left": "a", "right": "b"}.get(value.get("selected"))
                elif result.get("type") == "choices" and "tie" in (value.get("choices") or []):
                    choice = "tie"
            if choice is None:
                raise DataError("no pairwise selection and no 'tie' choice in this annotation", path=where,
                                field="annotations.result")
            parsed.append((user, choice))
        responses.append(parsed)
    return _import(store, project, pairs, responses)


def _import(store: Store, project: str, pairs: list[dict[str, Any]], responses: list[list[tuple[str, str]]]
            ) -> tuple[int, int]:
    ids = store.add_items(project, pairs)
    annotators = {a.name: a.id for a in store.annotators()}
    count = 0
    for item_id, answers in zip(ids, responses):
        for user, choice in answers:
            if user not in annotators:
                try:
                    store.add_annotator(user)  # token never shown: `alignkit label rotate-token` issues one
                except StoreError:
                    pass  # created meanwhile by another importer
                annotators = {a.name: a.id for a in store.annotators()}
            status, _ = store.submit(item_id, annotators[user], choice)
            count += status != "unchanged"
    return len(ids), count
