// The CUDA driver API and NVRTC, loaded with dlopen at run time: paskdnn has no
// build-time dependency on CUDA. Only the few entry points the backend uses
// are declared here, with the driver's ABI types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "../gpu/gpu_rtc.hpp"

namespace pask::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUmemoryPool = struct CUmemPoolHandle_st *;
struct CUmemPoolProps {  // CUDA's CUmemPoolProps_st: 88 bytes, unused fields zero
    int allocType;
    int handleTypes;
    int locationType;
    int locationId;
    void *win32SecurityAttributes;
    unsigned char reserved[64];
};
static_assert(sizeof(CUmemPoolProps) == 88, "CUmemPoolProps layout");
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;
using CUgraph = struct CUgraph_st *;
using CUgraphExec = struct CUgraphExec_st *;

constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2;
constexpr int CU_POINTER_ATTRIBUTE_RANGE_START_ADDR = 11;
constexpr int CU_POINTER_ATTRIBUTE_RANGE_SIZE = 12;
constexpr int CU_MEMORYTYPE_HOST = 1;
constexpr int CU_MEMORYTYPE_DEVICE = 2;
constexpr int CU_MEMORYTYPE_UNIFIED = 4;
constexpr int CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
constexpr int CUDA_ERROR_NOT_READY = 600;
constexpr int CU_MEM_ALLOCATION_TYPE_PINNED = 1;
constexpr int CU_MEM_LOCATION_TYPE_DEVICE = 1;
constexpr int CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4;
constexpr int CU_STREAM_CAPTURE_STATUS_NONE = 0;
constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
constexpr int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
constexpr int CU_STREAM_CAPTURE_MODE_RELAXED = 2;

struct Driver {
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
    CUresult (*cuCtxPushCurrent)(CUcontext);
    CUresult (*cuCtxPopCurrent)(CUcontext *);
    CUresult (*cuCtxGetCurrent)(CUcontext *) = nullptr;  // optional: skips push/pop when current
    CUresult (*cuCtxSynchronize)();
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleUnload)(CUmodule);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                               CUstream, void **, void **);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
    CUresult (*cuStreamSynchronize)(CUstream);
    CUresult (*cuPointerGetAttribute)(void *, int, CUdeviceptr);
    CUresult (*cuGetErrorString)(CUresult, const char **);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
    // Optional (nullptr when this driver lacks them): run-time measurement
    // and stream-ordered allocation.
    CUresult (*cuEventCreate)(CUevent *, unsigned) = nullptr;
    CUresult (*cuEventDestroy)(CUevent) = nullptr;
    CUresult (*cuEventRecord)(CUevent, CUstream) = nullptr;
    CUresult (*cuEventQuery)(CUevent) = nullptr;
    CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent) = nullptr;
    CUresult (*cuStreamIsCapturing)(CUstream, int *) = nullptr;
    CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream) = nullptr;
    CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream) = nullptr;
    CUresult (*cuLaunchHostFunc)(CUstream, void (*)(void *), void *) = nullptr;
    CUresult (*cuThreadExchangeStreamCaptureMode)(int *) = nullptr;
    CUresult (*cuStreamCreate)(CUstream *, unsigned) = nullptr;
    CUresult (*cuStreamDestroy)(CUstream) = nullptr;
    // Graph capture (CUDA 11.4+ for cuGraphInstantiateWithFlags): without them
    // pask_graph_capture_begin says which is missing.
    CUresult (*cuStreamBeginCapture)(CUstream, int) = nullptr;  // cuStreamBeginCapture_v2: with a mode
    CUresult (*cuStreamEndCapture)(CUstream, CUgraph *) = nullptr;
    CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long) = nullptr;
    CUresult (*cuGraphLaunch)(CUgraphExec, CUstream) = nullptr;
    CUresult (*cuGraphExecDestroy)(CUgraphExec) = nullptr;
    CUresult (*cuGraphDestroy)(CUgraph) = nullptr;
    // A memory pool of our own for stream-ordered scratch (CUmemPoolProps, 88 bytes).
    CUresult (*cuMemPoolCreate)(CUmemoryPool *, const CUmemPoolProps *) = nullptr;
    CUresult (*cuMemPoolDestroy)(CUmemoryPool) = nullptr;
    CUresult (*cuMemPoolSetAttribute)(CUmemoryPool, int, void *) = nullptr;
    CUresult (*cuMemAllocFromPoolAsync)(CUdeviceptr *, size_t, CUmemoryPool, CUstream) = nullptr;
    // CUDA 12.4+: every function of a module, loaded now (lazy loading would
    // load each on its first launch, on the caller's thread).
    CUresult (*cuModuleGetFunctionCount)(unsigned *, CUmodule) = nullptr;
    CUresult (*cuModuleEnumerateFunctions)(CUfunction *, unsigned, CUmodule) = nullptr;
    CUresult (*cuFuncLoad)(CUfunction) = nullptr;
    CUresult (*cuDriverGetVersion)(int *) = nullptr;              // required; every driver has it
    CUresult (*cuDeviceGetName)(char *, int, CUdevice) = nullptr;  // optional: for the doctor's report

    int version = 0;    // cuDriverGetVersion: 1000 * major + 10 * minor (12040 = CUDA 12.4)
    std::string name;   // the name dlopen was given ("libcuda.so.1", $PASKDNN_LIBCUDA)
    std::string path;   // the file it loaded

    // The driver, loaded once per process; throws pask::Error
    // (PASK_ERROR_BACKEND_UNAVAILABLE) naming what was not found.
    static const Driver &get();
    // Throws pask::Error with the driver's message when r != 0.
    void check(CUresult r, const char *what) const;
};

// The oldest CUDA driver paskdnn accepts, as cuDriverGetVersion reports it:
// 11.0, the first driver with the _v2 entry points bound in Driver::get()
// (cuDevicePrimaryCtxRelease_v2, cuCtxPushCurrent_v2, ...) and the first that
// knows compute capability 8.0, the oldest paskdnn's kernels run on (their
// cp.async and tensor-core mma need sm_80). paskdnn does not use
// cuLibraryLoadData (CUDA 12.0); the 12.x-only entry points it uses
// (cuModuleEnumerateFunctions 12.4, cuEventElapsedTime_v2 12.8) are optional.
constexpr int kMinDriverVersion = 11000;
// The oldest NVRTC: 11.1, the first with nvrtcGetCUBIN (paskdnn loads SASS
// cubins, never PTX); the kernels' inline PTX (cp.async, mma .tf32/.bf16,
// cvt.rn.bf16.f32) needs PTX ISA 7.0, which NVRTC 11.0 already has.
constexpr int kMinNvrtcMajor = 11;
constexpr int kMinNvrtcMinor = 1;

// "12.4" for 12040.
std::string cuda_version_text(int version);
// Why this NVRTC cannot make cubins for compute capability cc (80 = 8.0) that
// this driver loads; "" when it can:
//  * NVRTC lists its targets (nvrtcGetSupportedArchs, NVRTC 11.2+): the arch
//    must be among them, else (older NVRTC) the first NVRTC per arch decides;
//  * a cubin loads only on a driver of the same CUDA major or newer (minor
//    version compatibility holds within a major only).
std::string nvrtc_target_problem(const gpu::Rtc &nvrtc, int cc, int driver_version);

// NVRTC from `path` (if not empty), else $PASKDNN_NVRTC, else the usual
// sonames. nullptr (with *why set) when it cannot be loaded: paskdnn then
// runs on prebuilt cubins only. compile() turns a source into a cubin.
using Nvrtc = gpu::Rtc;
const Nvrtc *load_nvrtc(const std::string &path, std::string *why);

}  // namespace pask::cuda
