"""Index the Functions app exactly as Azure's Python worker does, and report every function it refuses.

Run with the worker's interpreter (Python 3.13 with `azure-functions-runtime`, see `make worker-venv`) from the
repository root: `python .ci/worker_index.py`. It imports `function_app.py` with the worker's own loader
(`azure_functions_runtime.loader.index_function_app`) after loading the binding registry, then runs
`process_indexed_function`, the step in which the worker builds each function's metadata and refuses bindings it
cannot serve (an annotation such as `dict[str, Any]` on an activity input is refused there, and one refusal fails
the whole app on Azure).

The host hands the worker its gRPC message classes (`protos`) at start-up. They are not published on PyPI, so
this script builds the few messages indexing constructs (`BindingInfo`, `RpcRetryOptions`, `RpcFunctionMetadata`)
as real protobuf classes from descriptors with the field names and enum values of the host's
`FunctionRpc.proto`. Each function is processed on its own so that every refusal is listed, not only the first.

Prints one JSON object: `{"python", "runtime", "indexed": [names], "refused": {name: reason}}`; exits 1 when any
function is refused or the app cannot be imported.
"""

from __future__ import annotations

import json
import os
import sys
import types
from importlib import metadata


def build_protos() -> types.SimpleNamespace:
    """The message classes the worker's indexing path uses, as real protobuf messages."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="ironlayer_worker_rpc.proto", package="AzureFunctionsRpcMessages",
                                               syntax="proto3", dependency=["google/protobuf/duration.proto"])

    def add_field(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int,
                  type_name: str = "", repeated: bool = False) -> None:
        added = message.field.add(name=name, number=number, type=kind,
                                  label=field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL)
        if type_name:
            added.type_name = type_name

    def add_map(message: descriptor_pb2.DescriptorProto, name: str, number: int, value_kind: int,
                value_type: str = "") -> None:
        entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
        entry = message.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        add_field(entry, "key", 1, field.TYPE_STRING)
        add_field(entry, "value", 2, value_kind, value_type)
        add_field(message, name, number, field.TYPE_MESSAGE, f".AzureFunctionsRpcMessages.{message.name}.{entry_name}",
                  repeated=True)

    binding = proto.message_type.add(name="BindingInfo")
    direction = binding.enum_type.add(name="Direction")
    for number, name in enumerate(("in", "out", "inout")):
        direction.value.add(name=name, number=number)
    data_type = binding.enum_type.add(name="DataType")
    for number, name in enumerate(("undefined", "string", "binary", "stream")):
        data_type.value.add(name=name, number=number)
    add_field(binding, "type", 2, field.TYPE_STRING)
    add_field(binding, "direction", 3, field.TYPE_ENUM, ".AzureFunctionsRpcMessages.BindingInfo.Direction")
    add_field(binding, "data_type", 4, field.TYPE_ENUM, ".AzureFunctionsRpcMessages.BindingInfo.DataType")
    add_map(binding, "properties", 5, field.TYPE_STRING)

    retry = proto.message_type.add(name="RpcRetryOptions")
    strategy = retry.enum_type.add(name="RetryStrategy")
    strategy.value.add(name="exponential_backoff", number=0)
    strategy.value.add(name="fixed_delay", number=1)
    add_field(retry, "max_retry_count", 2, field.TYPE_INT32)
    add_field(retry, "delay_interval", 3, field.TYPE_MESSAGE, ".google.protobuf.Duration")
    add_field(retry, "minimum_interval", 4, field.TYPE_MESSAGE, ".google.protobuf.Duration")
    add_field(retry, "maximum_interval", 5, field.TYPE_MESSAGE, ".google.protobuf.Duration")
    add_field(retry, "retry_strategy", 6, field.TYPE_ENUM, ".AzureFunctionsRpcMessages.RpcRetryOptions.RetryStrategy")

    metadata_message = proto.message_type.add(name="RpcFunctionMetadata")
    for number, name in ((4, "name"), (1, "directory"), (2, "script_file"), (3, "entry_point"), (9, "language"),
                         (13, "function_id")):
        add_field(metadata_message, name, number, field.TYPE_STRING)
    add_map(metadata_message, "bindings", 6, field.TYPE_MESSAGE, ".AzureFunctionsRpcMessages.BindingInfo")
    add_field(metadata_message, "is_proxy", 7, field.TYPE_BOOL)
    add_field(metadata_message, "raw_bindings", 10, field.TYPE_STRING, repeated=True)
    add_field(metadata_message, "managed_dependency_enabled", 14, field.TYPE_BOOL)
    add_field(metadata_message, "retry_options", 15, field.TYPE_MESSAGE, ".AzureFunctionsRpcMessages.RpcRetryOptions")
    add_map(metadata_message, "properties", 16, field.TYPE_STRING)

    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import duration_pb2

    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    classes = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"AzureFunctionsRpcMessages.{name}"))
               for name in ("BindingInfo", "RpcRetryOptions", "RpcFunctionMetadata")}
    return types.SimpleNamespace(**classes)


def main() -> int:
    from azure_functions_runtime import loader
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import Registry

    root = os.getcwd()
    sys.path.insert(0, root)  # the worker puts the function app's folder first on sys.path
    protos = build_protos()
    load_binding_registry()  # as the worker does on WorkerInitRequest, before indexing
    report: dict[str, object] = {"python": sys.version.split()[0],
                                 "runtime": metadata.version("azure-functions-runtime"),
                                 "indexed": [], "refused": {}}
    try:
        functions = loader.index_function_app(os.path.join(root, "function_app.py"))
    except Exception as exc:  # the worker fails the app the same way: report it
        report["refused"] = {"function_app.py": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(report, sort_keys=True))
        return 1
    indexed: list[str] = []
    refused: dict[str, str] = {}
    for function in functions:
        name = function.get_function_name()
        try:
            results, _ = loader.process_indexed_function(protos, Registry(), [function], root)
            if len(results) != 1 or results[0].name != name:
                raise RuntimeError(f"indexing produced {len(results)} metadata entries")
        except Exception as exc:
            refused[name] = f"{type(exc).__name__}: {exc}"
        else:
            indexed.append(name)
    report["indexed"], report["refused"] = sorted(indexed), refused
    print(json.dumps(report, sort_keys=True))
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
