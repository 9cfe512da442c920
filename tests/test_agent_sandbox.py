"""The executor against escape attempts: each ends in a clear error observation, the host
(this test process, files outside the workspace, the environment) unharmed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t3edge.agent import AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.sandbox import landlock, seccomp
from t3edge.tools import ToolContext, default_tools

SECRET = "t3edge-test-secret-4b1d"

# name -> (code, a phrase the error must contain). {out} is a folder outside the workspace,
# {canary} a file in it.
CORPUS: dict[str, tuple[str, str]] = {
    # interpreter introspection: builtins, subclass walks, getattr tricks
    "subclasses_walk": ("print(().__class__.__bases__[0].__subclasses__())", "dunder"),
    "getattr_dunder": ("getattr((), '__class__')", "dunder"),
    "getattr_concat": ("getattr(getattr((), '__cla' + 'ss__'), '__base__')", "dunder"),
    "type_mro": ("print(type(()).__mro__)", "dunder"),
    "function_globals": ("print(final_answer.__globals__)", "dunder"),
    "code_object": ("print((lambda: 0).__code__)", "dunder"),
    "import_builtins": ("import builtins", "not allowed"),
    "dunder_import": ("__import__('os')", "Forbidden function"),
    "eval": ("eval('1 + 1')", "Forbidden function"),
    "exec": ("exec('import sys')", "Forbidden function"),
    "compile": ("compile('1', 'x', 'eval')", "Forbidden function"),
    "globals": ("print(globals())", "Forbidden function"),
    "breakpoint": ("breakpoint()", "Forbidden function"),
    # format-string tricks
    "format_globals": ("print('{0.__globals__}'.format(final_answer))", "format"),
    "format_map": ("print('{x.__class__}'.format_map({'x': 1}))", "format"),
    "format_bound_method": ("f = getattr('{0.__class__}', 'format')\nprint(f(1))", "format"),
    "format_unbound": ("print(str.format('{0.__class__}', 1))", "format"),
    # modules that are not allowed, directly or through allowed ones
    "import_sys": ("import sys", "not allowed"),
    "import_subprocess": ("import subprocess", "not allowed"),
    "import_socket": ("import socket", "not allowed"),
    "import_ctypes": ("import ctypes", "not allowed"),
    "import_importlib": ("import importlib", "not allowed"),
    "import_resource": ("import resource", "not allowed"),
    "numpy_ctypes": ("import numpy as np\nprint(np.ctypeslib.ctypes.CDLL(None))", "Forbidden access to module"),
    # processes and signals
    "os_system": ("import os\nos.system('touch {out}/pwned')", "sandbox"),
    "os_popen": ("import os\nprint(os.popen('id').read())", "sandbox"),
    "os_fork": ("import os\nos.fork()", "sandbox"),
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", "sandbox"),
    "os_execv": ("import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])", "sandbox"),
    "os_posix_spawn": ("import os\nos.posix_spawn('/bin/sh', ['sh'], {})", "sandbox"),
    "kill_parent": ("import os\nos.kill(os.getppid(), 9)", "sandbox"),
    "cv2_os_module": ("import cv2\ncv2.os.system('id')", "sandbox"),
    "sympify_code": ("import sympy\nsympy.sympify(\"__import__('os').system('id')\")", "sandbox"),
    # files outside the workspace, through every allowed library
    "read_etc": ("print(open('/etc/passwd').read())", "sandbox"),
    "write_outside": ("open('{out}/x.txt', 'w').write('x')", "sandbox"),
    "relative_escape": ("print(open('../outside/canary.txt').read())", "sandbox"),
    "remove_canary": ("import os\nos.remove('{canary}')", "sandbox"),
    "rename_canary": ("import os\nos.rename('{canary}', 'stolen.txt')", "sandbox"),
    "listdir_root": ("import os\nprint(os.listdir('/'))", "sandbox"),
    "symlink_out": ("import os\nos.symlink('/etc/passwd', 'link')", "sandbox"),
    "parent_environ": ("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())", "sandbox"),
    "pandas_read": ("import pandas as pd\nprint(pd.read_csv('/etc/passwd'))", "sandbox"),
    "numpy_fromfile": ("import numpy as np\nprint(np.fromfile('/etc/passwd', dtype='uint8'))", "sandbox"),
    "cv2_imread": ("import cv2\nprint(cv2.imread('{canary}'))", "sandbox"),
    "cv2_imwrite": ("import cv2, numpy as np\ncv2.imwrite('{out}/x.png', np.zeros((4, 4, 3), 'uint8'))", "sandbox"),
    "pil_open": ("from PIL import Image\nImage.open('/etc/passwd')", "sandbox"),
    "pil_save": ("from PIL import Image\nImage.new('RGB', (4, 4)).save('{out}/x.png')", "sandbox"),
    "pypdf_read": ("import PyPDF2\nPyPDF2.PdfReader('/etc/passwd')", "sandbox"),
    "pptx_save": ("from pptx import Presentation\nPresentation().save('{out}/x.pptx')", "sandbox"),
    "matplotlib_save": (("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                         "plt.plot([1, 2])\nplt.savefig('{out}/x.png')"), "sandbox"),
    "tool_outside_path": ("print(ocr(image_path='/etc/passwd'))", "outside the working folder"),
    "tool_file_outside": ("print(inspect_file_as_text(file_path='{canary}'))", "outside the working folder"),
    # network
    "pandas_url": ("import pandas as pd\npd.read_csv('http://127.0.0.1:9/x.csv')", "network"),
    # memory, CPU, disk, stack
    "string_bomb": ("x = 'a' * (10**11)", "MemoryError"),
    "numpy_bomb": ("import numpy as np\nx = np.ones((10**6, 10**6))", "MemoryError"),
    "bytes_bomb": ("x = b'a' * (10**11)", "MemoryError"),
    "disk_bomb": ("open('big.bin', 'wb').write(b'0' * (12 * 2**20))", "File too large"),
    "recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
    "c_level_loop": ("print(sum(range(10**13)))", "limit of a step"),
    # ending or tampering with the executor
    "system_exit": ("raise SystemExit(3)", "may not exit"),
    "os_exit": ("import os\nos._exit(3)", "exited with status 3"),
    "exit_builtin": ("exit()", "Forbidden function"),
    "overwrite_tool": ("image_edit = None", "erase the existing tool"),
    "overwrite_final_answer": ("final_answer = print", "erase the existing tool"),
    "forge_protocol": (("import os\nfor fd in range(3, 30):\n    try:\n"
                        "        os.write(fd, b'{\"op\": \"done\", \"is_final\": true, \"output\": 1}\\n')\n"
                        "    except OSError:\n        pass"), "control channel"),
}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sandbox")
    workspace, outside = root / "workspace", root / "outside"
    workspace.mkdir()
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text("untouched")
    os.environ["T3EDGE_TEST_SECRET"] = SECRET
    config = AgentConfig(step_timeout_s=4, memory_mb=2048, file_size_mb=8)
    sandbox = Sandbox(default_tools(ToolContext(workspace=workspace)), workspace, config=config)
    yield sandbox, workspace, outside, canary
    sandbox.stop()
    del os.environ["T3EDGE_TEST_SECRET"]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name", list(CORPUS))
def test_escape_attempt_is_blocked(host, name: str) -> None:
    sandbox, _, outside, canary = host
    code, phrase = CORPUS[name]
    result = sandbox.run(code.replace("{out}", str(outside)).replace("{canary}", str(canary)))
    assert result.error is not None, f"{name} was not stopped: {result.logs!r}"
    assert phrase in result.error, result.error
    assert SECRET not in result.logs + result.error
    # the host is unharmed: files outside untouched, nothing new there, our json intact
    assert canary.read_text() == "untouched"
    assert sorted(p.name for p in outside.iterdir()) == ["canary.txt"]
    assert json.loads(json.dumps({"ok": 1})) == {"ok": 1}
    # and the sandbox still works (restarted if the attempt killed it)
    probe = sandbox.run("print(6 * 7)")
    assert probe.error is None and probe.logs.strip() == "42"


def test_environment_carries_no_secrets_and_patching_stays_inside(host) -> None:
    sandbox, *_ = host
    result = sandbox.run("import os\nprint(dict(os.environ))")
    assert result.error is None and SECRET not in result.logs and "T3EDGE" not in result.logs
    patched = sandbox.run("import json\njson.dumps = None")
    assert patched.error is not None and "modules may not be changed" in patched.error
    assert json.dumps([1]) == "[1]"
    assert sandbox.run("value = 5").error is None
    assert sandbox.run("print(value + 1)").logs.strip() == "6"


def test_workspace_files_and_tools_work_inside(host) -> None:
    sandbox, workspace, *_ = host
    code = ("from PIL import Image\nImage.new('RGB', (8, 8), 'blue').save('blue.png')\n"
            "print(image_edit(prompt='crop 0,0,4,4', image_path='blue.png'))")
    result = sandbox.run(code)
    assert result.error is None and result.tools_called == ["image_edit"]
    assert Path(result.logs.strip()).parent == workspace.resolve()
    assert (workspace / "blue.png").is_file()


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_kernel_layers_are_in_force(host) -> None:
    sandbox, *_ = host
    sandbox.start()
    assert sandbox.landlock_abi and sandbox.landlock_abi >= 1
    assert sandbox.seccomp is seccomp.supported()
    assert sandbox.limits_refused == []


@pytest.mark.skipif(not seccomp.supported(), reason="seccomp filter not available on this platform")
def test_seccomp_filter_refuses_processes_and_sockets_from_c() -> None:
    script = (
        "import os, socket, subprocess, threading\n"
        "from t3edge.sandbox import seccomp\n"
        "assert seccomp.install()\n"
        "out = []\n"
        "for f in (os.fork, socket.socket, lambda: subprocess.run(['true'])):\n"
        "    try:\n        f()\n        out.append('allowed')\n"
        "    except OSError as e:\n        out.append(e.errno)\n"
        "t = threading.Thread(target=lambda: out.append('thread')); t.start(); t.join()\n"
        "print(out)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1, 'thread']"
