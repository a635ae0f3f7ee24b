"""A path that looks local and is missing fails at once; a Hub id goes to the Hub."""

from __future__ import annotations

import time

import pytest

import tangpoem_hf.modeling as modeling
from tangpoem_hf.errors import CorpusError, ModelFileError
from tangpoem_hf.modeling import TangPoemLSTM
from tangpoem_hf.paths import is_missing_local_path


@pytest.mark.parametrize(
    ("source", "local"),
    [
        ("runs/nonexistent", True),  # a known run-folder prefix, even where runs/ does not exist
        ("mine/typo", True),  # mine/ exists in the working folder (made below)
        ("alice/tangpoem", False),  # a Hub id: nothing called alice/ here
        ("./x", True),
        ("a/b/c", True),
        ("/abs/path", True),
        ("bundled", False),  # one word: a Hub id or a name, never a missing folder
    ],
)
def test_what_counts_as_a_missing_local_path(tmp_path, monkeypatch, source, local):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    assert is_missing_local_path(source) is local


def test_a_missing_run_folder_fails_at_once_without_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    hub_calls = []
    monkeypatch.setattr(modeling, "hf_hub_download", lambda **kw: hub_calls.append(kw) or pytest.fail("Hub asked"))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="runs/nonexistent does not exist"):
        TangPoemLSTM.from_pretrained("runs/nonexistent")
    assert time.perf_counter() - start < 1 and hub_calls == []


def test_a_hub_id_still_goes_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    asked = []

    def offline(**kw):
        asked.append(kw["repo_id"])
        raise modeling.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(modeling, "hf_hub_download", offline)
    with pytest.raises(ModelFileError, match="not in the local cache"):
        TangPoemLSTM.from_pretrained("alice/tangpoem")
    assert asked == ["alice/tangpoem"]


def test_a_missing_corpus_folder_fails_at_once(tmp_path, monkeypatch):
    from tangpoem_hf.corpus import load_raw

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(CorpusError, match="data/quantangshi does not exist"):
        load_raw("data/quantangshi")


def test_portable_paths_keep_no_machine_layout(tmp_path, monkeypatch) -> None:
    from tangpoem_hf.paths import portable_path, portable_record

    monkeypatch.chdir(tmp_path)
    assert portable_path(str(tmp_path / "runs" / "x")) == "runs/x"  # under the working directory: relative
    assert portable_path("/data/chinese-poetry/quantangshi") == "quantangshi"  # elsewhere: the root's name
    assert portable_path("runs/x") == "runs/x" and portable_path("alice/tangpoem") == "alice/tangpoem"
    record = {"corpus": "/data/poems.txt", "extra": {"paths": ["/a/b/c", "d"]}, "lr": 0.1}
    assert portable_record(record) == {"corpus": "poems.txt", "extra": {"paths": ["c", "d"]}, "lr": 0.1}
