"""Software prefetch for numba kernels (LLVM's ``llvm.prefetch``: a hint, never a fault).

Random reads and writes of large arrays (the walk's neighbour lookups, the graph build's
scattered result rows) wait on main memory; asking for the line early lets those waits overlap.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit(context, builder, array_type, array, indices, write: bool) -> None:
    view = context.make_array(array_type)(context, builder, array)
    pointer = cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)
    byte_pointer = ir.IntType(8).as_pointer()
    int32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]), "llvm.prefetch.p0i8"
    )
    # (address, 0 read / 1 write, locality 3 = keep in all cache levels, 1 = data cache)
    builder.call(function, [builder.bitcast(pointer, byte_pointer), int32(int(write)), int32(3), int32(1)])


@intrinsic
def prefetch_read(typingctx, array, index):
    """Prefetch ``array[index]`` (1-D array) for reading."""

    def codegen(context, builder, signature, args):
        _emit(context, builder, signature.args[0], args[0], [args[1]], write=False)
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def prefetch_write(typingctx, array, row, column):
    """Prefetch ``array[row, column]`` (2-D array) for writing."""

    def codegen(context, builder, signature, args):
        _emit(context, builder, signature.args[0], args[0], [args[1], args[2]], write=True)
        return context.get_dummy_value()

    return types.void(array, row, column), codegen
