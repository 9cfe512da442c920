"""Key-to-render latency of `t3edge chat` while a run streams, against the same app idle.

The app runs in a real pseudo-terminal (its normal driver, not the test pilot), with a scripted
model that streams a long answer at a fixed rate. A key is written to the terminal; the time until
the app's output shows that character is one sample. Each sample types a marker character into an
empty message box, then erases it, so the marker's next appearance can only be the new key's echo.

    python bench/tui_latency.py                 # 40 samples idle, 40 while streaming
    python bench/tui_latency.py --samples 100 --rate 400

Prints the start-up time to a usable screen, median / p90 latency idle and streaming, and the ratio
streaming / idle (the target is a streaming median under 50 ms).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

MARKER = "§"


def child(words: int, rate: float) -> None:
    """The app under test: the real T3App with a scripted model streaming `rate` tokens a second."""
    from t3edge.backends.replay import ReplayBackend
    from tui.app import T3App
    from t3edge.chats import ChatStore
    from tui.settings import TuiConfig

    thought = " ".join(f"word{i % 97}" for i in range(words))
    output = f"Thought: {thought}\nCode:\n```py\nfinal_answer('done')\n```<end_action>"
    data = Path(os.environ["T3EDGE_DATA_DIR"])
    app = T3App(backend=ReplayBackend([output] * 4, delay_s=1.0 / rate),
                store=ChatStore(data / "sessions.db"), config=TuiConfig(image_previews=False))
    app.run()


class Terminal:
    """A child process on a pseudo-terminal, with everything it writes collected with timestamps."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (120, 40)) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = bytearray()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.changed:
                self.output += chunk
                self.changed.notify_all()

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def wait_for(self, text: str, since: int, timeout: float = 30.0) -> float:
        """Seconds until `text` appears in the output written after offset `since`."""
        needle = text.encode()
        start = time.perf_counter()
        deadline = start + timeout
        with self.changed:
            while needle not in self.output[since:]:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"{text!r} did not appear within {timeout} s")
                self.changed.wait(left)
        return time.perf_counter() - start

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        self.type("\x11")  # ctrl+q
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def sample(term: Terminal) -> float:
    since = term.mark()
    start = time.perf_counter()
    term.type(MARKER)
    term.wait_for(MARKER, since)
    latency = time.perf_counter() - start
    term.type("\x7f")  # backspace: the box is empty again for the next sample
    time.sleep(0.05)
    return latency


def describe(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return f"{name:<10} median {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rate", type=float, default=200.0, help="streamed tokens per second")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--words", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.words, args.rate)
        return

    # enough words to keep streaming through every sample (each takes ~0.1 s), with margin
    words = int(args.rate * args.samples * 0.25) + 200
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TERM": "xterm-256color", "T3EDGE_DATA_DIR": tmp, "T3EDGE_CONFIG_DIR": tmp,
               "COLORTERM": "truecolor"}
        argv = [sys.executable, __file__, "--child", "--words", str(words), "--rate", str(args.rate)]
        started = time.perf_counter()
        term = Terminal(argv, env)
        try:
            term.wait_for("ready", 0)
            startup = time.perf_counter() - started
            for _ in range(3):  # warm up
                sample(term)
            idle = [sample(term) for _ in range(args.samples)]
            since = term.mark()
            term.type("stream please")
            time.sleep(0.3)  # a separate Enter: a burst with the text would arrive as one paste
            term.type("\r")
            term.wait_for("running", since)
            term.wait_for("word5", since)
            streaming = [sample(term) for _ in range(args.samples)]
            still_streaming = b"Done." not in term.output[since:]
        finally:
            term.close()

    print(f"start-up to a usable screen: {startup:.2f} s")
    print(describe("idle", idle))
    print(describe("streaming", streaming) + f"   at {args.rate:.0f} tokens/s")
    if not still_streaming:
        print("note: the run ended before the last sample; raise --rate or lower --samples")
    ratio = statistics.median(streaming) / statistics.median(idle)
    print(f"ratio streaming / idle (median): {ratio:.2f}x   target: streaming median < 50 ms")


if __name__ == "__main__":
    main()
