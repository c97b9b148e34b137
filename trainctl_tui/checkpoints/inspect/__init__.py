"""What is inside a checkpoint, read without loading it and without ever running code from it.

Stdlib only, Python 3.7+, and no other trainctl_tui imports: this package ships to SSH hosts, pods
and EC2 instances inside the runner's zipapp (runner/bundle.py) and runs there as
`python3 -m trainctl_tui.checkpoints.inspect PATH --json` with the zipapp on sys.path. One
module per format, dispatch.py chooses.

- torch zip (`<archive>/data.pkl` + `<archive>/data/N`) and legacy torch files (pickles followed by
  raw storages): the pickle goes through a restricted unpickler. Allowed globals map to local
  stand-ins that build *descriptions* (dtype, shape, numel, bytes); storages are never read, only
  their declared sizes are checked against the archive. Every other global becomes an opaque
  `<unsupported global module.name>` marker; nothing from the file is imported or called.
- safetensors: the JSON header only, checked against the file size.
- Keras: a `.keras` zip (end record, central directory, member CRCs; config.json and
  metadata.json for the model class, layers, Keras version, optimizer) whose model.weights.h5,
  like a `.weights.h5` or legacy `.h5` file, is walked by the sibling HDF5 metadata reader
  (checkpoints/hdf5.py, shipped along): dataset names, shapes and dtypes, the optimizer's
  iteration count, truncation against the superblock. Nothing of Keras, h5py or numpy is used.
- Checkpoint directories: Hugging Face (trainer_state.json), Accelerate `checkpoint_N`
  (random_states_N.pkl holds its step counter), torchtune `epoch_N` (its recipe state lives
  beside it), DeepSpeed; each weight/optimizer/state file gets the summary above.

What could not be checked is listed in `CheckpointInfo.unverified` (HDF5 dense storage, CRCs
of a huge .keras without deep=True, ...), so "ok" never claims more than was read.

`inspect_checkpoint(path, deep=False)` never raises for a bad file: it reports `corrupt` or
`suspicious` with the reason. Results are cached by (path, size, mtime, deep).
"""

from __future__ import annotations

from .cli import main
from .directories import inspect_dir_files
from .dispatch import (
    cache_clear,
    cache_stats,
    inspect_checkpoint,
    inspect_fileobj,
    trust_problem,
    unsound_reason,
)
from .errors import METADATA_LIMIT
from .info import CheckpointInfo, TensorInfo

__all__ = ["METADATA_LIMIT", "CheckpointInfo", "TensorInfo", "cache_clear", "cache_stats",
           "inspect_checkpoint", "inspect_dir_files", "inspect_fileobj", "main", "trust_problem",
           "unsound_reason"]
