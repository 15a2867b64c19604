"""The eager memo (paskdnn/_spec.py ``eager``): a conv2d or linear call whose
arguments (but for the arrays' addresses) were seen before on a context runs
the remembered plan without normalising its arguments again. These tests
check that such calls compute what the float64 reference does with the new
arrays, that the memo is really taken, and that every check the full path makes
still raises after an entry exists."""
import numpy as np
import pytest

import paskdnn
from paskdnn import _spec
from paskdnn import functional as Fn
from reference import assert_within_bound, conv2d_bound, conv2d_ref, linear_bound, linear_ref


def _conv_case(rng, n=2, c=3, h=7, w=6, o=5, k=3):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    return x, wt, b


def _memo_keys(ctx):
    return [k for k in list(_spec.MEMO) if k[0] is ctx._handle or k[0] == ctx._handle]


@pytest.fixture
def ctx():
    c = paskdnn.Context("cpu")
    yield c
    c.close()


def test_repeated_conv2d_calls_with_new_arrays_match_the_reference(ctx):
    rng = np.random.default_rng(11)
    for i in range(4):  # new arrays (new addresses, new contents) every call
        x, w, b = _conv_case(rng)
        r = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
        y = Fn.conv2d(x, w, b, (2, 2), (1, 1), 1, 1, activation="relu", residual=r, context=ctx)
        ref = conv2d_ref(x, w, b, stride=2, padding=1, activation="relu", residual=r)
        assert_within_bound(y, ref, conv2d_bound(x, w, b, stride=2, padding=1, residual=r), what=f"call {i}")
    assert len(_memo_keys(ctx)) == 1


def test_out_and_alpha_beta_through_the_memo(ctx):
    rng = np.random.default_rng(12)
    for i in range(3):
        x, w, b = _conv_case(rng)
        out = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
        before = out.copy()
        y = Fn.conv2d(x, w, b, padding=1, alpha=0.5, beta=-1.5, activation="leaky_relu",
                      activation_params=(0.2,), out=out, context=ctx)
        assert y is out
        ref = conv2d_ref(x, w, b, padding=1, alpha=0.5, beta=-1.5, out_before=before,
                         activation="leaky_relu", activation_params=(0.2,))
        assert_within_bound(y, ref, conv2d_bound(x, w, b, padding=1, alpha=0.5, beta=-1.5, out_before=before),
                            what=f"call {i}")
    assert len(_memo_keys(ctx)) == 1


def test_linear_through_the_memo_keeps_leading_dims(ctx):
    rng = np.random.default_rng(13)
    for i in range(3):
        x = rng.standard_normal((2, 3, 9)).astype(np.float32)
        w = rng.standard_normal((4, 9)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        y = Fn.linear(x, w, b, activation="sigmoid", context=ctx)
        assert y.shape == (2, 3, 4)
        assert_within_bound(y, linear_ref(x, w, b, "sigmoid"), linear_bound(x, w, b), what=f"call {i}")
    assert len(_memo_keys(ctx)) == 1


def test_a_remembered_call_skips_normalisation(ctx, monkeypatch):
    rng = np.random.default_rng(14)
    x, w, b = _conv_case(rng)
    Fn.conv2d(x, w, b, padding=1, context=ctx)

    def fail(*args, **kwargs):
        raise AssertionError("normalised again")

    monkeypatch.setattr(_spec, "conv2d_spec", fail)
    x2, w2, b2 = _conv_case(rng)
    y = Fn.conv2d(x2, w2, b2, padding=1, context=ctx)
    assert_within_bound(y, conv2d_ref(x2, w2, b2, padding=1), conv2d_bound(x2, w2, b2, padding=1))
    with pytest.raises(AssertionError, match="normalised again"):  # another key is normalised
        Fn.conv2d(x2, w2, b2, padding=2, context=ctx)


def test_checks_still_raise_after_an_entry_exists(ctx):
    rng = np.random.default_rng(15)
    x, w, b = _conv_case(rng)
    out = np.empty((2, 5, 7, 6), np.float32)
    Fn.conv2d(x, w, b, 1, 1, 1, 1, context=ctx)
    Fn.conv2d(x, w, b, 1, 1, 1, 1, out=out, context=ctx)
    strided = np.asfortranarray(x)  # same shape and dtype, not C-contiguous
    with pytest.raises(ValueError, match="C-contiguous"):
        Fn.conv2d(strided, w, b, 1, 1, 1, 1, context=ctx)
    with pytest.raises(TypeError):
        Fn.conv2d(x, w, b, 1.0, 1, 1, 1, context=ctx)  # 1.0 == 1 as a dict key, not as a stride
    with pytest.raises(TypeError):
        Fn.conv2d(x, w, b, 1, 1, 1, True, context=ctx)
    with pytest.raises(TypeError, match="float32"):
        Fn.conv2d(x.astype(np.float64), w, b, 1, 1, 1, 1, context=ctx)
    ro = np.empty_like(out)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        Fn.conv2d(x, w, b, 1, 1, 1, 1, out=ro, context=ctx)
    with pytest.raises(ValueError, match="C-contiguous"):
        Fn.conv2d(x, w, b, 1, 1, 1, 1, out=np.asfortranarray(out), context=ctx)
    with pytest.raises(ValueError, match="GPU contexts only"):
        Fn.conv2d(x, w, b, 1, 1, 1, 1, context=ctx, stream=0)


def test_close_forgets_the_memo_and_later_calls_raise():
    rng = np.random.default_rng(16)
    x, w, b = _conv_case(rng)
    c = paskdnn.Context("cpu")
    Fn.conv2d(x, w, b, padding=1, context=c)
    Fn.linear(x.reshape(2, -1), rng.standard_normal((3, 126)).astype(np.float32), context=c)
    assert len(_memo_keys(c)) == 2
    handle = c._handle
    c.close()
    assert not [k for k in list(_spec.MEMO) if k[0] == handle]
    with pytest.raises(ValueError, match="closed"):
        Fn.conv2d(x, w, b, padding=1, context=c)


def test_the_memo_is_bounded(ctx):
    rng = np.random.default_rng(17)
    w = rng.standard_normal((2, 1, 1, 1)).astype(np.float32)
    for c in range(1, _spec.MEMO_MAX + 20):
        Fn.conv2d(rng.standard_normal((1, 1, 1, c)).astype(np.float32), w, context=ctx)
    assert len(_spec.MEMO) <= _spec.MEMO_MAX
