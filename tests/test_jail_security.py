"""The jail's OS layers, attacked directly: hostile plain Python (tests/jail_hostile.py) runs in a fully
jailed child as if the language policy had failed, and every test checks from OUTSIDE the child that
nothing happened (files, listener, processes, the fork server's state).
"""

from __future__ import annotations

import os
import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.jail import Jail
from sandbox.limits import MIB, Limits

HOSTILE = "tests.jail_hostile"
LIMITS = Limits(action_cpu_seconds=2, action_memory_bytes=64 * MIB)


@pytest.fixture(scope="module")
def jail() -> Iterator[Jail]:
    with Jail(LIMITS, _test_hooks=True) as jail:
        yield jail


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """A directory anyone may write to (like /tmp), so only the jail stands in the way."""
    os.chmod(tmp_path, 0o777)
    return tmp_path


def test_every_layer_is_on_in_this_environment(jail: Jail) -> None:
    assert jail.layers == {name: "on" for name in jail.layers}
    assert "seccomp" in jail.layers and "network_namespace" in jail.layers


def test_SECURITY_cannot_create_or_write_files(jail: Jail, shared_dir: Path) -> None:
    target = shared_dir / f"marker-{uuid.uuid4().hex}"
    result = jail.run_callable_for_tests(HOSTILE, "write_file", str(target))
    assert result.outcome == "ok"
    assert result.value == {"open": "PermissionError", "os_open": "PermissionError",
                            "mkdir": "PermissionError"}
    assert not target.exists()
    assert list(shared_dir.iterdir()) == []


def test_SECURITY_cannot_append_to_a_world_writable_file(jail: Jail, shared_dir: Path) -> None:
    target = shared_dir / "open-to-all.txt"
    target.write_text("original")
    os.chmod(target, 0o666)
    result = jail.run_callable_for_tests(HOSTILE, "append_to_file", str(target))
    assert result.value == "PermissionError"
    assert target.read_text() == "original"


@pytest.mark.parametrize("path", ["/etc/passwd", str(Path(__file__).resolve().parents[1] / "pyproject.toml"),
                                  "/proc/self/status"])
def test_SECURITY_cannot_read_world_readable_files_outside_the_runtime(jail: Jail, path: str) -> None:
    assert Path(path).read_text()  # readable to anyone outside the jail
    result = jail.run_callable_for_tests(HOSTILE, "read_file", path)
    assert result.value == "PermissionError"


def test_SECURITY_cannot_read_etc_shadow(jail: Jail) -> None:
    assert Path("/etc/shadow").exists()
    result = jail.run_callable_for_tests(HOSTILE, "read_file", "/etc/shadow")
    assert result.value == "PermissionError"


def test_SECURITY_cannot_connect_even_to_localhost(jail: Jail) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = jail.run_callable_for_tests(HOSTILE, "connect_tcp", port)
        ready, _, _ = select.select([listener], [], [], 0.2)
    assert result.outcome == "violation"
    assert "seccomp" in result.detail
    assert ready == [], "the listener saw a connection from the jailed child"


def test_SECURITY_children_live_in_an_empty_network_namespace(jail: Jail) -> None:
    jail.layers  # starts the fork server
    fork_server = jail.fork_server_pid
    assert os.readlink(f"/proc/{fork_server}/ns/net") != os.readlink("/proc/self/ns/net")
    devices = Path(f"/proc/{fork_server}/net/dev").read_text().splitlines()[2:]
    assert [line.split(":")[0].strip() for line in devices] == ["lo"]


@pytest.mark.parametrize("attack", ["fork_process", "run_program", "exec_program"])
def test_SECURITY_cannot_spawn_processes(jail: Jail, attack: str) -> None:
    result = jail.run_callable_for_tests(HOSTILE, attack)
    assert result.outcome == "violation"
    assert result.value is None


def test_SECURITY_cannot_signal_the_fork_server_or_others(jail: Jail) -> None:
    jail.layers
    fork_server = jail.fork_server_pid
    result = jail.run_callable_for_tests(HOSTILE, "signal_parent")
    assert result.value == {"parent": "PermissionError", "init": "PermissionError",
                            "everyone": "PermissionError"}
    assert jail.fork_server_pid == fork_server
    assert jail.run_callable_for_tests(HOSTILE, "random_values").outcome == "ok"
    assert jail.fork_server_pid == fork_server


def test_SECURITY_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONRUNNER_SECRET_KEY", "do-not-leak")
    with Jail(LIMITS, _test_hooks=True) as fresh:  # started after the variable was set
        result = fresh.run_callable_for_tests(HOSTILE, "environment")
    assert result.value == {"environ": {}, "parent_environ": "PermissionError"}


def test_SECURITY_cannot_read_the_fork_servers_memory_through_proc(jail: Jail) -> None:
    result = jail.run_callable_for_tests(HOSTILE, "read_parent_memory_proc")
    assert result.value == "PermissionError"


@pytest.mark.parametrize("attack", ["read_parent_memory_vm", "ptrace_parent"])
def test_SECURITY_cannot_reach_the_fork_server_with_process_calls(jail: Jail, attack: str) -> None:
    result = jail.run_callable_for_tests(HOSTILE, attack)
    assert result.outcome == "violation"


def test_SECURITY_only_the_result_pipe_is_open(jail: Jail) -> None:
    result = jail.run_callable_for_tests(HOSTILE, "open_descriptors")
    assert len(result.value) == 1 and result.value[0]["pipe"] is True


def test_SECURITY_descriptors_of_the_caller_are_not_usable(jail: Jail, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("caller's file")
    with open(secret, "rb") as handle:
        result = jail.run_callable_for_tests(HOSTILE, "use_descriptor", handle.fileno())
    assert result.value == "OSError"  # EBADF: not open in the child


def test_SECURITY_runs_as_nobody_and_cannot_undo_its_set_up(jail: Jail) -> None:
    seen = jail.run_callable_for_tests(HOSTILE, "identity").value
    assert (seen["uid"], seen["gid"], seen["groups"]) == (65534, 65534, [])
    assert seen["setuid_root"] == "PermissionError"
    assert seen["setsid"] == "PermissionError"
    assert seen["pdeathsig_reset"] == "PermissionError"
    assert seen["nproc"] == [0, 0] and seen["fsize"] == [0, 0] and seen["core"] == [0, 0]


def test_SECURITY_each_child_has_its_own_random_state(jail: Jail) -> None:
    first = jail.run_callable_for_tests(HOSTILE, "random_values").value
    second = jail.run_callable_for_tests(HOSTILE, "random_values").value
    assert first != second


def test_test_hooks_are_off_by_default() -> None:
    with Jail(LIMITS) as plain:
        with pytest.raises(Exception, match="unknown op 'call'"):
            plain.run_callable_for_tests(HOSTILE, "identity")
