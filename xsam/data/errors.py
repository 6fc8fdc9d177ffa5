"""The one error every dataset builder raises for data that is not usable on disk."""

from pathlib import Path


class DatasetNotFound(FileNotFoundError):
    """Data missing, partial or corrupt on disk.

    The message is a single line: what is wrong, the path, what was expected there and,
    when given, how to fix it::

        missing: data/cifar10/cifar-10-batches-py/test_batch; expected CIFAR-10 ...; set ...
    """

    def __init__(
        self,
        path: str | Path,
        expected: str | None = None,
        *,
        problem: str = "missing",
        hint: str | None = None,
    ) -> None:
        if expected is None:  # re-raised from a bare message, e.g. by a DataLoader worker
            super().__init__(str(path))
            return
        parts = [f"{problem}: {path}", f"expected {expected}"] + ([hint] if hint else [])
        super().__init__("; ".join(part.replace("\n", " ") for part in parts))
        self.path = Path(path)
