"""Reading an ONNX file's signature: external data refused anywhere, buffered fields capped, nesting bounded."""

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from controlplane.errors import InvalidInput
from registry import onnx_graph
from registry.onnx_graph import read_onnx_signature, refuse_external_data
from tests.factories import (deeply_nested_input, external_tensor, len_field, onnx_with_external_weights,
                             onnx_with_extra_graph_fields, tiny_onnx, write_large_onnx)


def _signature(data: bytes) -> dict:
    return read_onnx_signature(io.BytesIO(data), len(data))


def _refused(data: bytes, code: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        _signature(data)
    assert refused.value.code == code, refused.value.detail
    return refused.value


def _model(nodes, initializers=(), sparse=(), functions=(), extra_inputs=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4]), *extra_inputs],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        list(initializers), sparse_initializer=list(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              functions=list(functions))
    model.ir_version = 9
    return model


def _subgraph(initializer: TensorProto) -> onnx.GraphProto:
    return helper.make_graph([helper.make_node("Identity", [initializer.name], ["branch_out"])], "branch", [],
                             [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [4, 3])], [initializer])


def _external():
    return external_tensor("W", "data/signing/development-key.pem")


def _sparse(values: TensorProto) -> onnx.SparseTensorProto:
    indices = numpy_helper.from_array(np.array([0, 1, 2, 3], dtype=np.int64), "W_indices")
    return helper.make_sparse_tensor(values, indices, [4, 3])


EXTERNAL_DATA_HIDING_PLACES = {
    "graph initializer": lambda: _model([], initializers=[_external()]),
    "sparse initializer values": lambda: _model([], sparse=[_sparse(_external())]),
    "Constant node value": lambda: _model([helper.make_node("Constant", [], ["W"], value=_external())]),
    "attribute tensor list": lambda: _model([helper.make_node(
        "Custom", [], ["W"], domain="local", weights=[numpy_helper.from_array(np.zeros(2, np.float32)), _external()])]),
    "sparse attribute": lambda: _model([helper.make_node("Constant", [], ["W"], sparse_value=_sparse(_external()))]),
    "If branch initializer": lambda: _model([helper.make_node(
        "If", ["cond"], ["W"], then_branch=_subgraph(_external()),
        else_branch=_subgraph(numpy_helper.from_array(np.zeros((4, 3), np.float32), "W")))]),
    "nested If inside a Loop body": lambda: _model([helper.make_node("Loop", ["n", "c"], ["W"], body=helper.make_graph(
        [helper.make_node("If", ["c"], ["x"], then_branch=_subgraph(_external()), else_branch=_subgraph(_external()))],
        "body", [], []))]),
    "model-local function": lambda: _model([], functions=[helper.make_function(
        "local", "MakeW", [], ["W"], [helper.make_node("Constant", [], ["W"], value=_external())],
        [helper.make_opsetid("", 17)])]),
    "location flag without entries": lambda: _model([], initializers=[TensorProto(
        name="W", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)]),
    "entries without the location flag": lambda: _model(
        [], initializers=[external_tensor("W", "weights.bin", with_location_flag=False)]),
}


@pytest.mark.parametrize("place", EXTERNAL_DATA_HIDING_PLACES)
def test_external_data_is_refused_wherever_a_tensor_hides(place):
    data = EXTERNAL_DATA_HIDING_PLACES[place]().SerializeToString()
    error = _refused(data, "external_data_refused")
    assert "external file" in error.detail
    with pytest.raises(InvalidInput) as again:
        refuse_external_data(data)
    assert again.value.code == "external_data_refused"


def test_external_data_in_a_training_graph_is_refused():
    model = _model([])
    model.training_info.add().initialization.CopyFrom(_subgraph(_external()))
    assert _refused(model.SerializeToString(), "external_data_refused")


def test_refusal_names_the_tensor_and_the_file_it_points_at():
    error = _refused(onnx_with_external_weights("/etc/passwd"), "external_data_refused")
    assert "'W'" in error.detail and "/etc/passwd" in error.detail
    assert error.context == {"tensor": "W", "location": "/etc/passwd"}


def test_self_contained_models_pass_the_gate_side_check_and_keep_the_stream_position(tmp_path):
    refuse_external_data(tiny_onnx())
    refuse_external_data(memoryview(tiny_onnx()))
    path = tmp_path / "large.onnx"
    write_large_onnx(path, 64 * 1024 * 1024)
    with open(path, "rb") as fh:
        fh.seek(5)
        refuse_external_data(fh)
        assert fh.tell() == 5


def test_signature_of_a_model_with_subgraphs_and_functions_is_read():
    model = _model([helper.make_node("If", ["cond"], ["logits"],
                                     then_branch=_subgraph(numpy_helper.from_array(np.zeros((4, 3), np.float32), "A")),
                                     else_branch=_subgraph(numpy_helper.from_array(np.ones((4, 3), np.float32), "B")))])
    signature = _signature(model.SerializeToString())
    assert [i["name"] for i in signature["inputs"]] == ["input"]
    assert signature["opsets"] == {"ai.onnx": 17, "local": 1}


def test_initializers_listed_as_inputs_are_not_part_of_the_signature():
    weights = numpy_helper.from_array(np.zeros((4, 3), np.float32), "W")
    model = _model([helper.make_node("MatMul", ["input", "W"], ["logits"])], initializers=[weights],
                   extra_inputs=[helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3])])
    assert [i["name"] for i in _signature(model.SerializeToString())["inputs"]] == ["input"]


def test_input_type_nested_thousands_of_levels_is_malformed_not_a_crash():
    error = _refused(onnx_with_extra_graph_fields(deeply_nested_input(5000)), "malformed_onnx")
    assert "nested too deeply" in error.detail


def test_subgraphs_nested_past_the_limit_are_malformed():
    # Hand-framed: onnx.helper itself refuses to build protobuf this deep.
    graph = _subgraph(numpy_helper.from_array(np.zeros((4, 3), np.float32), "W")).SerializeToString()
    for _ in range(onnx_graph.MAX_NESTING):
        attribute = len_field(1, b"then_branch") + b"\xa0\x01\x05" + len_field(6, graph)  # type = GRAPH, g
        graph = len_field(1, len_field(4, b"If") + len_field(5, attribute))  # GraphProto.node { op_type, attribute }
    error = _refused(onnx_with_extra_graph_fields(graph), "malformed_onnx")
    assert f"more than {onnx_graph.MAX_NESTING} levels" in error.detail


def test_over_long_opset_domain_is_refused_without_reading_it():
    model = onnx.load_from_string(tiny_onnx())
    model.opset_import.add(domain="d" * (onnx_graph.MAX_NAME_CHARS + 1), version=1)
    assert "domain" in _refused(model.SerializeToString(), "onnx_field_too_large").detail
    model.opset_import[-1].domain = "d" * onnx_graph.MAX_SMALL_FIELD
    assert "opset_import entry" in _refused(model.SerializeToString(), "onnx_field_too_large").detail


def test_over_long_input_name_is_refused():
    model = onnx.load_from_string(tiny_onnx())
    model.graph.input[0].name = "x" * (onnx_graph.MAX_NAME_CHARS + 1)
    assert "name" in _refused(model.SerializeToString(), "onnx_field_too_large").detail


def test_too_many_inputs_are_refused(monkeypatch):
    monkeypatch.setattr(onnx_graph, "MAX_SIGNATURE_ENTRIES", 3)
    extra = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1]) for i in range(3)]
    error = _refused(_model([], extra_inputs=extra).SerializeToString(), "onnx_field_too_large")
    assert "4 inputs; at most 3" in error.detail


def test_input_and_output_bytes_are_capped(monkeypatch):
    monkeypatch.setattr(onnx_graph, "MAX_RECORDED_SIGNATURE_BYTES", 64)
    extra = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1]) for i in range(8)]
    assert "bytes are recorded" in _refused(_model([], extra_inputs=extra).SerializeToString(),
                                            "onnx_field_too_large").detail


def test_walk_stays_within_its_message_on_a_lying_length():
    # A graph field claiming more bytes than the file holds.
    assert _refused(tiny_onnx() + b"\x3a\xff\xff\x03", "malformed_onnx")


def test_an_input_name_with_a_nul_character_is_malformed():
    import io

    from onnx import TensorProto, helper

    from controlplane.errors import InvalidInput
    from registry.onnx_graph import read_onnx_signature

    graph = helper.make_graph([helper.make_node("Identity", ["in\x00put"], ["out"])], "g",
                              [helper.make_tensor_value_info("in\x00put", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
    data = helper.make_model(graph).SerializeToString()
    with pytest.raises(InvalidInput) as raised:
        read_onnx_signature(io.BytesIO(data), len(data))
    assert raised.value.code == "malformed_onnx"


def test_an_opset_domain_with_a_nul_character_is_malformed():
    # PostgreSQL's JSON columns cannot hold NUL: stored, the version row's insert would fail as a 500.
    model = _model([helper.make_node("MatMul", ["input", "W"], ["logits"])],
                   [numpy_helper.from_array(np.zeros((4, 3), np.float32), "W")])
    model.opset_import.append(helper.make_opsetid("evil\x00domain", 1))
    error = _refused(model.SerializeToString(), "malformed_onnx")
    assert "NUL" in error.detail
