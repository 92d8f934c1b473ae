"""Golden-set archives are judged by what they declare before anything is decompressed, then read in chunks."""

import io
import struct
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from numpy.lib import format as npy_format

from controlplane.errors import InvalidInput
from registry import golden_sets
from registry.golden_sets import describe_golden_set, load_golden_arrays
from registry.models import Blob, GoldenSet
from tests.factories import golden_npz, npz_bytes, write_lying_npz

MIB = 1024 * 1024


def _arrays(count=4):
    return {"inputs": np.zeros((count, 1, 8, 8), dtype=np.float32), "labels": np.arange(count) % 2,
            "class_names": np.array(["cat", "dog"])}


def _refused(data, code="invalid_golden_set") -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        describe_golden_set(data)
    assert refused.value.code == code, refused.value.detail
    with pytest.raises(InvalidInput) as again:
        load_golden_arrays(data)
    assert again.value.code == code
    return refused.value


def npz_member(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_valid_set_is_described_from_bytes_or_a_file_alike(tmp_path):
    data = golden_npz(n=20, inputs=4, classes=3)
    path = tmp_path / "golden.npz"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        from_file = describe_golden_set(fh)
    assert from_file == describe_golden_set(data) == {
        "num_examples": 20, "input_shape": [4], "class_names": ["class-0", "class-1", "class-2"]}


def test_loaded_arrays_match_what_numpy_saved_including_fortran_order():
    inputs = np.asfortranarray(np.random.default_rng(0).standard_normal((6, 3, 2)).astype(np.float32))
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    loaded_inputs, loaded_labels, names = load_golden_arrays(npz_bytes(compressed=True, inputs=inputs, labels=labels))
    np.testing.assert_array_equal(loaded_inputs, inputs)
    assert loaded_labels.dtype == np.int64 and loaded_labels.tolist() == labels.tolist()
    assert names == ("0", "1", "2")


def test_header_that_declares_more_rows_than_the_member_holds_is_refused():
    # The .npy header says 9 rows; the (intact, CRC-correct) zip member holds 4 rows' worth of bytes.
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (9, 1, 8, 8)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inputs.npy", header.getvalue() + bytes(4 * 64 * 4))
        archive.writestr("labels.npy", npz_member(np.zeros(9, dtype=np.int64)))
    error = _refused(buffer.getvalue())
    assert "header describes [9, 1, 8, 8]" in error.detail and "declares 1024 bytes" in error.detail


def test_member_that_holds_less_data_than_declared_is_refused_after_bounded_reads(tmp_path, monkeypatch):
    # Zip directory and header agree on 8 MiB; the deflated stream holds only 2 MiB of it.
    monkeypatch.setattr(golden_sets, "MAX_COMPRESSION_RATIO", 10**6)
    monkeypatch.setattr(golden_sets, "READ_CHUNK", 256 * 1024)
    path = tmp_path / "short.npz"
    write_lying_npz(path, declared_bytes=8 * MIB, real_bytes=2 * MIB)
    error = _refused(path.read_bytes())
    assert "inputs.npy" in error.detail


def test_object_arrays_are_refused_before_unpickling():
    arrays = _arrays()
    arrays["class_names"] = np.array([{"name": "cat"}, {"name": "dog"}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # numpy pickles object arrays into the .npy member
    assert "pickled Python objects" in _refused(buffer.getvalue()).detail


@pytest.mark.parametrize("dtype", [np.complex64, np.dtype([("a", "<f4"), ("b", "<i4")]), "S4", "M8[s]"])
def test_only_plain_numeric_and_string_dtypes_are_accepted(dtype):
    arrays = _arrays()
    arrays["extra"] = np.zeros(3, dtype=dtype)
    assert "only plain numeric and string arrays" in _refused(npz_bytes(**arrays)).detail


def test_more_arrays_than_the_limit_are_refused():
    arrays = _arrays() | {f"extra{i}": np.zeros(1) for i in range(golden_sets.MAX_ARRAYS)}
    error = _refused(npz_bytes(**arrays), code="golden_set_too_large")
    assert f"at most {golden_sets.MAX_ARRAYS}" in error.detail


def test_compression_ratio_bomb_is_refused_before_decompressing():
    arrays = _arrays() | {"inputs": np.zeros((4, 1024, 1024), dtype=np.float32)}  # 16 MiB of zeros
    data = npz_bytes(compressed=True, **arrays)
    assert len(data) < 100 * 1024
    error = _refused(data, code="golden_set_too_large")
    assert f"at most {golden_sets.MAX_COMPRESSION_RATIO}:1" in error.detail


def test_archive_declaring_more_than_the_total_limit_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    write_lying_npz(path, declared_bytes=golden_sets.MAX_TOTAL_BYTES + MIB, real_bytes=MIB)
    error = _refused(path.read_bytes(), code="golden_set_too_large")
    assert f"at most {golden_sets.MAX_TOTAL_BYTES} bytes" in error.detail


def test_more_examples_than_the_limit_are_refused(monkeypatch):
    monkeypatch.setattr(golden_sets, "MAX_EXAMPLES", 3)
    error = _refused(npz_bytes(**_arrays(count=4)), code="golden_set_too_large")
    assert "4 examples; at most 3" in error.detail


def test_huge_label_without_class_names_is_refused_not_expanded():
    arrays = {"inputs": np.zeros((2, 3), dtype=np.float32), "labels": np.array([0, 2**62])}
    error = _refused(npz_bytes(**arrays), code="golden_set_too_large")
    assert "labels go up to" in error.detail


def test_over_long_class_names_are_refused():
    arrays = _arrays() | {"class_names": np.array(["cat", "d" * (golden_sets.MAX_CLASS_NAME_CHARS + 1)])}
    assert "class names" in _refused(npz_bytes(**arrays), code="golden_set_too_large").detail


def test_corrupted_member_fails_its_crc_check():
    data = bytearray(npz_bytes(**_arrays()))
    at = data.find(b"\x00" * 64, data.find(b"inputs.npy") + 200)
    data[at] = 1
    assert "not a readable .npz" in _refused(bytes(data)).detail


@pytest.mark.parametrize("data", [b"", b"PK\x05\x06", b"not a zip at all", b"PK\x03\x04" + bytes(100)])
def test_bytes_that_are_not_an_npz_are_refused(data):
    assert "not a readable .npz" in _refused(data).detail


def test_entries_that_are_not_npy_arrays_are_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inputs.npy", npz_bytes())  # any content: the name is judged first
        archive.writestr("notes.txt", "hello")
    assert "not a .npy array" in _refused(buffer.getvalue()).detail


# ------------------------------------------------------------- through the API

def _post_golden(client, data: bytes):
    return client.post("/api/v1/models/resnet/golden-sets/",
                       {"golden_set": SimpleUploadedFile("golden.npz", data, "application/octet-stream")},
                       format="multipart")


@pytest.mark.django_db
def test_golden_set_upload_is_described_and_stored(ci, resnet, stored_files):
    response = _post_golden(ci, golden_npz(n=20, inputs=4, classes=3))
    assert response.status_code == 201, response.json()
    assert response.json()["num_examples"] == 20
    assert len(stored_files()) == 1


@pytest.mark.django_db
def test_golden_set_zip_bomb_upload_is_refused_and_stores_nothing(ci, resnet, stored_files, tmp_path):
    path = tmp_path / "bomb.npz"
    write_lying_npz(path, declared_bytes=golden_sets.MAX_TOTAL_BYTES * 2, real_bytes=MIB)
    response = _post_golden(ci, path.read_bytes())
    assert response.status_code == 400
    assert response.json()["code"] == "golden_set_too_large"
    assert GoldenSet.objects.count() == 0 and Blob.objects.count() == 0
    assert stored_files() == []


def test_a_class_name_with_a_nul_character_is_refused():
    from tests.factories import npz_bytes

    with pytest.raises(InvalidInput) as raised:
        load_golden_arrays(npz_bytes(inputs=np.zeros((2, 4), np.float32), labels=np.array([0, 1]),
                                     class_names=np.array(["zero", "o\x00ne"])))
    assert raised.value.code == "invalid_golden_set" and "NUL" in raised.value.detail


@pytest.mark.parametrize("raw", [b"\x00\x00\x11\x00", b"\x00\xd8\x00\x00"], ids=["past U+10FFFF", "lone surrogate"])
def test_a_class_name_that_is_not_unicode_text_is_refused(raw):
    # A '<U' array is raw UCS-4: past U+10FFFF str() raised SystemError (a 500); a surrogate broke every listing.
    names = np.frombuffer(b"\x63\x00\x00\x00" + raw, dtype="<U1")
    data = npz_bytes(inputs=np.zeros((2, 4), np.float32), labels=np.array([0, 1]), class_names=names)
    assert "not Unicode text" in _refused(data).detail


def test_a_zip64_locator_pointing_past_any_file_is_refused_not_a_crash():
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, 2**64 - 1, 1)
    end = b"PK\x05\x06" + struct.pack("<4H2LH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    assert "zip64 directory is missing" in _refused(locator + end).detail
