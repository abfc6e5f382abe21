"""The binding on the CPU backend with numpy arrays (what CI runs), against fp64 numpy."""

import math
import os
import subprocess
import sys
import threading

import pytest

np = pytest.importorskip("numpy")
import flashsci  # noqa: E402

try:
    flashsci.lib()
except OSError as e:  # not built: say so loudly rather than pass
    pytest.fail(f"libflashsci not found: {e}", pytrace=False)


def reference(q, k, v, mask="none", scale=None, window=(-1, -1), softcap=0.0, alibi_slopes=None):
    """Naive fp64 attention in [batch, seqlen, heads, head_dim]; lse [batch, heads, seqlen_q]."""
    q, k, v = (np.asarray(x, dtype=np.float64).transpose(0, 2, 1, 3) for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ k.transpose(0, 1, 3, 2)
    sq, sk = s.shape[-2:]
    rows, cols = np.arange(sq)[:, None], np.arange(sk)[None, :]
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    if alibi_slopes is not None:
        s = s - np.asarray(alibi_slopes, dtype=np.float64)[:, None, None] * np.abs(rows + sk - sq - cols)
    keep = np.ones((sq, sk), dtype=bool)
    if mask != "none":
        keep &= cols <= rows + (0 if mask == "causal" else sk - sq)
    diagonal = rows + (0 if mask == "causal" else sk - sq)
    if window[0] >= 0:
        keep &= cols >= diagonal - window[0]
    if window[1] >= 0:
        keep &= cols <= diagonal + window[1]
    s = np.where(keep, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = (np.log(l) + m)[..., 0]
        o = np.where(l > 0, (p @ v) / np.where(l > 0, l, 1), 0.0)
    return o.transpose(0, 2, 1, 3), lse


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns (round to nearest even) as uint16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_version_and_loader():
    major, minor, patch = map(int, flashsci.version_string().split("."))
    assert flashsci.version() == major * 10000 + minor * 100 + patch
    assert major == flashsci._lib.ABI_MAJOR
    expected = os.environ.get("FLASHSCI_TEST_EXPECT_LOADER")  # CI: how the install must be found
    if expected:
        assert flashsci.lib().found_by == expected, flashsci.library_path()


@pytest.mark.parametrize("mask", ["none", "causal", "causal_bottom_right"])
def test_fp32_gqa_strided_matches_fp64(mask):
    q = rand(2, 33, 4, 16, seed=1)
    kv = rand(2, 17, 2, 2, 16, seed=2)  # packed k/v: strided views, GQA 4:2
    k, v = kv[:, :, 0], kv[:, :, 1]
    causal = mask != "none"
    alignment = "bottom_right" if mask == "causal_bottom_right" else "top_left"
    out, lse = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True)
    ref, ref_lse = reference(q, k, v, mask)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == q.shape
    assert lse.dtype == np.float32 and lse.shape == (2, 4, 33)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-5, rtol=1e-5)
    if mask == "causal_bottom_right":  # seqlen_q 33 > seqlen_k 17: the first 16 rows see no key
        assert np.all(lse[:, :, :16] == -np.inf) and np.all(out[:, :16] == 0)


@pytest.mark.parametrize("mask", ["none", "causal", "causal_bottom_right"])
def test_window_softcap_alibi_match_fp64(mask):
    q, k, v = rand(2, 40, 4, 16, seed=11), rand(2, 23, 2, 16, seed=12), rand(2, 23, 2, 16, seed=13)
    causal = mask != "none"
    alignment = "bottom_right" if mask == "causal_bottom_right" else "top_left"
    slopes = [0.5, 0.25, 0.125, 0.0625]
    for window, softcap, alibi in [((5, 3), 0.0, None), ((-1, 2), 2.0, None), ((-1, -1), 0.0, slopes),
                                   ((0, 0), 1.5, slopes)]:
        out, lse = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True,
                                      window=window, softcap=softcap, alibi_slopes=alibi)
        ref, ref_lse = reference(q, k, v, mask, window=window, softcap=softcap, alibi_slopes=alibi)
        np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(lse, ref_lse, atol=1e-5, rtol=1e-5)


def test_feature_setters_reject_bad_values():
    plan = flashsci.Plan("cpu")
    with pytest.raises(flashsci.Error, match="window_left"):
        plan.set_window(-2, 0)
    with pytest.raises(flashsci.Error, match="softcap"):
        plan.set_softcap(-1.0)
    with pytest.raises(flashsci.Error, match="set_shape"):
        plan.set_alibi_slopes([1.0])
    plan.set_shape(1, 4, 4, 2, 1, 8)
    with pytest.raises(ValueError, match="heads_q"):
        plan.set_alibi_slopes([1.0])
    plan.set_alibi_slopes([1.0, 0.5]).set_alibi_slopes(None).set_window(3, -1).set_softcap(0.0)


def test_float16_and_custom_scale():
    q, k, v = (rand(1, 40, 2, 32, seed=s).astype(np.float16) for s in (3, 4, 5))
    out = flashsci.attention(q, k, v, scale=0.3)
    assert out.dtype == np.float16
    ref, _ = reference(q, k, v, scale=0.3)
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=1e-2)


def test_bfloat16_as_uint16_bits():
    qf, kf, vf = (rand(1, 64, 2, 64, seed=s) for s in (6, 7, 8))
    q, k, v = bf16_bits(qf), bf16_bits(kf), bf16_bits(vf)
    with pytest.raises(TypeError, match="dtype='bfloat16'"):
        flashsci.attention(q, k, v)
    out, lse = flashsci.attention(q, k, v, causal=True, dtype="bfloat16", return_lse=True)
    assert out.dtype == np.uint16
    ref, ref_lse = reference(from_bf16(q), from_bf16(k), from_bf16(v), "causal")
    np.testing.assert_allclose(from_bf16(out), ref, atol=1e-2, rtol=1e-2)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-4, rtol=1e-4)


def test_bfloat16_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q, k, v = (rand(2, 24, 2, 32, seed=s).astype(ml_dtypes.bfloat16) for s in (9, 10, 11))
    out = flashsci.attention(q, k, v)
    assert out.dtype == ml_dtypes.bfloat16
    ref, _ = reference(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=1e-2, rtol=1e-2)


def test_out_argument_is_written_and_returned():
    q, k, v = (rand(1, 8, 2, 8, seed=s) for s in (12, 13, 14))
    out = np.full_like(q, np.nan)
    assert flashsci.attention(q, k, v, out=out) is out
    np.testing.assert_allclose(out, reference(q, k, v)[0], atol=1e-5)
    ro = np.zeros_like(q)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        flashsci.attention(q, k, v, out=ro)


def test_library_errors_carry_status_and_message():
    q = rand(1, 4, 2, 12)  # head_dim 12 is not a multiple of 8
    with pytest.raises(flashsci.Error) as info:
        flashsci.attention(q, q, q)
    assert info.value.status == flashsci._lib.STATUS_INVALID_VALUE
    assert info.value.status_name == "INVALID_VALUE"
    assert "head_dim" in info.value.message and "12" in info.value.message
    assert "INVALID_VALUE" in str(info.value)
    q8 = rand(1, 4, 3, 8)
    with pytest.raises(flashsci.Error, match="heads_kv"):
        flashsci.attention(q8, rand(1, 4, 2, 8), rand(1, 4, 2, 8))


def test_argument_errors_before_the_library():
    q = rand(1, 4, 2, 8)
    with pytest.raises(TypeError, match="share a dtype"):
        flashsci.attention(q, q.astype(np.float16), q)
    with pytest.raises(ValueError, match="4-D"):
        flashsci.attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="contiguous last dimension"):
        t = rand(1, 4, 8, 2).transpose(0, 1, 3, 2)
        flashsci.attention(t, t, t)
    with pytest.raises(TypeError, match="float16, float32"):
        flashsci.attention(q.astype(np.float64), q.astype(np.float64), q.astype(np.float64))
    with pytest.raises(TypeError, match="expected a torch tensor"):
        flashsci.attention([1.0], q, q)
    with pytest.raises(ValueError, match="stream"):
        flashsci.attention(q, q, q, stream=5)


def test_reusable_plan_checks_arrays():
    shape = (2, 16, 16, 4, 1, 32)  # MQA
    q, k, v = rand(2, 16, 4, 32, seed=15), rand(2, 16, 1, 32, seed=16), rand(2, 16, 1, 32, seed=17)
    with flashsci.Plan("cpu") as plan:
        assert plan.set_shape(*shape).set_dtype("fp32").set_mask("causal") is plan
        assert plan.backend == "cpu" and plan.kernel_name.startswith("cpu_") and plan.workspace_size >= 0
        out, lse = np.empty_like(q), np.empty((2, 4, 16), np.float32)
        for _ in range(2):
            plan.forward(q, k, v, out, lse)
        ref, ref_lse = reference(q, k, v, "causal")
        np.testing.assert_allclose(out, ref, atol=1e-5)
        np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
        with pytest.raises(ValueError, match="shape"):
            plan.forward(q[:1], k, v, out)
        with pytest.raises(TypeError, match="float16"):
            plan.forward(q.astype(np.float16), k, v, out)
        with pytest.raises(ValueError, match="strides"):
            plan.forward(np.asfortranarray(q), k, v, out)
        with pytest.raises(ValueError, match="lse"):
            plan.forward(q, k, v, out, np.empty((2, 16, 4), np.float32))
        # Raw pointers pass through unchecked.
        out2 = np.empty_like(q)
        plan.forward(q.ctypes.data, k.ctypes.data, v.ctypes.data, out2.ctypes.data)
        np.testing.assert_array_equal(out, out2)
        # BHSD q and o through set_strides.
        qb = np.ascontiguousarray(q.transpose(0, 2, 1, 3))
        ob = np.empty_like(qb)
        plan.set_strides("q", 4 * 16 * 32, 32, 16 * 32).set_strides("o", 4 * 16 * 32, 32, 16 * 32)
        plan.forward(qb.transpose(0, 2, 1, 3), k, v, ob.transpose(0, 2, 1, 3))
        np.testing.assert_allclose(ob.transpose(0, 2, 1, 3), ref, atol=1e-5)
        with pytest.raises(flashsci.Error) as info:
            plan.set_softmax_scale(-1.0)
        assert info.value.status == flashsci._lib.STATUS_INVALID_VALUE
    assert plan.handle is None


def test_cuda_plan_without_gpu_is_no_device():
    try:
        plan = flashsci.Plan("cuda")
    except flashsci.Error as e:
        assert e.status == flashsci._lib.STATUS_NO_DEVICE, e
    else:  # a GPU machine
        assert plan.backend == "cuda"
    assert flashsci.Plan("auto").backend in ("cpu", "cuda")
    with pytest.raises(ValueError, match="backend"):
        flashsci.Plan("tpu")


class DLPackOnly:
    """Exposes an array through DLPack alone."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class ArrayInterfaceOnly:
    def __init__(self, a):
        self._a = a
        self.__array_interface__ = a.__array_interface__


def test_dlpack_and_array_interface_objects():
    if not hasattr(np.ndarray, "__dlpack__"):
        pytest.skip("numpy without DLPack")
    q, k, v = (rand(1, 12, 2, 16, seed=s) for s in (18, 19, 20))
    kv = rand(1, 12, 2, 2, 16, seed=21)[:, :, :, 1]  # strided: DLPack strides are read
    ref = flashsci.attention(q, k, kv)
    got = flashsci.attention(DLPackOnly(q), DLPackOnly(k), DLPackOnly(kv))
    np.testing.assert_array_equal(got, ref)
    got = flashsci.attention(ArrayInterfaceOnly(q), ArrayInterfaceOnly(k), ArrayInterfaceOnly(kv))
    np.testing.assert_array_equal(got, ref)
    del v


def test_concurrent_calls_from_threads():
    q, k, v = (rand(1, 96, 4, 32, seed=s) for s in (22, 23, 24))
    expected = flashsci.attention(q, k, v, causal=True)
    results, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = flashsci.attention(q, k, v, causal=True)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, expected)


def _loaded_library_file():
    with open("/proc/self/maps") as f:
        for line in f:
            if "libflashsci.so" in line:
                return line.split()[-1]
    raise AssertionError("libflashsci is not mapped")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_found_in_the_package_folder_and_explicit_path_errors(tmp_path):
    import shutil

    pkg = os.path.dirname(flashsci.__file__)
    shutil.copytree(pkg, tmp_path / "flashsci", ignore=shutil.ignore_patterns("*.so*", "__pycache__"))
    shutil.copy(_loaded_library_file(), tmp_path / "flashsci" / "libflashsci.so")
    env = {k: v for k, v in os.environ.items() if k not in ("FLASHSCI_LIBRARY", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(tmp_path)
    code = "import flashsci; print(flashsci.lib().found_by, flashsci.library_path())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("package folder " + str(tmp_path)), out.stdout

    env["FLASHSCI_LIBRARY"] = str(tmp_path / "nowhere" / "libflashsci.so")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0 and "libflashsci not found" in out.stderr and "nowhere" in out.stderr


class FakeCudaArray:
    """A __cuda_array_interface__ v3 description of device memory that is never touched."""

    def __init__(self, shape, typestr="<f2", strides=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x7F0000000000, False),
                                         "strides": strides, "version": 3, "stream": 1}


def test_cuda_array_interface_is_read_and_sent_to_the_cuda_backend():
    try:
        flashsci.Plan("cuda")
        pytest.skip("a GPU exists: test_gpu.py covers CUDA arrays")
    except flashsci.Error:
        pass
    q = FakeCudaArray((1, 16, 2, 64))
    kv = FakeCudaArray((1, 16, 1, 64), strides=(16 * 2 * 64 * 2, 2 * 64 * 2, 64 * 2, 2))  # packed: read strides
    with pytest.raises(flashsci.Error) as info:
        flashsci.attention(q, kv, kv, out=FakeCudaArray((1, 16, 2, 64)))
    assert info.value.status == flashsci._lib.STATUS_NO_DEVICE
    with pytest.raises(TypeError, match="dtype='bfloat16'"):
        flashsci.attention(*(FakeCudaArray((1, 16, 2, 64), "<u2"),) * 3)
    with pytest.raises(ValueError, match="one device"):
        flashsci.attention(q, rand(1, 16, 2, 64).astype(np.float16), q)
