"""repclass.files: outputs are published as a set or not at all; a kill half-way is rolled back by
the next run."""

import json
import socket

import pytest

from support.files import dead_pid
from repclass.files import lock_path


def test_a_half_published_set_is_rolled_back_by_the_next_run(tmp_path):
    """The states a kill can leave a publish in, from the journal in the dead run's lock: the first
    output renamed into place (its old version aside), the second not yet. The next claim of the
    same outputs puts the old set back and removes every leftover, and then refuses the existing
    outputs without --force as after any finished run."""
    from repclass.errors import OutputExistsError
    from repclass.files import Output, Outputs

    pid = dead_pid()
    first, second = tmp_path / "p.tsv", tmp_path / "p.metrics.json"
    (tmp_path / f".p.tsv.old-{pid}").write_text("sample_id\told\n")   # the old output, moved aside
    first.write_text("sample_id\tnew\n")                               # the new one, renamed into place
    second.write_text('{"old": 1}\n')                                  # not replaced yet
    (tmp_path / f".p.metrics.json.tmp-{pid}").write_text('{"new": 1}\n')
    journal = {"pid": pid, "host": socket.gethostname(), "outputs": [
        {"final": str(first), "temporary": str(tmp_path / f".p.tsv.tmp-{pid}"),
         "old": str(tmp_path / f".p.tsv.old-{pid}"), "written": True},
        {"final": str(second), "temporary": str(tmp_path / f".p.metrics.json.tmp-{pid}"),
         "old": str(tmp_path / f".p.metrics.json.old-{pid}"), "written": True}]}
    lock_path(first).write_text(json.dumps(journal))
    claim = Outputs([Output(first, "table"), Output(second, "json", "the metrics file")])
    with pytest.raises(OutputExistsError):
        claim.__enter__()
    assert first.read_text() == "sample_id\told\n" and second.read_text() == '{"old": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.metrics.json", "p.tsv"]
    with Outputs([Output(first, "table"), Output(second, "json")], force=True) as claim:
        claim.temporary(first).write_text("sample_id\tretry\n")
        claim.publish()
    assert first.read_text() == "sample_id\tretry\n" and not second.exists()  # not written: the old one goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tsv"]
