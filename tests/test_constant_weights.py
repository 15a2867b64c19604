"""Plans with constant weights (pask_plan_set_constant_weights): the CPU
solvers that pack their weights ahead (conv2d.implicit_gemm_nhwc,
conv2d.indirect_gemm_nhwc, conv2d.gemm_1x1, conv2d.depthwise in NHWC) keep a packed copy per plan; executions with the
declared weights read it, every other call reads its weights anew."""

import numpy as np
import pytest

import paskdnn
import reference as ref
from paskdnn import _lib, _spec
from nan_reference import cpu_isas

ISAS = cpu_isas()

# (solver, C, H, W, O, k, stride, pad, groups, weight_layout)
CASES = [("conv2d.implicit_gemm_nhwc", 16, 9, 10, 40, 3, 1, 1, 1, "OHWI"),
         ("conv2d.implicit_gemm_nhwc", 24, 8, 7, 70, 3, 2, 1, 1, "OIHW"),
         ("conv2d.implicit_gemm_nhwc", 12, 7, 7, 36, 3, 1, 1, 3, "OHWI"),
         ("conv2d.implicit_gemm_nhwc", 300, 5, 5, 33, 1, 2, 0, 1, "OHWI"),  # K past one block
         ("conv2d.indirect_gemm_nhwc", 16, 9, 10, 40, 3, 1, 1, 1, "OHWI"),
         ("conv2d.indirect_gemm_nhwc", 24, 8, 7, 70, 3, 2, 1, 1, "OIHW"),
         ("conv2d.indirect_gemm_nhwc", 12, 7, 7, 36, 3, 1, 1, 3, "OHWI"),
         ("conv2d.indirect_gemm_nhwc", 300, 5, 5, 133, 1, 2, 0, 1, "OHWI"),  # past one panel
         ("conv2d.indirect_gemm_nhwc", 130, 9, 9, 20, 3, 1, 1, 1, "OHWI"),  # K past one block
         ("conv2d.gemm_1x1", 64, 6, 7, 130, 1, 1, 0, 1, "OHWI"),
         ("conv2d.gemm_1x1", 20, 5, 5, 33, 1, 1, 0, 1, "OIHW"),
         ("conv2d.depthwise", 32, 9, 10, 32, 3, 1, 1, 32, "OHWI"),
         ("conv2d.depthwise", 20, 7, 9, 40, 3, 2, 1, 20, "OIHW"),  # multiplier 2
         ("conv2d.depthwise", 48, 3, 7, 48, 3, 1, 1, 48, "OHWI")]  # 6 rows on 2 threads: rows split in columns


def _case(c, h, w, o, k, s, p, g, wl, seed):
    rng = np.random.default_rng(seed)
    x = ref.rand32(rng, (2, c, h, w))
    wt = ref.rand32(rng, (o, c // g, k, k))
    b = ref.rand32(rng, (o,))
    want = ref.conv2d_ref(x, wt, b, s, p, 1, g, "relu")
    bound = ref.conv2d_bound(x, wt, b, s, p, 1, g)
    win = ref.oihw_to_ohwi(wt) if wl == "OHWI" else wt.copy()
    return ref.nchw_to_nhwc(x), win, b, want, bound


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "%s_c%d_%dx%d_o%d_k%d_s%d_p%d_g%d_%s" % c)
def test_constant_weights_plan_matches_reference_and_reads_new_weights(isa, case, ctx_for):
    solver, c, h, w, o, k, s, p, g, wl = case
    ctx = ctx_for(solver, isa)
    x, wt, b, want, bound = _case(c, h, w, o, k, s, p, g, wl, sum(case[1:9]))
    y = np.zeros(want.shape, np.float32).transpose(0, 2, 3, 1).copy()
    spec = _spec.conv2d_spec(x, wt, b, s, p, 1, g, layout="NHWC", weight_layout=wl, activation="relu", out=y)
    call = _spec.prepare(spec, ctx, constant_weights=True)
    for _ in range(3):  # the first call packs, the later ones read the packed copy
        y.fill(np.nan)
        call()
        assert paskdnn.last_solver() == solver
        ref.assert_within_bound(ref.nhwc_to_nchw(y), want, bound, what=f"{solver} {isa}")
    # an eager call with other weights of the same shape reads them (the plan's copy is its own)
    wt2 = (wt * -0.5).astype(np.float32)
    w64 = ref.ohwi_to_oihw(wt2) if wl == "OHWI" else wt2
    y2 = paskdnn.conv2d(x, wt2, b, s, p, 1, g, layout="NHWC", weight_layout=wl, activation="relu", context=ctx)
    x64 = ref.nhwc_to_nchw(x)
    ref.assert_within_bound(ref.nhwc_to_nchw(y2), ref.conv2d_ref(x64, w64, b, s, p, 1, g, "relu"),
                            ref.conv2d_bound(x64, w64, b, s, p, 1, g))
    # and the plan still reads its packed copy of the declared weights
    call()
    ref.assert_within_bound(ref.nhwc_to_nchw(y), want, bound, what=f"{solver} {isa} again")


def test_declaration_withdrawn_reads_weights_anew(ctx_for):
    ffi, lib = _lib.load()
    ctx = ctx_for("conv2d.implicit_gemm_nhwc", ISAS[0])
    x, wt, b, want, bound = _case(16, 6, 6, 20, 3, 1, 1, 1, "OHWI", 7)
    y = np.zeros(want.shape, np.float32).transpose(0, 2, 3, 1).copy()
    spec = _spec.conv2d_spec(x, wt, b, 1, 1, 1, 1, layout="NHWC", weight_layout="OHWI", activation="relu", out=y)
    call = _spec.prepare(spec, ctx, constant_weights=True)
    call()
    ref.assert_within_bound(ref.nhwc_to_nchw(y), want, bound)
    first = y.copy()
    wt *= -1.0  # breaks the promise: the packed copy (made by the first call) still serves
    call()
    np.testing.assert_array_equal(y, first)
    _lib.check(lib.pask_plan_set_constant_weights(call.plan, ffi.NULL))  # withdrawn: w is read again
    call()
    x64 = ref.nhwc_to_nchw(x)
    ref.assert_within_bound(ref.nhwc_to_nchw(y), ref.conv2d_ref(x64, ref.ohwi_to_oihw(wt), b, 1, 1, 1, 1, "relu"),
                            bound)


def test_constant_weights_are_for_conv2d_plans():
    ffi, lib = _lib.load()
    ctx = paskdnn.Context(num_threads=1)
    a = np.ones((4, 4), np.float32)
    spec = _spec.gemm_spec(a, a)
    call = _spec.prepare(spec, ctx)
    assert lib.pask_plan_set_constant_weights(call.plan, ffi.cast("void *", 1)) == lib.PASK_ERROR_INVALID_ARGUMENT
    assert lib.pask_plan_set_constant_weights(ffi.NULL, ffi.NULL) == lib.PASK_ERROR_NULL_POINTER


@pytest.mark.parametrize("solver", ["conv2d.implicit_gemm_nhwc", "conv2d.indirect_gemm_nhwc", "conv2d.gemm_1x1",
                                    "conv2d.depthwise"])
def test_pack_weights_ahead_of_the_first_execution(solver, ctx_for):
    """pask_plan_pack_weights packs for the resident kernel before any execution:
    weights changed in place afterwards (the promise broken on purpose) no longer
    reach the result, which shows the first execution read the packed copy."""
    ffi, lib = _lib.load()
    ctx = ctx_for(solver, ISAS[0])
    k = 1 if solver == "conv2d.gemm_1x1" else 3
    o, g = (16, 16) if solver == "conv2d.depthwise" else (40, 1)
    x, wt, b, want, bound = _case(16, 6, 7, o, k, 1, k // 2, g, "OHWI", 11)
    y = np.zeros(want.shape, np.float32).transpose(0, 2, 3, 1).copy()
    spec = _spec.conv2d_spec(x, wt, b, 1, k // 2, 1, g, layout="NHWC", weight_layout="OHWI", activation="relu", out=y)
    call = _spec.prepare(spec, ctx, constant_weights=True)
    packed = ffi.new("int *", 7)
    _lib.check(lib.pask_plan_pack_weights(call.plan, packed))
    if not packed[0]:  # the kernel was not resident yet: load it through an eager call, then pack
        paskdnn.conv2d(x, wt.copy(), b, 1, k // 2, 1, g, layout="NHWC", weight_layout="OHWI", activation="relu",
                       context=ctx)
        _lib.check(lib.pask_plan_pack_weights(call.plan, packed))
    assert packed[0] == 1
    wt *= -1.0
    call()
    assert paskdnn.last_solver() == solver
    ref.assert_within_bound(ref.nhwc_to_nchw(y), want, bound, what=f"{solver} packed ahead")


def test_pack_weights_without_constant_weights_packs_nothing():
    ffi, lib = _lib.load()
    ctx = paskdnn.Context(num_threads=1)
    rng = np.random.default_rng(3)
    x, wt = ref.rand32(rng, (1, 4, 5, 5)), ref.rand32(rng, (8, 4, 3, 3))
    call = _spec.prepare(_spec.conv2d_spec(x, wt, None, 1, 1), ctx)
    packed = ffi.new("int *", 7)
    _lib.check(lib.pask_plan_pack_weights(call.plan, packed))
    assert packed[0] == 0
    _lib.check(lib.pask_plan_pack_weights(call.plan, ffi.NULL))
    assert lib.pask_plan_pack_weights(ffi.NULL, packed) == lib.PASK_ERROR_NULL_POINTER
