#!/usr/bin/python3
"""Write a malformed (or borderline) model of one kind, for the robustness
tests.

Usage: make_bad_model.py KIND OUT
       make_bad_model.py --list

KIND is one of the names in KINDS below. A few kinds write extra files
beside OUT (external data, a symlink, a file outside the model's folder);
OUT's folder must exist.
"""
import io
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def value_info(name, dims, elem_type=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem_type, dims)


def make_model(nodes, inputs=None, outputs=None, initializers=(), opsets=(("", 13),)):
    """A model named like a tf2onnx export: x:0 -> ... -> y:0 by default."""
    inputs = [value_info("x:0", ["B", 4])] if inputs is None else inputs
    outputs = [value_info("y:0", ["B", 4])] if outputs is None else outputs
    graph = helper.make_graph(nodes, "tf2onnx", inputs, outputs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets],
        producer_name="tf2onnx")
    model.ir_version = 8
    return model


def bias(name="bias:0", dims=(4,)):
    return numpy_helper.from_array(np.arange(np.prod(dims), dtype=np.float32).reshape(dims), name)


def valid_model():
    """x:0 -> Relu -> Add(bias:0) -> y:0"""
    return make_model(
        [helper.make_node("Relu", ["x:0"], ["relu:0"], name="model/Relu"),
         helper.make_node("Add", ["relu:0", "bias:0"], ["y:0"], name="model/BiasAdd")],
        initializers=[bias()])


def external(tensor, location, offset=None, length=None):
    """Move `tensor`'s data to an external-data reference (the file is not written)."""
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for key, value in entries:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


# ---- Kinds: each returns the bytes of OUT and may write files beside it ----

def truncated(out):
    data = valid_model().SerializeToString()
    return data[: len(data) * 2 // 3]


def not_onnx_zip(out):
    buffer = io.BytesIO()
    np.savez(buffer, input_token=np.zeros((1, 4), np.int64))
    return buffer.getvalue()


def not_onnx_text(out):
    return b"This is a README, not a model.\nIt has two lines.\n"


def not_onnx_json(out):
    return b'{"graph": {"node": []}}\n'


def other_protobuf(out):
    # A serialized TensorProto: valid protobuf with none of ModelProto's fields.
    return numpy_helper.from_array(np.zeros(3, np.float32), "weights").SerializeToString()


def no_graph(out):
    model = valid_model()
    model.ClearField("graph")
    return model.SerializeToString()


def empty_graph(out):
    return make_model([], inputs=[], outputs=[]).SerializeToString()


def undefined_input(out):
    model = valid_model()
    model.graph.node[1].input[1] = "model/missing:0"
    return model.SerializeToString()


def undefined_output(out):
    model = valid_model()
    model.graph.output[0].name = "model/missing:0"
    return model.SerializeToString()


def cycle(out):
    model = valid_model()
    model.graph.node[0].input[0] = "y:0"
    return model.SerializeToString()


def self_loop(out):
    model = valid_model()
    model.graph.node[0].input[0] = "relu:0"
    return model.SerializeToString()


def duplicate_output(out):
    model = valid_model()
    model.graph.node.append(helper.make_node("Neg", ["x:0"], ["relu:0"], name="model/Neg"))
    return model.SerializeToString()


def duplicate_attribute(out):
    model = valid_model()
    node = model.graph.node[0]
    node.op_type = "LeakyRelu"
    node.attribute.extend([helper.make_attribute("alpha", 0.1), helper.make_attribute("alpha", 0.2)])
    return model.SerializeToString()


def unimported_domain(out):
    model = valid_model()
    model.graph.node[0].domain = "com.example"
    return model.SerializeToString()


def future_opset(out):
    model = valid_model()
    model.opset_import[0].version = 99
    return model.SerializeToString()


def unknown_op(out):
    model = valid_model()
    model.graph.node[0].op_type = "Frobnicate"
    return model.SerializeToString()


def unknown_attribute(out):
    # Relu has no attributes; the loader leaves undeclared attributes to
    # ONNX's checker.
    model = valid_model()
    model.graph.node[0].attribute.append(helper.make_attribute("colour", 1))
    return model.SerializeToString()


def custom_domain(out):
    model = valid_model()
    model.graph.node[0].domain = "com.example"
    model.graph.node[0].op_type = "Frobnicate"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model.SerializeToString()


def wrong_attribute_type(out):
    # Cast's `to` must be an INT; a FLOAT is given. The input is a constant,
    # so fold-constants evaluates the node and reads the attribute.
    model = make_model(
        [helper.make_node("Cast", ["bias:0"], ["cast:0"], name="model/Cast", to=1.0),
         helper.make_node("Add", ["x:0", "cast:0"], ["y:0"], name="model/Add")],
        initializers=[bias()])
    return model.SerializeToString()


def raw_data_short(out):
    model = valid_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:12]
    return model.SerializeToString()


def raw_data_long(out):
    model = valid_model()
    model.graph.initializer[0].raw_data += b"\0" * 4
    return model.SerializeToString()


def dims_overflow(out):
    model = valid_model()
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([1 << 40, 1 << 40])
    return model.SerializeToString()


def bytes_overflow(out):
    # 2^62 elements fit in int64; 2^62 floats need 2^64 bytes, which does not.
    model = valid_model()
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.append(1 << 62)
    return model.SerializeToString()


def input_dims_negative(out):
    model = make_model([helper.make_node("Size", ["x:0"], ["y:0"], name="model/Size")],
                       inputs=[value_info("x:0", [-5, 3])],
                       outputs=[value_info("y:0", [], TensorProto.INT64)])
    return model.SerializeToString()


def input_dims_overflow(out):
    # Size(x:0) would fold to the product of the dims, 2^124, which wraps to 0.
    model = make_model([helper.make_node("Size", ["x:0"], ["y:0"], name="model/Size")],
                       inputs=[value_info("x:0", [1 << 62, 1 << 62])],
                       outputs=[value_info("y:0", [], TensorProto.INT64)])
    return model.SerializeToString()


def huge_constant_of_shape(out):
    # ConstantOfShape to [2^20, 2^20, 2^10] floats: 4 PiB, far more than any
    # machine has. Folding must skip it or fail, without trying to allocate.
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1 << 10], np.int64), "shape:0")
    model = make_model(
        [helper.make_node("ConstantOfShape", ["shape:0"], ["zeros:0"], name="model/Zeros",
                          value=numpy_helper.from_array(np.array([0], np.float32))),
         helper.make_node("ReduceSum", ["zeros:0"], ["sum:0"], name="model/Sum", keepdims=0),
         helper.make_node("Add", ["x:0", "sum:0"], ["y:0"], name="model/Add")],
        initializers=[shape])
    return model.SerializeToString()


def huge_constant_of_shape_overflow(out):
    # [2^31, 2^31] floats: 2^62 elements, whose byte size (2^64) overflows
    # 64 bits.
    shape = numpy_helper.from_array(np.array([1 << 31, 1 << 31], np.int64), "shape:0")
    model = make_model(
        [helper.make_node("ConstantOfShape", ["shape:0"], ["zeros:0"], name="model/Zeros",
                          value=numpy_helper.from_array(np.array([0], np.float32))),
         helper.make_node("ReduceSum", ["zeros:0"], ["sum:0"], name="model/Sum", keepdims=0),
         helper.make_node("Add", ["x:0", "sum:0"], ["y:0"], name="model/Add")],
        initializers=[shape])
    return model.SerializeToString()


def huge_expand(out):
    # Expand of a constant to [2^31, 2^31] floats: 16 EiB.
    shape = numpy_helper.from_array(np.array([1 << 31, 1 << 31], np.int64), "shape:0")
    model = make_model(
        [helper.make_node("Expand", ["bias:0", "shape:0"], ["wide:0"], name="model/Expand"),
         helper.make_node("ReduceMax", ["wide:0"], ["max:0"], name="model/Max", keepdims=0),
         helper.make_node("Add", ["x:0", "max:0"], ["y:0"], name="model/Add")],
        initializers=[bias(dims=(1,)), shape])
    return model.SerializeToString()


def write_weights(out, size=64):
    folder = os.path.dirname(os.path.abspath(out))
    with open(os.path.join(folder, "weights.bin"), "wb") as data:
        data.write(np.arange(size // 4, dtype=np.float32).tobytes())


def external_parent(out):
    folder = os.path.dirname(os.path.abspath(out))
    parent = os.path.dirname(folder)
    with open(os.path.join(parent, "outside.bin"), "wb") as data:
        data.write(b"\0" * 16)
    model = valid_model()
    external(model.graph.initializer[0], "../outside.bin", 0, 16)
    return model.SerializeToString()


def external_absolute(out):
    write_weights(out)
    folder = os.path.dirname(os.path.abspath(out))
    model = valid_model()
    external(model.graph.initializer[0], os.path.join(folder, "weights.bin"), 0, 16)
    return model.SerializeToString()


def external_symlink(out):
    # A link inside the folder that points at a file outside it.
    folder = os.path.dirname(os.path.abspath(out))
    parent = os.path.dirname(folder)
    target = os.path.join(parent, "outside.bin")
    with open(target, "wb") as data:
        data.write(b"\0" * 16)
    link = os.path.join(folder, "link.bin")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(target, link)
    model = valid_model()
    external(model.graph.initializer[0], "link.bin", 0, 16)
    return model.SerializeToString()


def external_offset_past_end(out):
    write_weights(out)
    model = valid_model()
    external(model.graph.initializer[0], "weights.bin", 80, 16)
    return model.SerializeToString()


def external_length_past_end(out):
    write_weights(out)
    model = valid_model()
    external(model.graph.initializer[0], "weights.bin", 56, 16)
    return model.SerializeToString()


def external_missing_file(out):
    model = valid_model()
    external(model.graph.initializer[0], "absent.bin", 0, 16)
    return model.SerializeToString()


def external_valid(out):
    write_weights(out)
    model = valid_model()
    external(model.graph.initializer[0], "weights.bin", 16, 16)
    return model.SerializeToString()


KINDS = {name.replace("_", "-"): function for name, function in list(globals().items())
         if callable(function) and function.__module__ == __name__ and
         function.__code__.co_varnames[:1] == ("out",) and name != "write_weights"}


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(sorted(KINDS)))
        return
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: make_bad_model.py KIND OUT; KIND is one of: {', '.join(sorted(KINDS))}")
    kind, out = sys.argv[1:]
    data = KINDS[kind](out)
    with open(out, "wb") as handle:
        handle.write(data)


if __name__ == "__main__":
    main()
