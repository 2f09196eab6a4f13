"""What the scripts' result files and Markdown reports say about the run:
the machine (CPU, cores, memory, library versions, commit), a process's
memory, the command, and the footer lines of the reports."""
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

from common import PROJECT


def _proc_field(path: str, prefix: str) -> Optional[str]:
    """What follows `prefix` on the first such line of a /proc file (Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    name = _proc_field("/proc/cpuinfo", "model name")
    return name.lstrip(":").strip() if name else platform.processor() or "cpu"


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores"


def rss_kb(pid: int, field: str = "VmRSS") -> Optional[int]:
    """A memory figure of a process from /proc/<pid>/status, in kB (Linux)."""
    value = _proc_field(f"/proc/{pid}/status", field + ":")
    try:
        return int(value.split()[0]) if value else None
    except ValueError:
        return None


def mb(kb: Optional[int]) -> Optional[float]:
    return None if kb is None else round(kb / 1024, 1)


def machine_info() -> Dict[str, Any]:
    """The machine, the library versions and the commit, for a result file."""
    mem = _proc_field("/proc/meminfo", "MemTotal:")
    mem_kb = int(mem.split()[0]) if mem and mem.split()[0].isdigit() else None
    versions = {}
    for name in ("spacy", "torch", "transformers", "tokenizers", "starlette", "uvicorn", "httpx"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
            text=True, timeout=10,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gb": None if mem_kb is None else round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "git_commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def machine_line(info: Dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}, spacy {info['spacy']}; "
        f"commit {info['git_commit']}; {info['date']}"
    )


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that ran a script given by its path below scripts/
    ("loadtest/loadtest.py"), as a result file records it."""
    return " ".join(["python", f"scripts/{script}", *argv])


def run_footer(result: Dict[str, Any]) -> str:
    """The last line of a report: the machine_info() and the command."""
    return f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`."


def machines_footer(machines: Iterable[str]) -> str:
    """The last line of a report that gathers results of several runs."""
    return f"Machine: {'; '.join(sorted(set(machines)))}."


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_result(out: Path, name: str, result: Dict[str, Any], markdown: str, **json_args) -> None:
    """out/NAME.json (the result) and out/NAME.md (its report), which is printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, **json_args) + "\n", encoding="utf8")
    (out / f"{name}.md").write_text(markdown, encoding="utf8")
    print(markdown)
