"""A sample's temp dir: where it is made, and the worker's removal of it (any shape the sample can build,
links never followed)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import check_job

from codeloop.sandbox import Sandbox, judge, scratch
from codeloop.sandbox.scratch import remove_tree
from codeloop.types import Status


def test_remove_tree_handles_depth_width_and_links(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "f").write_text("keep")
    root = tmp_path / "scratch"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(1500):  # deeper than a recursive walk can go under Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    for i in range(50):
        (root / f"wide{i}").mkdir()
        (root / f"wide{i}" / "f").write_text("x")
    (root / "link_to_file").symlink_to(outside)
    (root / "link_to_dir").symlink_to(tmp_path / "outside_dir")
    os.mkfifo(root / "fifo")
    remove_tree(str(root))
    assert not root.exists()
    assert outside.read_text() == "keep" and (tmp_path / "outside_dir" / "f").read_text() == "keep"


def test_remove_tree_of_a_missing_path_does_nothing(tmp_path):
    remove_tree(str(tmp_path / "absent"))
    assert list(tmp_path.iterdir()) == []


PRINTS_ITS_DIR = "import os\ndef f(x):\n    print(os.getcwd())\n    return 2 * x\n"


@pytest.fixture()
def own_root() -> Iterator[Path]:
    """The path of the caller's own samples' directory at level none, free for the test to fill, and as it was after."""
    path = Path(tempfile.gettempdir()) / f"codeloop-samples-{os.geteuid()}"
    aside = Path(tempfile.mkdtemp()) / "aside"
    if os.path.lexists(path):
        path.rename(aside)
    yield path
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        remove_tree(str(path))
    if os.path.lexists(aside):
        aside.rename(path)
    os.rmdir(aside.parent)


def _samples_dir() -> Path:
    with Sandbox(workers=1, isolation="none", cgroups=False) as sandbox:
        outcome = sandbox.run_one(check_job(PRINTS_ITS_DIR))
    assert outcome.status is Status.PASSED, outcome.reason
    return Path(outcome.stdout.strip())


def test_at_level_none_samples_work_in_a_directory_of_the_callers_own(own_root):
    # One name for every user (/tmp/codeloop-samples): the first user's directory refused every later
    # user's samples, each "brought down its sandbox worker twice"; and any user could make it first.
    assert _samples_dir().parent == own_root
    assert own_root.stat().st_uid == os.geteuid() and own_root.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("planted", ["link", "open to all"])
def test_at_level_none_a_directory_planted_under_that_name_is_never_used(own_root, tmp_path, planted):
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir(mode=0o777)
    if planted == "link":
        own_root.symlink_to(elsewhere)
    else:
        own_root.mkdir()
        own_root.chmod(0o777)
    made = _samples_dir()
    assert made.parent != own_root and made.parent.name.startswith("codeloop-samples-")
    assert list(elsewhere.iterdir()) == [] and (planted == "link" or list(own_root.iterdir()) == [])
    os.rmdir(made.parent)


def test_a_temp_dir_that_cannot_be_made_is_an_infra_error_not_the_samples(monkeypatch, tmp_path):
    # The worker died of it, twice, and the sample was blamed: "brought down its sandbox worker twice"
    monkeypatch.setattr(scratch, "_root", str(tmp_path / "gone"))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        outcome = judge.run_job(check_job("def f(x):\n    return 2 * x\n"), ours, 3.0, 256, "none")
    assert outcome.status is Status.INFRA_ERROR, outcome
    assert outcome.reason == f"cannot make a sample's temp dir in {tmp_path / 'gone'}: No such file or directory"
