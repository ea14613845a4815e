"""TensorFlow's start-up chatter is dropped from the command's stderr; everything else passes unchanged."""

import subprocess
import sys

from tumorlens.utils.quiet import is_tf_noise

CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795844618.540321   26753 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1795844618.540637   26753 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    "E0000 00:00:1795844623.174596   26781 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication is plain text.",
    "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.",
    "E0000 00:00:1795859876.953303   21492 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool"
    " which is not in the op definition: Op<name=MapDataset; ...> This may be expected if your graph generating "
    "binary is newer  than this binary. Unknown attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_16}}",
]
KEPT = [
    "E0000 00:00:1795859876.953303   21492 node_def_util.cc:682] NodeDef mentions attribute other_attr which is",
    "E0000 00:00:1795844623.174596   26781 bfc_allocator.cc:52] Out of memory while trying to allocate",
    "tumorlens: error: data/x.png: not an image",
    "Traceback (most recent call last):",
    "Warning: something a reader should see",
    "[IPKernelApp] ERROR | a kernel that failed to start",
]


def test_only_the_start_up_chatter_is_noise():
    assert all(is_tf_noise(line) for line in CHATTER)
    assert not any(is_tf_noise(line) for line in KEPT)


def test_a_filtered_process_and_its_children_lose_the_chatter_and_keep_the_rest():
    code = (
        "import os, subprocess, sys, time\n"
        "from tumorlens.utils.quiet import quiet_native_logs\n"
        "quiet_native_logs()\n"
        f"lines = {CHATTER + KEPT!r}\n"
        "os.write(2, ('\\n'.join(lines) + '\\n').encode())\n"
        "os.write(2, b'progress 10%\\r')\n"  # a progress bar's partial line: shown, not held back
        "time.sleep(0.3)\n"
        "os.write(2, b'progress 20%\\n')\n"
        "subprocess.run([sys.executable, '-c', 'import os; os.write(2, (%r + chr(10)).encode())' % lines[1]])\n"
        "print('stdout untouched')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"stdout untouched\n"
    assert r.stderr.decode() == "\n".join(KEPT) + "\nprogress 10%\rprogress 20%\n"


def test_the_command_is_quiet_where_tensorflow_loads():
    from importlib.metadata import entry_points

    assert entry_points(group="console_scripts", name="tumorlens")[0].value == "tumorlens.cli:entry"
    code = (
        "from tumorlens.utils.quiet import quiet_native_logs; quiet_native_logs(); "
        "import tensorflow as tf; tf.constant(1)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # this TensorFlow's own start-up lines, all dropped
