"""A .pt2 archive is read by its index before anything loads it: every part torch would unpickle is refused."""

import io
import pickle
import zipfile

import pytest
import torch

from controlplane.errors import InvalidInput
from tests.workers.hostile import RunsCommand, with_pickled_weight
from workers.gates.pt2_archive import safe_pt2_archive


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x)


def _RunsCode():
    return RunsCommand("true")


@pytest.fixture(scope="module")
def pt2():
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(_Tiny(), (torch.randn(2, 4),)), buffer)
    return buffer.getvalue()


def _edited(pt2: bytes, edit) -> bytes:
    """A copy of the archive with `edit(name, data) -> data | None` applied to each member (None drops it)."""
    source = zipfile.ZipFile(io.BytesIO(pt2))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as copy:
        for name in source.namelist():
            data = edit(name, source.read(name))
            if data is not None:
                copy.writestr(name, data)
        extra = edit("<add>", b"")
        if extra:
            copy.writestr(*extra)
    return out.getvalue()


def _refused(archive: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        safe_pt2_archive(archive)
    return raised.value


def test_a_weight_marked_use_pickle_is_refused_as_unsafe(pt2):
    error = _refused(with_pickled_weight(pt2, "true"))
    assert error.code == "unsafe_archive" and "use_pickle" in error.detail


def test_pickle_bytes_where_raw_tensor_bytes_belong_are_refused(pt2):
    def swap(name, data):
        if name.endswith("data/weights/weight_0"):
            return pickle.dumps(_RunsCode())
        return None if name == "<add>" else data
    error = _refused(_edited(pt2, swap))
    assert error.code == "unsafe_archive" and "weight_0" in error.detail


@pytest.mark.parametrize("member", ["data/constants/custom_obj_0", "data/constants/opaque_obj_0",
                                    "data/weights/model.pt", "data/aotinductor/model/model.so"])
def test_parts_torch_would_unpickle_or_that_mlcp_does_not_know_are_refused(pt2, member):
    root = zipfile.ZipFile(io.BytesIO(pt2)).namelist()[0].split("/")[0]

    def add(name, data):
        return (f"{root}/{member}", pickle.dumps(_RunsCode())) if name == "<add>" else data
    error = _refused(_edited(pt2, add))
    assert error.code == "unsafe_archive" and member in error.detail


def test_member_names_that_climb_out_of_the_archive_are_refused(pt2):
    error = _refused(_edited(pt2, lambda name, data: ("../evil", b"x") if name == "<add>" else data))
    assert error.code == "unsafe_archive"


def test_a_file_that_is_not_a_zip_is_an_invalid_archive():
    assert _refused(b"not a zip at all").code == "invalid_archive"


def test_a_clean_archive_loads_with_its_pickled_sample_inputs_emptied(pt2, monkeypatch):
    x = torch.randn(2, 4)
    expected = torch.export.load(io.BytesIO(pt2)).module()(x)
    safe = safe_pt2_archive(pt2)
    names = zipfile.ZipFile(io.BytesIO(safe)).namelist()
    sample_inputs = [n for n in names if "/data/sample_inputs/" in n]
    assert sample_inputs and all(zipfile.ZipFile(io.BytesIO(safe)).read(n) == b"" for n in sample_inputs)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the safe archive was unpickled")
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    program = torch.export.load(io.BytesIO(safe))
    assert torch.allclose(program.module()(x), expected)
