"""How sandboxes start: forked from the prepared zygote (the default on Linux) or as a new
interpreter; either way a fresh, equally confined process per run."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from t3edge.agent import AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.sandbox import launch
from t3edge.tools import ToolContext, default_tools

pytestmark = pytest.mark.skipif(not launch.fork_available(), reason="the zygote runs on Linux")

PROBE = ("import os\nimport numpy as np\nimport random\n"
         "print(os.environ['HOME'], os.environ['TMPDIR'], np.random.rand(), random.random())")


def sandbox(workspace: Path, start: str = "fork") -> Sandbox:
    workspace.mkdir(parents=True, exist_ok=True)
    return Sandbox(default_tools(ToolContext(workspace=workspace)), workspace,
                   config=AgentConfig(sandbox_start=start))  # type: ignore[arg-type]


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_each_run_gets_a_fresh_process_of_its_own(tmp_path: Path) -> None:
    with sandbox(tmp_path / "a") as a, sandbox(tmp_path / "b") as b:
        assert a.run("secret = 41\nopen('mine.txt', 'w').write('a')").error is None
        first, second = a.run(PROBE), b.run(PROBE)
        assert a.pid != b.pid and launch.why_not_forking() is None
        assert parent_of(a.pid) == parent_of(b.pid) != os.getpid()  # both forked by the zygote
        assert "not defined" in (b.run("print(secret)").error or "")
        assert b.run("print(os.listdir('.'))").logs.strip() == "[]"
    home_a, tmp_a, np_a, py_a = first.logs.split()
    home_b, tmp_b, np_b, py_b = second.logs.split()
    assert (home_a, home_b) == (str(tmp_path / "a"), str(tmp_path / "b")) and tmp_a != tmp_b
    assert np_a != np_b and py_a != py_b  # random state is the child's own, not the zygote's


def test_forked_and_spawned_sandboxes_are_confined_alike(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    facts, errors = [], []
    for start in ("fork", "spawn"):
        with sandbox(tmp_path / start, start) as box:
            result = box.run(f"open({str(outside)!r}, 'w').write('gone')")
            assert box.pid is not None
            spawned_here = parent_of(box.pid) == os.getpid()
            facts.append((box.landlock_abi, box.seccomp, box.limits_refused, box.capabilities_dropped))
            errors.append(result.error)
        assert spawned_here == (start == "spawn")
    assert facts[0] == facts[1]
    assert errors[0] == errors[1] and "PermissionError" in (errors[0] or "")
    assert outside.read_text() == "keep"


def test_a_forked_sandbox_holds_nothing_of_the_zygote(tmp_path: Path) -> None:
    with sandbox(tmp_path / "ws") as box:
        box.start()
        assert box.pid is not None
        fd_dir = Path(f"/proc/{box.pid}/fd")
        targets = [os.readlink(fd_dir / name) for name in os.listdir(fd_dir)]
    assert not [t for t in targets if t.startswith("socket:")], targets
    assert len([t for t in targets if t.startswith("pipe:")]) == 2, targets


def test_a_killed_zygote_is_replaced_and_running_sandboxes_carry_on(tmp_path: Path) -> None:
    with sandbox(tmp_path / "b") as warm:  # a zygote is running
        warm.start()
    (tmp_path / "a").mkdir()
    with Sandbox(default_tools(ToolContext(workspace=tmp_path / "a")), tmp_path / "a",
                 config=AgentConfig(step_timeout_s=2)) as a:
        assert a.run("x = 1").error is None
        zygote = launch._zygote
        assert zygote is not None
        zygote.proc.kill()
        zygote.proc.wait()
        assert a.run("print(x + 1)").logs.strip() == "2"  # its pipes are to us, not to the zygote
        # its end is still noticed, with the zygote gone: a step past its time is stopped
        assert "longer than the 2 s limit" in (a.run("while True:\n    pass").error or "")
        assert a.run("print('again')").logs.strip() == "again"  # forked by a new zygote
        assert launch._zygote is not None and launch._zygote is not zygote
        assert a.pid is not None and parent_of(a.pid) == launch._zygote.proc.pid


def test_sandboxes_start_concurrently(tmp_path: Path) -> None:
    results: dict[int, str] = {}

    def one(i: int) -> None:
        with sandbox(tmp_path / str(i)) as box:
            results[i] = f"{box.run(f'print({i} * 2)').logs.strip()} {box.pid}"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(v.split()[0]) for v in results.values()) == [i * 2 for i in range(8)]
    assert len({v.split()[1] for v in results.values()}) == 8


def test_the_zygote_has_a_home_of_its_own(tmp_path: Path) -> None:
    with sandbox(tmp_path / "ws") as box:
        box.start()
    zygote = launch._zygote
    assert zygote is not None
    environ = dict(line.split("=", 1) for line in
                   Path(f"/proc/{zygote.proc.pid}/environ").read_text().split("\0") if "=" in line)
    assert environ["HOME"] == environ["TMPDIR"] == zygote.home != os.path.expanduser("~")
    assert os.listdir(zygote.home) == []


def test_pipes_given_to_a_zygote_that_ended_are_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fork, calls = launch.Zygote.fork, []

    def lost_once(self: launch.Zygote, env: dict[str, str], cwd: Path, fds: list[int]) -> launch.Forked:
        calls.append(list(fds))
        if len(calls) == 1:
            raise launch.SandboxLost("the zygote ended while it started a sandbox")
        return real_fork(self, env, cwd, fds)

    monkeypatch.setattr(launch.Zygote, "fork", lost_once)
    with sandbox(tmp_path / "ws") as box:
        assert box.run("print('on new pipes')").logs.strip() == "on new pipes"
    assert len(calls) == 2


_OWNER = """
import sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_sandbox_start import sandbox

box = sandbox(Path({workspace!r}))
box.start()
threading.Thread(target=box.run, args=("import time\\ntime.sleep(120)",), daemon=True).start()
time.sleep(0.5)
print(box.pid, flush=True)
time.sleep(120)
"""


def test_sandboxes_end_with_the_process_that_owns_them_however_it_ends(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    owner = subprocess.Popen([sys.executable, "-c", _OWNER.format(tests=str(Path(__file__).parent),
                                                                 workspace=str(tmp_path / "w"))],
                             stdout=subprocess.PIPE, text=True)
    pid = int(owner.stdout.readline())
    assert running(pid)  # its two-minute step
    owner.send_signal(signal.SIGKILL)  # no clean-up of its own can run
    owner.wait()
    deadline = time.monotonic() + 10
    while running(pid):
        assert time.monotonic() < deadline, "the sandbox outlived its owner"
        time.sleep(0.05)


def running(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
