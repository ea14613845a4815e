"""TensorFlow's start-up chatter kept out of what people read: the command line, the notebook kernels
it starts, the built book.

Importing TensorFlow on a machine without a GPU prints a dozen native log lines (absl's pre-init
warning, oneDNN and "could not find cuda drivers" notices, "failed call to cuInit"), each
notebook kernel announces that it listens on local TCP, and one interrupted at shutdown says so. They are written
by C++ before Python can intervene, so `TF_CPP_MIN_LOG_LEVEL` alone cannot silence them all.
`quiet_native_logs` sets the level for this process and its children (kernels included) and filters
file descriptor 2 through a thread that drops exactly these lines and passes everything else —
progress bars, warnings, tracebacks, real errors — through unchanged and unbuffered.
"""

from __future__ import annotations

import atexit
import os
import re
import threading

__all__ = ["is_tf_noise", "quiet_native_logs"]

_NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:. ]+\S+\] .*"  # glog-format info / warning lines from TensorFlow's C++
    rb"|E\d{4} [\d:. ]+\S+\] .*(?:cuInit|CUDA|cuda).*"  # the CUDA probe's "error" on a machine without a GPU
    # tf.data's version-skew notice ("... graph generating binary is newer than this binary ... ignored")
    rb"|E\d{4} [\d:. ]+node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption\..*"  # a local kernel's notice
    # an idle kernel interrupted by nbclient while it shuts the kernel down after the last cell
    rb"|\[IPKernelApp\] ERROR \| KeyboardInterrupt caught in kernel\.)$"
)
# how a noise line starts: a partial write that could become one is held until its line ends
_PREFIX = re.compile(
    rb"^(?:[IWE]\d{0,4}(?: [\d:. ]*)?"  # "I0000 00:00:17..."
    rb"|W(?:A(?:R(?:N(?:I(?:N(?:G(?::.*)?)?)?)?)?)?)?"  # "WARNING: All log messages..."
    rb"|\[(?:I(?:P.*)?)?)$"  # "[IPKernelApp] ..."
)

_installed = False


def is_tf_noise(line: str | bytes) -> bool:
    """Whether ``line`` (without its newline) is TensorFlow start-up chatter."""
    b = line.encode() if isinstance(line, str) else line
    return bool(_NOISE.match(b.rstrip(b"\r\n")))


def _pump(read_fd: int, write_fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data = pending + chunk
        lines = data.split(b"\n")
        pending = lines.pop()  # the unfinished last line
        out = b"".join(line + b"\n" for line in lines if not is_tf_noise(line))
        if pending and not _PREFIX.match(pending):  # e.g. a progress bar redrawn with "\r": show it now
            out, pending = out + pending, b""
        if out:
            os.write(write_fd, out)
    if pending and not is_tf_noise(pending):
        os.write(write_fd, pending)


def quiet_native_logs() -> None:
    """Silence TensorFlow's start-up chatter for this process and the processes it starts (once;
    call before importing TensorFlow). Does nothing to a stderr that is not a file descriptor."""
    global _installed
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # children (notebook kernels) inherit it
    if _installed or os.environ.get("TUMORLENS_VERBOSE_TF"):
        return
    try:
        original = os.dup(2)
    except OSError:
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_pump, args=(read_fd, original), name="tumorlens-stderr", daemon=True)
    thread.start()
    _installed = True

    def restore() -> None:
        import sys

        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end in this process: the pump drains and ends
        thread.join(timeout=2)

    atexit.register(restore)
