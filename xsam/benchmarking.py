"""What the benchmark scripts share: the machine's name and a Markdown table of results."""

import platform
import subprocess

from xsam.markdown import table_lines

Column = tuple[str, str, str]  # (header, key in a row, format string)


def markdown_table(rows: list[dict], columns: list[Column]) -> str:
    """One Markdown table; a missing or None value shows as a dash."""

    def cell(row: dict, key: str, fmt: str) -> str:
        return "—" if row.get(key) is None else fmt.format(row[key])

    header = [h for h, _, _ in columns]
    return "\n".join(table_lines(header, ([cell(r, k, f) for _, k, f in columns] for r in rows)))


def cpu_name() -> str:
    """The CPU model as lscpu names it, else what the platform module knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
        if names:
            return names[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()
