"""Checks of the state directory and the secret files in it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from vramancer_node.doctor.model import CheckResult, DoctorInputs, result
from vramancer_node.layout import KEY_FILE_NAME

SECRET_FILES = (KEY_FILE_NAME, "cluster/ca.key", "cluster/tokens")
"""Files that must stay private to the node's user (relative to the state directory)."""


# -- state directory and keys ------------------------------------------------------


def check_state_dir(inputs: DoctorInputs) -> CheckResult:
    state = inputs.state_dir
    if not state.exists():
        parent = next((p for p in state.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return result(
                "state_dir",
                "warn",
                f"{state} does not exist yet (created at the first start)",
                "nothing to do, or pass the right --state-dir",
            )
        return result(
            "state_dir",
            "fail",
            f"{state} does not exist and {parent} is not writable",
            f"create it for the node's user: `install -d -m 0700 -o USER {state}`",
        )
    if not state.is_dir():
        return result(
            "state_dir",
            "fail",
            f"{state} is not a directory",
            "remove it or pick another --state-dir",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=state, prefix=".doctor-"):
            pass
    except OSError as exc:
        return result(
            "state_dir",
            "fail",
            f"cannot write in {state}: {exc.strerror}",
            f"give the node's user the directory: `chown -R USER {state}` (the service "
            "user is vramancer); under systemd StateDirectory= does it",
        )
    mode = stat.S_IMODE(state.stat().st_mode)
    if mode & 0o077:
        return result(
            "state_dir",
            "warn",
            f"{state} is writable but has mode {mode:04o}",
            f"chmod 700 {state}",
        )
    return result("state_dir", "ok", f"{state} is a private directory we can write")


def check_keys(inputs: DoctorInputs) -> CheckResult:
    state = inputs.state_dir
    key = state / KEY_FILE_NAME
    if not key.exists() and not key.is_symlink():
        return result(
            "keys",
            "warn",
            f"no identity yet ({key} is created at the first start)",
            "nothing to do before the first start; otherwise check --state-dir",
        )
    owner = state.stat().st_uid
    checked = []
    for relative in SECRET_FILES:
        path = state / relative
        if not path.exists() and not path.is_symlink():
            continue
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return result(
                "keys", "fail", f"{path} is not a regular file", f"restore {path} from a backup"
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            return result(
                "keys",
                "fail",
                f"{path} has mode {mode:04o}: other users can read it",
                f"`chmod 600 {path}`; treat the key as exposed if other users had access",
            )
        if st.st_uid != owner:
            return result(
                "keys",
                "fail",
                f"{path} belongs to uid {st.st_uid}, the state directory to uid {owner}",
                f"`chown {owner} {path}` (the node runs as the state directory's owner)",
            )
        checked.append(relative)
    return result("keys", "ok", f"{', '.join(checked)}: mode 0600, owned by uid {owner}")
