"""Where training runs: one device (``train.strategy: default``) or mirrored over several (``mirrored``).

`tf.distribute.MirroredStrategy` keeps a copy of the model on each device, splits every batch of
``data.batch_size`` images (the global batch) across them and sums the gradients before each update,
so one epoch is the same optimisation as on one device with the same batch size. The devices are the
machine's GPUs, or -- without any -- its logical CPU devices (one unless the process split the CPU with
`split_cpu`, which is how the mirrored path is tested on a machine without GPUs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["STRATEGIES", "make_strategy", "split_cpu", "describe"]

STRATEGIES = ("default", "mirrored")


def make_strategy(name: str = "default"):
    """The `tf.distribute.Strategy` for ``name`` (``default``: TensorFlow's no-op default strategy)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"train.strategy must be one of {', '.join(STRATEGIES)}; received {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def split_cpu(n: int = 2) -> None:
    """Split the host CPU into ``n`` logical devices (before TensorFlow's runtime starts; RuntimeError after)."""
    import tensorflow as tf

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; received n={n!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def describe(strategy) -> dict[str, Any]:
    """What a run records: the strategy's class and its replicas."""
    return {"strategy": type(strategy).__name__, "replicas": int(strategy.num_replicas_in_sync)}
