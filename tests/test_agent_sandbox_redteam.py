"""A second corpus of escape attempts against the executor, aimed at the allowed libraries, at
code that evaluates text (sympy, pandas, PIL, numpy), at the interpreter's own state, at the
kernel layers and at the parent through the control channel. Each attempt ends in a clear error
(or, where marked, does nothing harmful); the secret file and the secret variable outside the
sandbox never show up, nothing outside the working folder changes, and this process is unharmed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t3edge.agent import AgentConfig
from t3edge.agent.executor import MAX_MESSAGE_BYTES, Sandbox
from t3edge.sandbox import landlock, seccomp
from t3edge.tools import ToolContext, default_tools

SECRET_FILE = "t3edge-redteam-file-secret-77c1"
SECRET_ENV = "t3edge-redteam-env-secret-93aa"
MAX_CHARS = 2000

# {out}: a folder outside the workspace; {canary}: a file there holding SECRET_FILE.
# name -> (code, a phrase the error must contain; None: it may run, harmlessly)
CORPUS: dict[str, tuple[str, str | None]] = {
    # reading and writing outside through every allowed library
    "pandas_to_csv_outside": ("import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('{out}/x.csv')", "sandbox"),
    "pandas_read_pickle_outside": ("import pandas as pd\npd.read_pickle('{canary}')", "sandbox"),
    "pandas_read_json_outside": ("import pandas as pd\nprint(pd.read_json('{canary}'))", "sandbox"),
    "pandas_read_html_file_url": ("import pandas as pd\nprint(pd.read_html('file://{canary}'))", "sandbox"),
    "pandas_parent_environ": ("import os, pandas as pd\nprint(pd.read_fwf(f'/proc/{os.getppid()}/environ'))",
                              "sandbox"),
    "pandas_url_json": ("import pandas as pd\npd.read_json('http://127.0.0.1:9/x.json')", "network"),
    "numpy_load_outside": ("import numpy as np\nprint(np.load('{canary}'))", "sandbox"),
    "numpy_save_outside": ("import numpy as np\nnp.save('{out}/x.npy', np.arange(3))", "sandbox"),
    "numpy_tofile_outside": ("import numpy as np\nnp.arange(3).tofile('{out}/x.bin')", "sandbox"),
    "numpy_memmap_outside": ("import numpy as np\nprint(np.memmap('{canary}', mode='r').tolist())", "sandbox"),
    "numpy_genfromtxt_outside": ("import numpy as np\nprint(np.genfromtxt('{canary}', dtype=str))", "sandbox"),
    "pil_save_relative_escape": ("from PIL import Image\nImage.new('RGB', (2, 2)).save('../outside/x.png')",
                                 "sandbox"),
    "cv2_videocapture_outside": ("import cv2\nprint(cv2.VideoCapture('{canary}').read())", "sandbox"),
    "cv2_videowriter_outside": (("import cv2\ncv2.VideoWriter('{out}/x.avi', cv2.VideoWriter_fourcc(*'MJPG'), "
                                 "1, (4, 4))"), "sandbox"),
    "cv2_filestorage_outside": ("import cv2\ncv2.FileStorage('{out}/x.yml', cv2.FILE_STORAGE_WRITE)", "sandbox"),
    "cv2_pathlike_imread": (("import cv2\nclass P:\n    def __fspath__(self):\n        return '{canary}'\n"
                             "print(cv2.imread(P()))"), "sandbox"),
    "cv2_read_optical_flow": ("import cv2\nprint(cv2.readOpticalFlow('{canary}'))", "sandbox"),
    "cv2_stream_url": ("import cv2\nprint(cv2.VideoCapture('http://127.0.0.1:9/x.mjpg').isOpened())", None),
    "pypdf_writer_outside": (("import PyPDF2\nw = PyPDF2.PdfWriter()\nw.add_blank_page(10, 10)\n"
                              "w.write('{out}/x.pdf')"), "sandbox"),
    "pptx_open_outside": ("from pptx import Presentation\nPresentation('{canary}')", "not found"),
    "matplotlib_imsave_outside": (("import numpy as np, matplotlib.pyplot as plt\n"
                                   "plt.imsave('{out}/x.png', np.zeros((2, 2)))"), "sandbox"),
    "pil_truetype_outside": ("from PIL import ImageFont\nImageFont.truetype('{canary}')", "cannot open"),
    "xml_external_entity": (("import pandas as pd\nopen('x.xml', 'w').write('<?xml version=\"1.0\"?><!DOCTYPE r "
                             "[<!ENTITY e SYSTEM \"file://{canary}\">]><data><row><a>&e;</a></row></data>')\n"
                             "print(pd.read_xml('x.xml'))"), "Entity"),
    "xslt_document_read": (("import pandas as pd\nopen('d.xml', 'w').write('<data><row><a>1</a></row></data>')\n"
                            "open('s.xsl', 'w').write('<xsl:stylesheet version=\"1.0\" "
                            "xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"><xsl:template match=\"/\"><data><row>"
                            "<a><xsl:value-of select=\"document(\\'file://{canary}\\')\"/></a></row></data>"
                            "</xsl:template></xsl:stylesheet>')\n"
                            "print(pd.read_xml('d.xml', stylesheet='s.xsl'))"), "denied"),
    "xslt_exsl_write": (("import pandas as pd\nopen('d.xml', 'w').write('<data><row><a>1</a></row></data>')\n"
                         "open('w.xsl', 'w').write('<xsl:stylesheet version=\"1.0\" "
                         "xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" xmlns:exsl=\"http://exslt.org/common\" "
                         "extension-element-prefixes=\"exsl\"><xsl:template match=\"/\"><exsl:document "
                         "href=\"{out}/pwn.txt\">pwned</exsl:document><data><row><a>1</a></row></data>"
                         "</xsl:template></xsl:stylesheet>')\n"
                         "print(pd.read_xml('d.xml', stylesheet='w.xsl'))"), "denied"),
    "json_dump_outside": ("import json\njson.dump({}, open('{out}/x.json', 'w'))", "sandbox"),
    # the os module itself
    "os_open_creat_outside": ("import os\nos.open('{out}/y', os.O_CREAT | os.O_WRONLY)", "sandbox"),
    "os_makedirs_outside": ("import os\nos.makedirs('{out}/d/e')", "sandbox"),
    "os_truncate_canary": ("import os\nos.truncate('{canary}', 0)", "sandbox"),
    "os_replace_into_outside": ("import os\nopen('a.txt', 'w').write('x')\nos.replace('a.txt', '{out}/a.txt')",
                                "sandbox"),
    "os_scandir_root": ("import os\nprint(list(os.scandir('/')))", "sandbox"),
    "os_walk_outside": ("import os\nprint(list(os.walk('{out}')))", None),
    "hard_link_canary": ("import os\nos.link('{canary}', 'hard')\nprint(open('hard').read())", "sandbox"),
    "symlink_then_read": ("import os\nos.symlink('{canary}', 'soft')\nprint(open('soft').read())", "sandbox"),
    "pathlike_toctou": (("import os\nclass P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n"
                         "        return '/' if P.n == 1 else '.'\nprint(os.listdir(P()))"), "sandbox"),
    "proc_self_mem_write": ("open('/proc/self/mem', 'r+b')", "sandbox"),
    "proc_root_escape": ("print(open('/proc/self/root{canary}').read())", "sandbox"),
    "proc_cwd_escape": ("print(open('/proc/self/cwd/../outside/canary.txt').read())", "sandbox"),
    "dir_fd_escape": (("import os\nfd = os.open('.', os.O_RDONLY)\n"
                       "print(os.read(os.open('../outside/canary.txt', os.O_RDONLY, dir_fd=fd), 100))"), "sandbox"),
    "proc_thread_self_root": ("print(open('/proc/thread-self/root/etc/hostname').read())", "sandbox"),
    "open_with_opener": (("import os\ndef opener(path, flags):\n    return os.open('{canary}', os.O_RDONLY)\n"
                          "print(open('ok.txt', opener=opener).read())"), "sandbox"),
    "print_to_a_file_outside": ("print('x', file=open('{out}/f.txt', 'w'))", "sandbox"),
    "proc_self_environ": ("print(open('/proc/self/environ').read())", None),
    "environ_via_pandas": ("import pandas as pd\nprint(dict(pd.io.common.os.environ))", None),
    "environ_via_matplotlib": ("import matplotlib\nprint(matplotlib.os.getenv('T3EDGE_REDTEAM_SECRET'))", None),
    "os_chroot": ("import os\nos.chroot('.')", "not permitted"),
    # code that libraries evaluate from text
    "sympify_subclass_walk": ("import sympy\nsympy.sympify(\"().__class__.__bases__[0].__subclasses__()\")",
                              "sandbox"),
    "parse_expr_import": (("from sympy.parsing.sympy_parser import parse_expr\n"
                           "parse_expr(\"__import__('os').system('id')\")"), "sandbox"),
    "lambdify_symbol_injection": (("import sympy\nf = sympy.lambdify([], sympy.Symbol(\"open('{canary}').read()\"))\n"
                                   "print(f())"), "sandbox"),
    "pil_imagemath_eval": ("from PIL import ImageMath\nImageMath.unsafe_eval(\"__import__('os')\")", "not allowed"),
    "pandas_eval_dunder": (("import pandas as pd\ndf = pd.DataFrame({'a': [1]})\n"
                            "print(df.eval('a.__class__.__init__.__globals__'))"), "dunder"),
    "pandas_query_local_dunder": (("import pandas as pd\nx = 1\ndf = pd.DataFrame({'a': [1]})\n"
                                   "print(df.query('@x.__class__ is not None'))"), "dunder"),
    "numpy_runstring": ("import numpy as np\nnp.testing._private.utils.runstring('import sys', {})", "sandbox"),
    "cv2_exec_python_file": (("import cv2\nopen('e.py', 'w').write('print(1)')\n"
                              "cv2.load_config_py3.exec_file_wrapper('e.py', {}, {})"), "sandbox"),
    "pickle_exec_payload": (("import pandas as pd\n"
                             "open('p.pkl', 'wb').write(b\"cbuiltins\\nexec\\n(S'import sys'\\ntR.\")\n"
                             "pd.read_pickle('p.pkl')"), "pickled data may not use builtins.exec"),
    "pickle_os_system_npy": (("import numpy as np\nopen('p.npy', 'wb').write(b\"cos\\nsystem\\n(S'id'\\ntR.\")\n"
                              "np.load('p.npy', allow_pickle=True)"), "pickle"),
    "pickle_pandas_eval": (("import numpy as np\n"
                            "open('e.pkl', 'wb').write(b'\\x80\\x04cpandas\\neval\\n\\x8c\\x0c1 .__class__\\x85R.')\n"
                            "print(np.load('e.pkl', allow_pickle=True))"), "pickle"),
    # the interpreter's own state and introspection
    "patch_os_for_the_hook": ("import os\nos.fsdecode = lambda p: 'ok.txt'", "modules may not be changed"),
    "patch_json_module": ("import json\njson.loads = None", "modules may not be changed"),
    "augassign_module": ("import math\nmath.pi += 1", "modules may not be changed"),
    "tamper_print_state": ("_print_outputs = 5", "the interpreter uses that name"),
    "delete_final_answer": ("del final_answer", "Cannot delete"),
    "traceback_frame": ("try:\n    1 / 0\nexcept Exception as e:\n    print(e.__traceback__.tb_frame)", "dunder"),
    "getattr_computed_traceback": (("try:\n    1 / 0\nexcept Exception as e:\n"
                                    "    print(getattr(e, '__trace' + 'back__'))"), "dunder"),
    "generator_frame": ("def g():\n    yield 1\nprint(g().gi_frame.f_back.f_globals)", "not supported"),
    "library_generator_frame": ("import os\nprint(os.walk('.').gi_frame.f_back.f_locals)", "internals"),
    "library_generator_code": ("import os\nc = os.walk('.').gi_code.replace(co_consts=())", "internals"),
    "attrgetter_from_a_library": (("import sympy\n"
                                   "print(sympy.core.add.attrgetter('__globals__')(sympy.sympify))"), "dunder"),
    "attrgetter_frame_walk": (("import os, sympy\n"
                               "print(sympy.core.add.attrgetter('gi_frame.f_globals')(os.walk('.')))"),
                              "frame attributes"),
    "type_subclasses": ("print(type.__subclasses__(type))", "dunder"),
    "format_map_nested": ("print('{a.real.__class__}'.format_map({'a': 1}))", "format"),
    "builtins_name": ("print(__builtins__['open'])", "not defined"),
    "os_sys_modules": ("import os\nprint(os.sys.modules['subprocess'])", "Forbidden access to module"),
    "collections_sys": ("import collections\nprint(collections._sys)", "Forbidden access to module"),
    "module_loader": ("import os\nprint(os.__loader__)", "dunder"),
    "homoglyph_exec": ("ｅｘｅｃ('1')", "Forbidden function"),
    "homoglyph_dunder": ("print(getattr(1, '__ｃｌａｓｓ__'))", "dunder"),
    "fstring_repr": ("print(f'{final_answer!r} {open!r}')", None),
    "numpy_as_ctypes": ("import numpy as np\nnp.ctypeslib.as_ctypes(np.arange(3))", "sandbox"),
    "numpy_f2py_build": (("import numpy as np\nopen('x.f', 'w').write('      subroutine f\\n      end\\n')\n"
                          "np.f2py.run_main(['-c', 'x.f', '-m', 'x'])"), None),
    "numpy_open_memmap_outside": (("import numpy as np\n"
                                   "np.lib.format.open_memmap('{out}/x.npy', mode='w+', shape=(2,))"), "sandbox"),
    "statistics_reduce_getattr": ("import statistics\nprint(statistics.reduce(getattr, ['__class__'], 1))",
                                  "dunder"),
    "redefine_print": ("def print(*args):\n    pass\nprint('still printed')", None),
    "import_threading": ("import threading", "not allowed"),
    # processes and signals
    "kill_own_group": ("import os\nos.kill(0, 9)", "sandbox"),
    "killpg_parent": ("import os\nos.killpg(os.getpgid(os.getppid()), 9)", "sandbox"),
    "os_spawnv": ("import os\nos.spawnv(os.P_WAIT, '/bin/true', ['true'])", "sandbox"),
    "os_forkpty": ("import os\nos.forkpty()", "sandbox"),
    "os_posix_spawnp": ("import os\nos.posix_spawnp('sh', ['sh', '-c', 'id'], {})", "sandbox"),
    # memory, disk, output size
    "numpy_empty_bomb": ("import numpy as np\nx = np.empty((40000, 40000))", "MemoryError"),
    "list_bomb": ("x = [0] * (10**10)", "MemoryError"),
    "disk_bomb_chunks": ("f = open('big.bin', 'wb')\nfor i in range(20):\n    f.write(b'0' * 2**20)",
                         "File too large"),
    "print_100_mb": ("print('x' * (100 * 2**20))", None),
    "print_then_raise": ("print('x' * (100 * 2**20))\nraise ValueError('after the flood')", "after the flood"),
    "final_answer_too_large": ("final_answer('x' * (20 * 2**20))", "could not be sent back"),
    "final_answer_too_deep": ("x = []\nfor i in range(100000):\n    x = [x]\nfinal_answer(x)",
                              "could not be sent back"),
    "zip_bomb_to_a_tool": (("import numpy as np\nzeros = np.broadcast_to(np.zeros(1, 'u1'), (210 * 2**20,))\n"
                            "np.savez_compressed('bomb.npz', a=zeros)\n"
                            "print(inspect_file_as_text(file_path='bomb.npz'))"), "too large to read"),
    "final_answer_huge_int": ("final_answer(10**5000)", "could not be sent back"),
    "tool_arguments_too_large": ("ocr(image_path='a' * (20 * 2**20))", "cannot be passed"),
    "terminal_escape_print": ("print('\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\x9b31m')", None),
    "terminal_escape_answer": ("final_answer(['\\x1b]0;title\\x07'])", None),
    "lone_surrogate_print": ("print('\\ud800 and \\udfff')", None),
    "lone_surrogate_answer": ("final_answer({'a': ['\\udc80']})", None),
    "lone_surrogate_error": ("raise ValueError('\\ud800')", "ValueError"),
    "keyboard_interrupt": ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    "custom_base_exception": ("class Out(BaseException):\n    pass\nraise Out('bye')", "bye"),
}

# Attempts that kill or stall the sandbox process: run with a short step limit.
RUNAWAY: dict[str, tuple[str, str]] = {
    "regex_backtracking": ("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", "limit of a step"),
    "numpy_dot_loop": (("import numpy as np\na = np.ones((1500, 1500))\nwhile True:\n"
                        "    a = np.dot(a, a) / 1500"), "limit of a step"),
    "os_abort": ("import os\nos.abort()", "SIGABRT"),
    "deep_json_to_the_parent": (("import os\nfor fd in range(3, 256):\n    try:\n"
                                 "        os.write(fd, b'[' * 200000 + b'\\n')\n    except OSError:\n        pass"),
                                "control channel"),
    "oversized_line_to_the_parent": (("import os\nfor fd in range(3, 256):\n    try:\n"
                                      f"        os.write(fd, b'x' * {MAX_MESSAGE_BYTES + 10})\n"
                                      "    except OSError:\n        pass"), "control channel"),
    "dup2_over_the_channel": (("import os\nsink = os.open('sink.txt', os.O_WRONLY | os.O_CREAT)\n"
                               "for fd in range(3, 256):\n    if fd != sink:\n        os.dup2(sink, fd)"),
                              "sandbox"),
    "close_the_channel": (("import os\nfor fd in range(3, 256):\n    try:\n        os.close(fd)\n"
                           "    except OSError:\n        pass"), "sandbox"),
}


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("redteam")
    workspace, out = root / "workspace", root / "outside"
    workspace.mkdir()
    out.mkdir()
    canary = out / "canary.txt"
    canary.write_text(SECRET_FILE)
    return workspace, out, canary


@pytest.fixture(scope="module")
def secret_env():
    os.environ["T3EDGE_REDTEAM_SECRET"] = SECRET_ENV
    yield
    del os.environ["T3EDGE_REDTEAM_SECRET"]


def _sandbox(workspace: Path, timeout_s: float) -> Sandbox:
    config = AgentConfig(step_timeout_s=timeout_s, memory_mb=2048, file_size_mb=8,
                         max_observation_chars=MAX_CHARS)
    return Sandbox(default_tools(ToolContext(workspace=workspace)), workspace, config=config)


@pytest.fixture(scope="module")
def box(outside, secret_env):
    workspace = outside[0]
    sandbox = _sandbox(workspace, 120)  # generous: first imports of pandas or sympy on a busy machine
    warm = sandbox.run("import numpy, pandas, sympy, PIL.ImageMath, matplotlib.pyplot, PyPDF2, pptx")
    assert warm.error is None, warm.error
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def short(outside, secret_env):
    sandbox = _sandbox(outside[0], 3)
    yield sandbox
    sandbox.stop()


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*_strings(list(value)), *_strings(list(value.values()))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _run(sandbox: Sandbox, outside: tuple[Path, Path, Path], code: str):
    _, out, canary = outside
    result = sandbox.run(code.replace("{out}", str(out)).replace("{canary}", str(canary)))
    seen = f"{result.logs}{result.error}{result.output}"
    assert SECRET_FILE not in seen and SECRET_ENV not in seen, seen[:500]
    assert len(result.logs) <= MAX_CHARS + 200 and len(result.error or "") <= MAX_CHARS + 200
    # everything that comes back can be saved as UTF-8 (the trajectory file) and printed
    # without driving the terminal (no escape sequences)
    shown = "".join(_strings([result.logs, result.error, result.output]))
    shown.encode("utf-8")
    assert not {"\x1b", "\x07", "\x9b", "\r"} & set(shown), repr(shown[:300])
    # the host is unharmed: the file outside untouched, nothing new there, its modules and env intact
    assert canary.read_text() == SECRET_FILE
    assert sorted(p.name for p in out.iterdir()) == ["canary.txt"]
    assert json.loads(json.dumps({"ok": [1]})) == {"ok": [1]}
    assert os.environ["T3EDGE_REDTEAM_SECRET"] == SECRET_ENV
    return result


def test_corpus_is_large_and_new() -> None:
    from test_agent_sandbox import CORPUS as FIRST

    assert len(CORPUS) + len(RUNAWAY) >= 40
    assert not (set(CORPUS) | set(RUNAWAY)) & set(FIRST)
    assert not {code for code, _ in [*CORPUS.values(), *RUNAWAY.values()]} & {code for code, _ in FIRST.values()}


@pytest.mark.parametrize("name", list(CORPUS))
def test_escape_attempt_is_blocked(box: Sandbox, outside, name: str) -> None:
    code, phrase = CORPUS[name]
    result = _run(box, outside, code)
    if phrase is not None:
        assert result.error is not None, f"{name} was not stopped: {result.logs[:300]!r}"
        assert phrase in result.error, result.error
    probe = box.run("print(6 * 7)")
    assert probe.error is None and probe.logs.strip() == "42"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNAWAY))
def test_runaway_attempt_is_stopped_and_the_sandbox_recovers(short: Sandbox, outside, name: str) -> None:
    code, phrase = RUNAWAY[name]
    result = _run(short, outside, code)
    assert result.error is not None and phrase in result.error, result.error
    probe = short.run("print(6 * 7)")
    assert probe.error is None and probe.logs.strip() == "42"


def test_harmless_attempts_stay_harmless(box: Sandbox, outside) -> None:
    """What the marked attempts above may see: a clean environment, nothing outside."""
    result = _run(box, outside, "import os\nprint(sorted(os.environ))\nprint(list(os.walk('{out}')))")
    names = result.logs.splitlines()[0]
    assert "T3EDGE" not in names and "HOME" in names
    assert result.logs.splitlines()[1] == "[]"
    flood = _run(box, outside, "print('x' * (100 * 2**20))")
    assert flood.error is None and flood.logs.startswith("x")


def test_variables_survive_a_refused_attempt(box: Sandbox, outside) -> None:
    assert box.run("kept = 41").error is None
    assert _run(box, outside, "import os\nos.fsdecode = None").error is not None
    assert box.run("print(kept + 1)").logs.strip() == "42"


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="capabilities are dropped only when the sandbox starts as root")
def test_root_sandbox_holds_no_capabilities(box: Sandbox, outside) -> None:
    result = _run(box, outside, "print(open('/proc/self/status').read())")
    caps = dict(line.split(":\t") for line in result.logs.splitlines() if line.startswith("Cap"))
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_kernel_holds_when_the_python_layers_are_bypassed(outside) -> None:
    """Landlock alone (no audit hook) refuses reads and writes outside, from Python or C."""
    workspace, out, canary = outside
    script = (
        "import os, sys\n"
        "from t3edge.sandbox import landlock\n"
        f"assert landlock.restrict([sys.prefix, '/usr', '/lib', '/lib64'], [{str(workspace)!r}])\n"
        "out = []\n"
        f"for f in (lambda: open({str(canary)!r}).read(), lambda: open({str(out / 'w.txt')!r}, 'w'),\n"
        f"          lambda: os.listdir({str(out)!r})):\n"
        "    try:\n        f()\n        out.append('allowed')\n"
        "    except PermissionError:\n        out.append('refused')\n"
        f"open({str(workspace / 'inside.txt')!r}, 'w').write('ok')\n"
        "print(out)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['refused', 'refused', 'refused']"
    assert sorted(p.name for p in out.iterdir()) == ["canary.txt"]


@pytest.mark.skipif(not seccomp.supported(), reason="seccomp filter not available on this platform")
def test_seccomp_refuses_signals_to_others_and_chroot_from_c() -> None:
    script = (
        "import os, signal, threading\n"
        "from t3edge.sandbox import seccomp\n"
        "assert seccomp.install()\n"
        "out = []\n"
        "for f in (lambda: os.kill(os.getppid(), 0), lambda: os.kill(-1, 0), lambda: os.chroot('/'),\n"
        "          lambda: os.kill(os.getpid(), 0), lambda: signal.pthread_kill(threading.get_ident(), 0)):\n"
        "    try:\n        f()\n        out.append('allowed')\n"
        "    except OSError as e:\n        out.append(e.errno)\n"
        "print(out)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1, 'allowed', 'allowed']"



def test_nested_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    """A bomb hidden one archive deep is measured, not unpacked, by the tool in this process."""
    import zipfile

    from t3edge.tools.base import ToolError
    from t3edge.tools.files import MAX_UNPACKED_BYTES, file_text

    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("zeros.txt", "w", force_zip64=True) as member:
        for _ in range(MAX_UNPACKED_BYTES // 2**24 + 1):
            member.write(bytes(2**24))
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as archive:
        archive.write(inner, "inner.zip")
    inner.unlink()
    with pytest.raises(ToolError, match="too large to read"):
        file_text(ToolContext(workspace=tmp_path), "outer.zip")


def test_a_child_that_stops_reading_cannot_block_the_parent(outside, secret_env) -> None:
    """A reply the child never reads (a tool result to a forged request, say) is given up on."""
    sandbox = _sandbox(outside[0], 30)
    try:
        sandbox.start()
        busy = {"op": "exec", "code": "import time\ntime.sleep(60)", "nonce": "busy"}
        assert sandbox._try_send(busy, time.monotonic() + 30)  # the channel itself
        flood = {"op": "tool_result", "ok": True, "value": "x" * (4 * 2**20)}
        assert sandbox._try_send(flood, time.monotonic() + 1) is False
    finally:
        sandbox.stop()
    assert not sandbox.alive
