"""Hostile .pt2 archives for the tests: real programs with one part swapped for a pickle that runs a command."""

import io
import json
import pickle
import zipfile


class RunsCommand:
    """What an attacker pickles: unpickling it runs `command` in a shell."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def with_pickled_weight(pt2: bytes, command: str) -> bytes:
    """`pt2` with its first weight marked `use_pickle` and replaced by a pickle that runs `command`."""
    source = zipfile.ZipFile(io.BytesIO(pt2))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as copy:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(config).encode()
            elif name.endswith("data/weights/weight_0"):
                data = pickle.dumps(RunsCommand(command))
            copy.writestr(name, data)
    return out.getvalue()
