"""Reading a sharded (.dcp) checkpoint without running code from it (docs/run-format.md,
"Checkpoints"). torch's FileSystemReader unpickles `.metadata` with plain pickle.load, and its
DefaultLoadPlanner reads each non-tensor item (the optimizer's hyper-parameters) with
torch.load(weights_only=False): a crafted run directory would run code under `gigagpt sample` or
an FSDP resume. Here `.metadata` is unpickled allowing only the classes DCP's own metadata holds,
it may name only files inside the checkpoint, and non-tensor items go through
torch.load(weights_only=True); tensors already do in torch's reader. Imported only to read a .dcp."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader, _StorageInfo

from gigagpt.checkpoint import brief, why
from gigagpt.store.checkpoints import Unloadable

# Every global a .metadata written by dcp.save names (FSDP2 model, AdamW state; listed with
# pickletools from real checkpoints of this torch), plus torch's dtypes (objects, not callables).
ALLOWED = {("torch.distributed.checkpoint.metadata", name) for name in (
    "Metadata", "MetadataIndex", "StorageMeta", "TensorStorageMetadata", "BytesStorageMetadata",
    "ChunkStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # torch.strided, by name from torch's own table
    ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id: where it was written
}


class MetadataUnpickler(pickle.Unpickler):
    """pickle's own machinery, but a global outside ALLOWED is refused, never imported."""

    def find_class(self, module: str, name: str):
        dtype = getattr(torch, name, None) if module == "torch" else None
        if (module, name) in ALLOWED or isinstance(dtype, torch.dtype):
            return super().find_class(module, name)
        raise Unloadable(f"refused: .metadata pickle names {module}.{name}, not a checkpoint metadata class")


def read_metadata(path: Path):
    """A .metadata file as DCP's Metadata; Unloadable (one line) for an unsafe or damaged one."""
    try:
        with open(path, "rb") as f:
            meta = MetadataUnpickler(f).load()
    except Unloadable:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a truncated or corrupt pickle raises
        raise Unloadable(f"unreadable ({path.name}: {brief(e)})") from None
    if not isinstance(meta, dcp_metadata.Metadata):
        raise Unloadable(f"unreadable ({path.name} holds a pickled {type(meta).__name__}, not checkpoint metadata)")
    if not (isinstance(meta.state_dict_metadata, dict) and isinstance(meta.storage_data, dict)):
        raise Unloadable(f"unreadable ({path.name}: its state_dict_metadata or storage_data is not a dict)")
    for info in meta.storage_data.values():
        name = getattr(info, "relative_path", None)
        # a name in this directory only: not a path out of it (a FIFO, a device, another run's file)
        if not isinstance(info, _StorageInfo) or not isinstance(name, str) or name in ("", ".", "..") \
                or Path(name).name != name:
            raise Unloadable(f"refused: {path.name} points at {name!r}, not a file of this checkpoint")
    return meta


class SafeReader(FileSystemReader):
    """FileSystemReader whose metadata comes from read_metadata. A refusal is kept in `problem` and
    an empty Metadata returned: the load then fails inside DCP on every rank alike (a raise here
    would make DCP log a traceback and try the rank-local `__N.metadata` instead)."""

    problem: str | None = None

    def read_metadata(self, *args, **kwargs):
        try:
            meta = read_metadata(Path(self._get_metadata_path(kwargs.get("rank"))))
        except Unloadable as e:
            self.problem = str(e)
            return dcp_metadata.Metadata(state_dict_metadata={}, storage_data={})
        if getattr(meta, "storage_meta", None) is None:  # as FileSystemReader.read_metadata does
            meta.storage_meta = dcp_metadata.StorageMeta()
        meta.storage_meta.load_id = self.load_id
        return meta


class SafePlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner with its non-tensor items read by torch.load(weights_only=True)."""

    problem: str | None = None

    def load_bytes(self, read_item, value) -> None:
        fqn = read_item.dest_index.fqn
        try:
            obj = torch.load(value, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - whatever a crafted or damaged item makes torch raise
            info = self.metadata.storage_data.get(read_item.storage_index)
            self.problem = f"{getattr(info, 'relative_path', '?')}: item {fqn}: {why(e)}"
            raise
        if self.flatten_state_dict:  # as DefaultLoadPlanner.load_bytes puts it
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def load(state: dict, path: Path, no_dist: bool = False) -> None:
    """dcp.load of `state` from the .dcp directory `path`, in place. Unloadable (one line) when the
    checkpoint is refused as unsafe or its metadata is unreadable; RuntimeError (its last line)
    when DCP fails otherwise (its CheckpointException is a BaseException)."""
    reader, planner = SafeReader(str(path)), SafePlanner()
    try:
        with warnings.catch_warnings():  # no_dist is meant: not torch's "assuming single process" warning
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=reader, planner=planner, no_dist=no_dist)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - DCP gathers every rank's error into a BaseException
        if reader.problem or planner.problem:
            raise Unloadable(reader.problem or planner.problem) from None
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else type(e).__name__) from None
    if reader.problem or planner.problem:  # an empty state reads nothing, so nothing failed
        raise Unloadable(reader.problem or planner.problem)
