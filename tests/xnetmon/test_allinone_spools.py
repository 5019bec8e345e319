"""Where the all-in-one's lab agents keep their spools: in memory, so that an fsync on a busy
disk cannot hold up every agent's shipments at once (issue 20)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from lab.lab import Lab
from lab.state import StateStore
from xnetmon.allinone import LAB_SITES, _spool_root, agent_config


def filesystem_of(path: Path) -> str:
    """The type of the file system holding `path`, from the longest mount point above it."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _device, mount, fstype, *_ = line.split()
        if (str(path) + "/").startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def test_the_spools_lie_on_tmpfs_and_each_agents_config_names_its_own(tmp_path):
    spools = _spool_root()
    try:
        assert filesystem_of(spools) == "tmpfs"
        lab = Lab.from_name("small", StateStore(tmp_path / "state"))
        pki = tmp_path / "bus"
        dirs = {
            site: yaml.safe_load(agent_config(lab, site, LAB_SITES, "tls://[::1]:1", pki, tmp_path, spools))["bus"][
                "spool_dir"
            ]
            for site in LAB_SITES
        }
        assert all(Path(d).parent == spools for d in dirs.values()) and len(set(dirs.values())) == len(LAB_SITES)
        assert os.access(spools, os.W_OK)
    finally:
        shutil.rmtree(spools, ignore_errors=True)
