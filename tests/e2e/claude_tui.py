"""The real Claude Code CLI in a pseudo-terminal: its `/login` screen (Cloud gateway, trust prompt, device
code) has no non-interactive form, so the sign-in tests type into it as a person would and read the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from pathlib import Path

_ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")
DOWN, UP, ENTER, ESC = "\x1b[B", "\x1b[A", "\r", "\x1b"


class ClaudeTui:
    """One interactive `claude` process; `screen` is everything it has drawn so far, escape codes removed."""

    def __init__(self, binary: Path, home: Path, env: dict[str, str], cwd: Path, args: tuple[str, ...] = ()) -> None:
        self.binary, self.home, self.env, self.cwd, self.args = binary, home, env, cwd, args
        self._raw = b""
        self._mark = 0
        self.pid = 0
        self.fd = -1

    def __enter__(self) -> ClaudeTui:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a clean environment, as agent_cli.run gives the other CLIs
            os.chdir(self.cwd)
            base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "TERM": "xterm-256color"}
            os.execve(str(self.binary), [str(self.binary), *self.args], {**base, **self.env})
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)

    @property
    def screen(self) -> str:
        return _ANSI.sub(b"", self._raw).decode("utf-8", "replace")

    def _pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self._raw += data

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Waits until `pattern` appears in what was drawn since the last expect; the screen text has its
        spaces squeezed out in places (the TUI positions words with cursor moves), so patterns should
        tolerate missing spaces."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            text = self.screen
            found = regex.search(text, self._mark)
            if found:
                self._mark = found.end()
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; screen tail:\n{text[-3000:]}")
            self._pump(0.3)

    def send(self, keys: str, settle: float = 0.5) -> None:
        os.write(self.fd, keys.encode())
        self._pump(settle)

    def type_line(self, text: str) -> None:
        self.send(text, settle=0.8)
        self.send(ENTER)
