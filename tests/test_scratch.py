"""The worker's removal of a sample's temp dir: any shape the sample can build, links never followed."""

from __future__ import annotations

import os

from codeloop.sandbox.scratch import remove_tree


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
