"""Reading the rows of an Arrow build (records or tokens) for DataLoaders in bounded memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset as TorchDataset

CACHE_VERSION = 6  # bump when the row schema changes: older caches (records and tokens) are rebuilt
REMAP_ROWS = 256  # rows read through one mapping of the file before ArrowRecords maps it afresh


class ArrowRecords(TorchDataset):
    """Rows of an Arrow file of a build (records or tokens), read for DataLoaders in bounded memory.

    A memory map kept open for a whole epoch ends up resident with every page of the file that random reads
    touched (each row read touches a page of every column): the process's RSS would grow with the file. This
    reader maps the file afresh every `remap_rows` rows, so the pages of older reads are unmapped and
    resident memory stays bounded however large the file. Pickles as its path (DataLoader workers reopen it).

    Args:
        path: an Arrow file written by `build_record_dataset` or `tokenize_texts`.
        remap_rows: rows read through one mapping.
    """

    def __init__(self, path: str | Path, remap_rows: int = REMAP_ROWS):
        self.path, self.remap_rows = str(path), remap_rows
        self.folder = Path(path).parent  # the build folder
        self._ds, self._read = None, 0
        self._len = len(self._dataset())
        self._ds = None  # mapped again on the first read

    def _dataset(self):
        from datasets import Dataset

        if self._ds is None or self._read >= self.remap_rows:
            self._ds = None  # drop the old mapping before the new one
            self._ds, self._read = Dataset.from_file(self.path), 0
        return self._ds

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([int(i)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        rows = self._dataset().__getitems__([int(i) for i in indices])
        self._read += len(indices)
        return rows

    def column(self, name: str) -> np.ndarray:
        """One numeric column as a numpy array, read batch by batch with plain file reads: through a memory
        map, every record batch's column (and the pages around it) would stay resident at once."""
        import pyarrow as pa

        with pa.OSFile(self.path) as f:
            reader = pa.ipc.open_stream(f)
            out, pos = None, 0
            for batch in reader:  # one batch in memory at a time; its column copied out
                values = batch.column(name).to_numpy(zero_copy_only=False)
                out = np.empty(self._len, dtype=values.dtype) if out is None else out
                out[pos:pos + len(values)] = values
                pos += len(values)
        return out if out is not None else np.zeros(0)

    def __getstate__(self) -> dict:
        return {"path": self.path, "remap_rows": self.remap_rows, "folder": self.folder, "_len": self._len,
                "_ds": None, "_read": 0}
