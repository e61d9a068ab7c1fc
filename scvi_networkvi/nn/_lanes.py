"""Vector multiply-adds on a run of :data:`LANES` consecutive array elements, for numba kernels.

numba compiles with LLVM's loop vectorizer but not its SLP vectorizer (``NUMBA_SLP_VECTORIZE`` is off by default),
so a short fixed run of eight elements (one output block of a GO term, padded) stays scalar code however it is
written. These intrinsics emit the vector loads, fused multiply-adds and store themselves. No bounds or wraparound
checks: the callers index inside their arrays by construction.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Elements per run: one 256-bit register of float32.
LANES = 8


def _vector_fma(builder: ir.IRBuilder, dtype) -> tuple[ir.VectorType, ir.Function]:
    ltype = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
    vtype = ir.VectorType(ltype, LANES)
    name = f"llvm.fma.v{LANES}{'f32' if dtype == types.float32 else 'f64'}"
    return vtype, cgutils.get_or_insert_function(builder.module, ir.FunctionType(vtype, [vtype] * 3), name)


def _splat(builder: ir.IRBuilder, vtype: ir.VectorType, value) -> ir.Value:
    single = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(single, ir.Constant(vtype, ir.Undefined), mask)


def _pointer(context, builder, array_type, array, start, vtype):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [start]), vtype.as_pointer())


@intrinsic
def madd_lanes(typingctx, dst, dst_start, src, src_start, stride, scales):
    """``dst[i:i + LANES] += sum_k scales[k] * src[s + k * stride : s + k * stride + LANES]`` (``i = dst_start``).

    ``scales`` is a homogeneous tuple (its length fixed at compile time): one load and one store of ``dst`` for all
    of them. The ``src`` loads are marked invariant (the weights do not change during a kernel), so that LLVM may
    keep them in registers across calls in a loop.
    """
    if not (
        isinstance(dst, types.Array)
        and isinstance(src, types.Array)
        and dst.dtype == src.dtype
        and dst.dtype in (types.float32, types.float64)
        and isinstance(scales, types.UniTuple)
    ):
        return None
    dtype, count = dst.dtype, scales.count

    def codegen(context, builder, signature, args):
        dst_v, dst_i, src_v, src_i, step, values = args
        vtype, fma = _vector_fma(builder, dtype)
        target = _pointer(context, builder, signature.args[0], dst_v, dst_i, vtype)
        acc = builder.load(target, align=4)
        invariant = builder.module.add_metadata([])
        start = src_i
        for k in range(count):
            weights = builder.load(_pointer(context, builder, signature.args[2], src_v, start, vtype), align=4)
            weights.set_metadata("invariant.load", invariant)
            scale = context.cast(builder, builder.extract_value(values, k), scales.dtype, dtype)
            acc = builder.call(fma, [_splat(builder, vtype, scale), weights, acc])
            start = builder.add(start, step)
        builder.store(acc, target, align=4)
        return context.get_dummy_value()

    return types.void(dst, types.int64, src, types.int64, types.int64, scales), codegen
