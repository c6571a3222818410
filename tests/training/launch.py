"""Real processes for the distributed tests: a free local port and a launch that shows a rank's own error."""

import os
import signal
import socket
import subprocess
import sys

#: ``torchrun`` without the console script: the launcher module of the running interpreter
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--master_addr=127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int) -> list[str]:
    """The launcher's arguments for ``nproc`` processes on a port of their own."""
    return [*TORCHRUN, f"--nproc_per_node={nproc}", f"--master_port={free_port()}"]


def launch(args: list[str], cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` with one thread per process (two ranks share two cores); fail with its output.

    The command runs in a session of its own, and past ``timeout`` the whole session is killed: killing only
    torchrun would leave a hung rank behind, holding the output pipes open."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            tail = stdout[-2000:] + stderr[-3000:]
            raise AssertionError(f"{' '.join(args[:6])} ... ran past {timeout} s\n{tail}") from None
    done = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    # a rank's own error comes first in stderr, torchrun's summary last
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[:3000] + done.stderr[-2000:]
    return done
