"""The version checks at context creation and python -m paskdnn doctor, against the
CUDA/cuDNN and HIP/MIOpen test doubles (tests/doubles/*.cpp, built here): a missing
library, a too-old one, a wrong soname, an NVRTC that cannot target the device. The
doubles' version answers come from $PASKDNN_DOUBLE_<KEY> (read while paskdnn loads
them). Each case runs in a fresh process: paskdnn loads each driver once per process."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CXX = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
if CXX is None:
    pytest.skip("no C++ compiler to build the test doubles", allow_module_level=True)

_VARS = ("PASKDNN_LIBCUDA", "PASKDNN_NVRTC", "PASKDNN_CUDNN", "PASKDNN_HIP", "PASKDNN_HIPRTC", "PASKDNN_MIOPEN")


def _build(tmp_path_factory, source, name):
    out = tmp_path_factory.mktemp("doctor-doubles") / name
    subprocess.run([CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(out),
                    str(HERE / "doubles" / source), "-lpthread"], check=True)
    return str(out)


@pytest.fixture(scope="session")
def cuda_double(tmp_path_factory):
    return _build(tmp_path_factory, "cuda_cudnn_double.cpp", "libcuda_cudnn_double.so")


@pytest.fixture(scope="session")
def hip_double(tmp_path_factory):
    return _build(tmp_path_factory, "hip_miopen_double.cpp", "libhip_miopen_double.so")


def _env(tmp_path, **kw):
    env = {k: v for k, v in os.environ.items() if k not in _VARS and not k.startswith("PASKDNN_DOUBLE_")}
    env["PASKDNN_CACHE_DIR"] = str(tmp_path / "cache")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def cuda_env(tmp_path, double, **kw):
    base = dict(PASKDNN_LIBCUDA=double, PASKDNN_NVRTC=double, PASKDNN_CUDNN=double)
    base.update(kw)
    return _env(tmp_path, **base)


def hip_env(tmp_path, double, **kw):
    base = dict(PASKDNN_HIP=double, PASKDNN_HIPRTC=double, PASKDNN_MIOPEN=double)
    base.update(kw)
    return _env(tmp_path, **base)


def doctor(env, *args):
    return subprocess.run([sys.executable, "-m", "paskdnn", "doctor", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def doctor_json(env, *args):
    r = doctor(env, "--json", *args)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def context_error(env, device):
    """The message of the error creating a context on device, or "" when it is created."""
    script = textwrap.dedent(f"""
        import paskdnn
        try:
            paskdnn.Context({device!r}).close()
            print("CREATED")
        except paskdnn.Error as e:
            print("ERROR " + str(e))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout.strip().splitlines()[-1]
    return "" if out == "CREATED" else out[len("ERROR "):]


# ---- CUDA: the driver ------------------------------------------------------------------


def test_cuda_double_all_found(cuda_double, tmp_path):
    rc, rep = doctor_json(cuda_env(tmp_path, cuda_double), "--device", "cuda")
    b = rep["backends"]["cuda"]
    assert rc == 0 and rep["requested"] == {"device": "cuda", "works": True, "error": ""}
    assert b["driver"] == {"ok": True, "name": cuda_double, "file": cuda_double, "version": "12.4", "error": ""}
    assert b["devices"] == [{"index": 0, "name": "paskdnn test double", "arch": "sm_90", "compute_capability": "9.0",
                             "multiprocessors": 132, "problem": "", "compiler_problem": ""}]
    assert b["compiler"] == {"ok": True, "name": cuda_double, "file": cuda_double, "version": "12.4", "error": ""}
    assert b["dnn"] == {"ok": True, "name": cuda_double, "file": cuda_double, "version": "9.19.0", "error": ""}
    assert b["found_by"] == {"driver": "$PASKDNN_LIBCUDA", "compiler": "$PASKDNN_NVRTC", "dnn": "$PASKDNN_CUDNN"}
    assert rep["cache"] == {"path": str(tmp_path / "cache"), "exists": False, "writable": True,
                            "from": "$PASKDNN_CACHE_DIR"}


def test_cuda_text_output_names_files_versions_and_the_verdict(cuda_double, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "k.cubin").write_bytes(b"x" * 2048)
    r = doctor(cuda_env(tmp_path, cuda_double), "--device", "cuda:0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    cuda = lines[lines.index("CUDA") + 1:lines.index("HIP (ROCm)")]
    assert cuda[0] == f"  driver    ok       12.4  {cuda_double}, found by $PASKDNN_LIBCUDA"
    assert cuda[1] == "  device 0  ok       paskdnn test double, sm_90 (compute capability 9.0), 132 SMs"
    assert cuda[2] == f"  NVRTC     ok       12.4  {cuda_double}, found by $PASKDNN_NVRTC"
    assert cuda[3] == f"  cuDNN     ok       9.19.0  {cuda_double}, found by $PASKDNN_CUDNN"
    assert cuda[4] == "  => cuda:0 usable with paskdnn's own kernels (compiled here) and cuDNN"
    assert f"cache folder: {tmp_path / 'cache'} (from $PASKDNN_CACHE_DIR): 1 files, 2.0 KB" in lines
    assert lines[-1] == "requested device cuda:0: a context was created: the backend works"


def test_missing_cuda_driver_fails_the_requested_backend(tmp_path):
    missing = str(tmp_path / "libcuda.so.1")
    env = _env(tmp_path, PASKDNN_LIBCUDA=missing, PASKDNN_NVRTC=str(tmp_path / "no-nvrtc.so"))
    r = doctor(env, "--device", "cuda")
    assert r.returncode == 1
    assert "  => the cuda device is unavailable on this machine" in r.stdout
    assert "                     would enable the cuda device: every CUDA solver" in r.stdout
    last = r.stdout.splitlines()[-1]
    assert last.startswith("requested device cuda: cannot work: BackendUnavailableError: the CUDA driver "
                           f"(libcuda.so.1) could not be loaded: {missing}: cannot open shared object file")
    # without --device nothing was asked to work: exit 0
    assert doctor(env).returncode == 0


def test_too_old_cuda_driver_is_named_with_the_version_needed(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_DRIVER_VERSION=10020)
    expected = (f"the CUDA driver {cuda_double} ({cuda_double}) is CUDA 10.2; CUDA 11.0 or newer is required")
    assert context_error(env, "cuda") == expected
    rc, rep = doctor_json(env, "--device", "cuda")
    assert rc == 1 and rep["backends"]["cuda"]["driver"]["error"] == expected
    assert rep["requested"]["error"] == "BackendUnavailableError: " + expected


def test_wrong_library_as_the_cuda_driver_names_what_it_lacks(hip_double, tmp_path):
    env = _env(tmp_path, PASKDNN_LIBCUDA=hip_double, PASKDNN_NVRTC=str(tmp_path / "none"))
    err = context_error(env, "cuda")
    assert err.startswith(f"the CUDA driver {hip_double} ({hip_double}) lacks cuInit, cuDeviceGetCount, ")
    assert err.endswith(", cuDriverGetVersion")


def test_old_gpu_is_refused_by_the_doctor_as_by_the_context(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_CC=75)
    expected = "paskdnn's CUDA kernels need compute capability 8.0 or newer; device 0 is 7.5"
    assert context_error(env, "cuda") == expected
    r = doctor(env, "--device", "cuda")
    assert r.returncode == 1
    assert "  device 0  refused  paskdnn test double, sm_75 (compute capability 7.5), 132 SMs" in r.stdout
    assert f"                     {expected}" in r.stdout
    assert "  => the cuda device is unavailable: no usable device" in r.stdout


# ---- CUDA: NVRTC -----------------------------------------------------------------------


def _compile_error(env):
    """Creates a CUDA context that may only compile (no prebuilt kernels, no cuDNN) and
    runs a conv: the error says why NVRTC was left out at context creation."""
    script = textwrap.dedent("""
        import numpy as np, os, paskdnn
        c = paskdnn.Context("cuda", cudnn=False, kernel_dir=os.environ["EMPTY"], solvers=["conv2d.cuda_igemm"],
                            loader_threads=0)
        x = paskdnn.asarray(np.ones((1, 8, 6, 6), np.float32), dtype="float16", context=c)
        w = paskdnn.asarray(np.ones((8, 8, 3, 3), np.float32), dtype="float16", context=c)
        try:
            paskdnn.conv2d(x, w, padding=1, context=c)
            print("RAN")
        except paskdnn.Error as e:
            print("ERROR " + str(e))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_nvrtc_that_cannot_target_the_device(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_CC=100, PASKDNN_DOUBLE_NVRTC_VERSION=12040,
                   PASKDNN_DOUBLE_NVRTC_ARCHS="80,86,87,89,90")
    expected = f"NVRTC 12.4 ({cuda_double}) cannot target sm_100 (it targets sm_80, sm_86, sm_87, sm_89, sm_90)"
    rc, rep = doctor_json(env, "--device", "cuda")
    assert rc == 0  # the context works (prebuilt cubins, the cache, cuDNN); NVRTC is left out with why
    assert rep["backends"]["cuda"]["devices"][0]["compiler_problem"] == expected
    text = doctor(env).stdout
    assert f"            unusable for device 0: {expected}" in text
    assert "  => cuda:0 usable with paskdnn's own kernels only from prebuilt cubins or the cache and cuDNN" in text
    (tmp_path / "empty").mkdir()
    err = _compile_error(dict(env, EMPTY=str(tmp_path / "empty")))
    assert expected in err, err


def test_nvrtc_without_target_list_uses_the_first_nvrtc_per_arch(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_CC=90, PASKDNN_DOUBLE_NVRTC_VERSION=11040,
                   PASKDNN_DOUBLE_NVRTC_ARCHS="none", PASKDNN_DOUBLE_DRIVER_VERSION=11040)
    _, rep = doctor_json(env)
    assert rep["backends"]["cuda"]["devices"][0]["compiler_problem"] == (
        f"NVRTC 11.4 ({cuda_double}) cannot target sm_90; NVRTC 11.8 or newer is required")


def test_nvrtc_newer_than_the_driver(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_NVRTC_VERSION=13000, PASKDNN_DOUBLE_DRIVER_VERSION=12040)
    _, rep = doctor_json(env)
    assert rep["backends"]["cuda"]["devices"][0]["compiler_problem"] == (
        f"NVRTC 13.0 ({cuda_double}) makes cubins the CUDA 12.4 driver cannot load; "
        "NVRTC 12.x or a CUDA 13 driver is required")


def test_too_old_nvrtc(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_NVRTC_VERSION=11000)
    _, rep = doctor_json(env)
    assert rep["backends"]["cuda"]["compiler"] == {
        "ok": False, "name": "", "file": "", "version": "",
        "error": f"NVRTC 11.0 ({cuda_double}) is too old; NVRTC 11.1 or newer is required"}
    assert rep["backends"]["cuda"]["devices"][0]["compiler_problem"] == rep["backends"]["cuda"]["compiler"]["error"]


def test_missing_nvrtc_says_what_it_would_enable(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_NVRTC=str(tmp_path / "libnvrtc.so.12"))
    text = doctor(env, "--device", "cuda")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("  NVRTC     missing  NVRTC could not be loaded ("))
    assert str(tmp_path / "libnvrtc.so.12") in lines[i]
    assert lines[i + 1].startswith("                     would enable compiling paskdnn's own CUDA kernels")
    assert lines[i + 2] == ('                     get it: pip install "paskdnn[cuda12]" (or [cuda13] with a '
                            'CUDA 13 driver)')


# ---- cuDNN -----------------------------------------------------------------------------


def test_cudnn_8_under_the_cudnn_8_soname_is_refused_with_both_versions(cuda_double, tmp_path):
    wrong = tmp_path / "libcudnn.so.8"  # a wrong soname: cuDNN 8's library
    shutil.copy(cuda_double, wrong)
    env = cuda_env(tmp_path, cuda_double, PASKDNN_CUDNN=wrong, PASKDNN_DOUBLE_CUDNN_VERSION=8907)
    rc, rep = doctor_json(env, "--device", "cuda")
    assert rc == 0  # cuDNN is a provider: the backend works without it
    assert rep["backends"]["cuda"]["dnn"]["error"] == f"{wrong} ({wrong}) is cuDNN 8.9.7; cuDNN 9.x >= 9.0.0 is required"


def test_cudnn_10_is_refused(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_CUDNN_VERSION=100100)
    _, rep = doctor_json(env)
    assert rep["backends"]["cuda"]["dnn"]["error"] == (
        f"{cuda_double} ({cuda_double}) is cuDNN 10.1.0; cuDNN 9.x >= 9.0.0 is required")


def test_old_cudnn_is_the_reason_a_cudnn_solver_gives(cuda_double, tmp_path):
    env = cuda_env(tmp_path, cuda_double, PASKDNN_DOUBLE_CUDNN_VERSION=8907, PASKDNN_NVRTC="/nonexistent")
    script = textwrap.dedent("""
        import numpy as np, os, paskdnn
        c = paskdnn.Context("cuda", solvers=["pool2d.cudnn"], loader_threads=0)
        x = paskdnn.asarray(np.ones((1, 2, 6, 6), np.float32), dtype="float16", context=c)
        try:
            paskdnn.max_pool2d(x, 2, context=c)
        except paskdnn.Error as e:
            print("ERROR " + str(e))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"{cuda_double} ({cuda_double}) is cuDNN 8.9.7; cuDNN 9.x >= 9.0.0 is required" in p.stdout


# ---- HIP / hiprtc / MIOpen -------------------------------------------------------------


def test_hip_double_all_found(hip_double, tmp_path):
    rc, rep = doctor_json(hip_env(tmp_path, hip_double), "--device", "hip")
    b = rep["backends"]["hip"]
    assert rc == 0 and rep["requested"]["works"] is True
    assert b["driver"] == {"ok": True, "name": hip_double, "file": hip_double, "version": "6.0.32830", "error": "",
                           "driver_version": "6.0.32830"}
    assert b["devices"] == [{"index": 0, "name": "", "arch": "gfx90a", "problem": "", "compiler_problem": ""}]
    assert b["compiler"]["ok"] and b["compiler"]["version"] == "6.0"
    assert b["dnn"]["ok"] and b["dnn"]["version"] == "3.2.0"
    text = doctor(hip_env(tmp_path, hip_double)).stdout
    assert f"  runtime   ok       6.0.32830, driver 6.0.32830  {hip_double}, found by $PASKDNN_HIP" in text
    assert "  device 0  ok       gfx90a" in text
    assert "  => hip:0 usable with paskdnn's own kernels (compiled here) and MIOpen" in text


def test_missing_hip_runtime(tmp_path):
    env = _env(tmp_path, PASKDNN_HIP=str(tmp_path / "libamdhip64.so.6"))
    rc, rep = doctor_json(env, "--device", "hip")
    assert rc == 1
    err = rep["backends"]["hip"]["driver"]["error"]
    assert err.startswith(f"the HIP runtime (libamdhip64.so) could not be loaded: {tmp_path}/libamdhip64.so.6: ")
    assert rep["backends"]["hip"]["compiler"]["error"] == "the HIP runtime is needed to look for hiprtc"
    assert rep["requested"]["error"] == "BackendUnavailableError: " + err


def test_too_old_hip_runtime(hip_double, tmp_path):
    env = hip_env(tmp_path, hip_double, PASKDNN_DOUBLE_HIP_VERSION=50120000)
    expected = f"the HIP runtime {hip_double} ({hip_double}) is HIP 5.1.20000; HIP 5.2.0 (ROCm 5.2) or newer is required"
    assert context_error(env, "hip") == expected
    rc, rep = doctor_json(env, "--device", "hip")
    assert rc == 1 and rep["backends"]["hip"]["driver"]["error"] == expected


def test_too_old_hiprtc(hip_double, tmp_path):
    env = hip_env(tmp_path, hip_double, PASKDNN_DOUBLE_HIPRTC_VERSION=501)
    rc, rep = doctor_json(env, "--device", "hip")
    assert rc == 0
    assert rep["backends"]["hip"]["compiler"]["error"] == (
        f"hiprtc 5.1 ({hip_double}) is too old; hiprtc 5.2 (ROCm 5.2) or newer is required")


def test_wrong_library_as_miopen(hip_double, cuda_double, tmp_path):
    env = hip_env(tmp_path, hip_double, PASKDNN_MIOPEN=cuda_double)
    _, rep = doctor_json(env)
    err = rep["backends"]["hip"]["dnn"]["error"]
    assert err.startswith(f"the MIOpen library {cuda_double} ({cuda_double}) lacks miopenGetVersion, ")


def test_old_miopen(hip_double, tmp_path):
    env = hip_env(tmp_path, hip_double, PASKDNN_DOUBLE_MIOPEN_MAJOR=1, PASKDNN_DOUBLE_MIOPEN_MINOR=9)
    _, rep = doctor_json(env)
    assert rep["backends"]["hip"]["dnn"]["error"] == (
        f"{hip_double} ({hip_double}) is MIOpen 1.9.0; MIOpen 2.0 or newer is required "
        "(its immediate-mode convolution API)")


# ---- the command line ----------------------------------------------------------------


def test_doctor_help_and_bad_device():
    r = subprocess.run([sys.executable, "-m", "paskdnn", "doctor", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--device" in r.stdout and "--json" in r.stdout and "`" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "paskdnn", "doctor", "--device", "gpu"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == ("python -m paskdnn doctor: error: argument --device: must be cuda, hip, "
                                         "cuda:N or hip:N, not 'gpu'")
    r = subprocess.run([sys.executable, "-m", "paskdnn"], capture_output=True, text=True)
    assert "doctor" in r.stdout
