#!/usr/bin/python3
"""Write small binary ONNX models that reach loader branches the lit models
do not: typed data fields, string tensors, external data entries, subgraphs,
Constant nodes, value_info and metadata. Seeds for fuzz-model-binary.

Usage: make_model_seeds.py FOLDER
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, initializers=(), opsets=(("", 13),), **graph_fields):
    graph = helper.make_graph(nodes, "seed", inputs, outputs, list(initializers), **graph_fields)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    proto.ir_version = 8
    return proto


def seeds():
    """Yield (file name, ModelProto) pairs."""
    x = helper.make_tensor_value_info("x:0", TensorProto.FLOAT, ["B", 4])
    y = helper.make_tensor_value_info("y:0", TensorProto.FLOAT, ["B", 4])

    typed = helper.make_tensor("bias", TensorProto.FLOAT, [4], [0.5, 1.0, -2.0, 3.0])
    yield "typed_float.onnx", model(
        [helper.make_node("Add", ["x:0", "bias"], ["y:0"], name="add")], [x], [y], [typed])

    raw = numpy_helper.from_array(np.arange(4, dtype=np.int64), "shape")
    yield "raw_int64_reshape.onnx", model(
        [helper.make_node("Reshape", ["x:0", "shape"], ["y:0"])], [x], [y], [raw])

    strings = helper.make_tensor("labels", TensorProto.STRING, [2], [b"yes", b"no"])
    yield "string_tensor.onnx", model(
        [helper.make_node("Identity", ["x:0"], ["y:0"])], [x], [y], [strings])

    external = helper.make_tensor("weights", TensorProto.FLOAT, [4], [0.0] * 4)
    external.ClearField("float_data")
    external.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        entry = external.external_data.add()
        entry.key, entry.value = key, value
    yield "external_data.onnx", model(
        [helper.make_node("Mul", ["x:0", "weights"], ["y:0"])], [x], [y], [external])

    constant = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.INT64, [2], [1, 2]))
    floats = helper.make_node("Constant", [], ["f"], value_floats=[1.0, 2.0])
    cast = helper.make_node("Cast", ["x:0"], ["y:0"], to=TensorProto.FLOAT)
    yield "constants.onnx", model([constant, floats, cast], [x], [y])

    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    branches = {}
    for name in ("then_branch", "else_branch"):
        out = helper.make_tensor_value_info(name + "_out", TensorProto.FLOAT, None)
        body = helper.make_graph(
            [helper.make_node("Identity", ["x:0"], [name + "_out"])], name, [], [out])
        branches[name] = body
    if_node = helper.make_node("If", ["flag"], ["y:0"], **branches)
    yield "if_subgraph.onnx", model([if_node], [x, flag], [y])

    mid = helper.make_tensor_value_info("mid", TensorProto.FLOAT, ["B", 4])
    softmax = model(
        [helper.make_node("Relu", ["x:0"], ["mid"]),
         helper.make_node("Softmax", ["mid"], ["y:0"], axis=-1)],
        [x], [y], value_info=[mid])
    entry = softmax.metadata_props.add()
    entry.key, entry.value = "origin", "seed"
    yield "value_info_metadata.onnx", softmax

    contrib = model(
        [helper.make_node("BiasGelu", ["x:0", "bias"], ["y:0"], domain="com.microsoft")],
        [x], [y], [typed], opsets=(("", 13), ("com.microsoft", 1)))
    yield "contrib_domain.onnx", contrib


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    for name, proto in seeds():
        with open(os.path.join(folder, name), "wb") as out:
            out.write(proto.SerializeToString())


if __name__ == "__main__":
    main()
