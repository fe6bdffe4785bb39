"""System metrics of a run (CPU, memory, disk, network, GPU), as MLflow logs them.

    gitml.enable_system_metrics_logging()      # every run from now on
    with gitml.start_run(log_system_metrics=True):   # or one run
        ...

A background thread samples every ``GITML_SYSTEM_METRICS_SAMPLING_INTERVAL``
seconds (MLflow's default: 10) and, after ``..._SAMPLES_BEFORE_LOGGING`` samples
(default 1), logs their averages as ``system/<name>`` metrics at steps 0, 1, 2...
(MLflow's names: ``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ``system/disk_usage_percentage``,
``system/gpu_0_utilization_percentage``...). The figures come from ``/proc``
and ``os.statvfs`` (Linux; no psutil needed), GPUs from NVIDIA's ``pynvml``
when it is installed and a GPU is present.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("gitml")

PREFIX = "system/"


def sampling_interval() -> float:
    return float(
        os.environ.get("GITML_SYSTEM_METRICS_SAMPLING_INTERVAL")
        or os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
        or 10
    )


def samples_before_logging() -> int:
    return int(
        os.environ.get("GITML_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING")
        or os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING")
        or 1
    )


class SystemSampler:
    """One sample of the machine's figures: ``sample() -> {name: value}``."""

    def __init__(self, path: str = "."):
        self.path = path
        self._cpu: tuple[int, int] | None = self._cpu_times()
        self._net = self._net_bytes()
        self._gpus = _nvml_handles()

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        cpu = self._cpu_times()
        if cpu is not None and self._cpu is not None and cpu[0] > self._cpu[0]:
            total, idle = cpu[0] - self._cpu[0], cpu[1] - self._cpu[1]
            out["cpu_utilization_percentage"] = round(100.0 * (total - idle) / total, 1)
        self._cpu = cpu
        memory = _meminfo()
        if memory:
            used = memory["MemTotal"] - memory.get("MemAvailable", memory.get("MemFree", 0))
            out["system_memory_usage_megabytes"] = used * 1024 / 1e6
            out["system_memory_usage_percentage"] = 100.0 * used / memory["MemTotal"]
        try:
            st = os.statvfs(self.path)
            total_b, free_b = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
            used_b = total_b - st.f_bfree * st.f_frsize
            out["disk_usage_percentage"] = 100.0 * used_b / max(used_b + free_b, 1)
            out["disk_usage_megabytes"] = used_b / 1e6
            out["disk_available_megabytes"] = free_b / 1e6
        except OSError:
            pass
        net = self._net_bytes()
        if net is not None and self._net is not None:
            out["network_receive_megabytes"] = (net[0] - self._net[0]) / 1e6
            out["network_transmit_megabytes"] = (net[1] - self._net[1]) / 1e6
        out.update(_gpu_sample(self._gpus))
        return out

    @staticmethod
    def _cpu_times() -> tuple[int, int] | None:
        """(total, idle) jiffies from /proc/stat."""
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields[:8]), fields[3] + (fields[4] if len(fields) > 4 else 0)

    @staticmethod
    def _net_bytes() -> tuple[int, int] | None:
        try:
            with open("/proc/net/dev") as f:
                lines = f.readlines()[2:]
        except OSError:
            return None
        rx = tx = 0
        for line in lines:
            name, _, data = line.partition(":")
            if name.strip() == "lo":
                continue
            fields = data.split()
            rx, tx = rx + int(fields[0]), tx + int(fields[8])
        return rx, tx


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out if "MemTotal" in out else {}


def _nvml_handles() -> list:
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no pynvml, no driver, or no GPU: no GPU figures
        return []


def _gpu_sample(handles: list) -> dict[str, float]:
    out: dict[str, float] = {}
    if not handles:
        return out
    import pynvml

    for i, handle in enumerate(handles):
        try:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out[f"gpu_{i}_memory_usage_percentage"] = 100.0 * memory.used / memory.total
            out[f"gpu_{i}_memory_usage_megabytes"] = memory.used / 1e6
            out[f"gpu_{i}_utilization_percentage"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception as e:  # a GPU that stops answering is left out, not fatal
            log.debug("gitml: GPU %d: %s", i, e)
    return out


class SystemMetricsMonitor:
    """Samples on a daemon thread and calls ``log_metrics(averages, step)``."""

    def __init__(
        self,
        log_metrics: Callable[[dict[str, float], int], None],
        *,
        interval: float | None = None,
        samples: int | None = None,
        path: str = ".",
    ):
        self._log = log_metrics
        self.interval = sampling_interval() if interval is None else interval
        self.samples = samples_before_logging() if samples is None else samples
        self._sampler = SystemSampler(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gitml-system-metrics", daemon=True)
        self.step = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        collected: list[dict[str, float]] = []
        while not self._stop.wait(self.interval):
            try:
                collected.append(self._sampler.sample())
                if len(collected) < self.samples:
                    continue
                keys = {k for sample in collected for k in sample}
                averages = {
                    PREFIX + k: sum(s[k] for s in collected if k in s) / sum(1 for s in collected if k in s)
                    for k in keys
                }
                collected = []
                self._log(averages, self.step)
                self.step += 1
            except Exception as e:  # the run goes on without its system metrics
                log.warning("gitml: system metrics logging stopped: %s", e)
                return
