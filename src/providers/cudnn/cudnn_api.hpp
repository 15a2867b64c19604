// cuDNN 9, loaded with dlopen at run time: paskdnn has no build-time
// dependency on it. Only the entry points the provider calls are declared,
// with cuDNN's ABI types; the numeric constants are those of cuDNN 9's
// cudnn_graph.h / cudnn_ops.h (the backend API's values are stable across 9.x).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pask::cudnn {

using Status = int;  // cudnnStatus_t
using Handle = struct cudnnContext *;
using Desc = void *;  // cudnnBackendDescriptor_t
using TensorDesc = struct cudnnTensorStruct *;
using PoolingDesc = struct cudnnPoolingStruct *;

// descriptor types (cudnnBackendDescriptorType_t)
constexpr int POINTWISE_DESCRIPTOR = 0;
constexpr int CONVOLUTION_DESCRIPTOR = 1;
constexpr int ENGINE_DESCRIPTOR = 2;
constexpr int ENGINECFG_DESCRIPTOR = 3;
constexpr int ENGINEHEUR_DESCRIPTOR = 4;
constexpr int EXECUTION_PLAN_DESCRIPTOR = 5;
constexpr int OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR = 10;
constexpr int OPERATION_POINTWISE_DESCRIPTOR = 13;
constexpr int OPERATIONGRAPH_DESCRIPTOR = 15;
constexpr int VARIANT_PACK_DESCRIPTOR = 16;
constexpr int TENSOR_DESCRIPTOR = 17;
constexpr int MATMUL_DESCRIPTOR = 18;
constexpr int OPERATION_MATMUL_DESCRIPTOR = 19;

// attribute value types (cudnnBackendAttributeType_t)
constexpr int TYPE_HANDLE = 0;
constexpr int TYPE_DATA_TYPE = 1;
constexpr int TYPE_BOOLEAN = 2;
constexpr int TYPE_INT64 = 3;
constexpr int TYPE_FLOAT = 4;
constexpr int TYPE_DOUBLE = 5;
constexpr int TYPE_VOID_PTR = 6;
constexpr int TYPE_CONVOLUTION_MODE = 7;
constexpr int TYPE_HEUR_MODE = 8;
constexpr int TYPE_NAN_PROPAGATION = 10;  // CUDNN_TYPE_NAN_PROPOGATION (sic)
constexpr int TYPE_NUMERICAL_NOTE = 11;
constexpr int TYPE_POINTWISE_MODE = 14;
constexpr int TYPE_BACKEND_DESCRIPTOR = 15;
constexpr int TYPE_BEHAVIOR_NOTE = 19;

// attribute names (cudnnBackendAttributeName_t)
constexpr int ATTR_POINTWISE_MODE = 0;
constexpr int ATTR_POINTWISE_MATH_PREC = 1;
constexpr int ATTR_POINTWISE_NAN_PROPAGATION = 2;
constexpr int ATTR_POINTWISE_RELU_LOWER_CLIP = 3;
constexpr int ATTR_POINTWISE_RELU_UPPER_CLIP = 4;
constexpr int ATTR_POINTWISE_SWISH_BETA = 8;
constexpr int ATTR_CONVOLUTION_COMP_TYPE = 100;
constexpr int ATTR_CONVOLUTION_CONV_MODE = 101;
constexpr int ATTR_CONVOLUTION_DILATIONS = 102;
constexpr int ATTR_CONVOLUTION_FILTER_STRIDES = 103;
constexpr int ATTR_CONVOLUTION_POST_PADDINGS = 104;
constexpr int ATTR_CONVOLUTION_PRE_PADDINGS = 105;
constexpr int ATTR_CONVOLUTION_SPATIAL_DIMS = 106;
constexpr int ATTR_ENGINEHEUR_MODE = 200;
constexpr int ATTR_ENGINEHEUR_OPERATION_GRAPH = 201;
constexpr int ATTR_ENGINEHEUR_RESULTS = 202;
constexpr int ATTR_ENGINECFG_ENGINE = 300;
constexpr int ATTR_EXECUTION_PLAN_HANDLE = 400;
constexpr int ATTR_EXECUTION_PLAN_ENGINE_CONFIG = 401;
constexpr int ATTR_EXECUTION_PLAN_WORKSPACE_SIZE = 402;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA = 700;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_BETA = 701;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC = 702;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_W = 703;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_X = 704;
constexpr int ATTR_OPERATION_CONVOLUTION_FORWARD_Y = 705;
constexpr int ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR = 750;
constexpr int ATTR_OPERATION_POINTWISE_XDESC = 751;
constexpr int ATTR_OPERATION_POINTWISE_BDESC = 752;
constexpr int ATTR_OPERATION_POINTWISE_YDESC = 753;
constexpr int ATTR_OPERATIONGRAPH_HANDLE = 800;
constexpr int ATTR_OPERATIONGRAPH_OPS = 801;
constexpr int ATTR_TENSOR_BYTE_ALIGNMENT = 900;
constexpr int ATTR_TENSOR_DATA_TYPE = 901;
constexpr int ATTR_TENSOR_DIMENSIONS = 902;
constexpr int ATTR_TENSOR_STRIDES = 903;
constexpr int ATTR_TENSOR_UNIQUE_ID = 906;
constexpr int ATTR_TENSOR_IS_VIRTUAL = 907;
constexpr int ATTR_VARIANT_PACK_UNIQUE_IDS = 1000;
constexpr int ATTR_VARIANT_PACK_DATA_POINTERS = 1001;
constexpr int ATTR_VARIANT_PACK_WORKSPACE = 1003;
constexpr int ATTR_ENGINE_GLOBAL_INDEX = 1301;
constexpr int ATTR_ENGINE_NUMERICAL_NOTE = 1303;
constexpr int ATTR_ENGINE_BEHAVIOR_NOTE = 1305;
constexpr int ATTR_MATMUL_COMP_TYPE = 1500;
constexpr int ATTR_OPERATION_MATMUL_ADESC = 1520;
constexpr int ATTR_OPERATION_MATMUL_BDESC = 1521;
constexpr int ATTR_OPERATION_MATMUL_CDESC = 1522;
constexpr int ATTR_OPERATION_MATMUL_DESC = 1523;

// enum values
constexpr int DATA_FLOAT = 0, DATA_HALF = 2, DATA_BFLOAT16 = 9;
constexpr int POINTWISE_ADD = 0, POINTWISE_RELU_FWD = 100;
constexpr int POINTWISE_SIGMOID_FWD = 102, POINTWISE_GELU_FWD = 104, POINTWISE_SWISH_FWD = 106,
              POINTWISE_GELU_APPROX_TANH_FWD = 107;
constexpr int HEUR_MODE_INSTANT = 0, HEUR_MODE_FALLBACK = 2, HEUR_MODE_A = 3;
constexpr int BEHAVIOR_NOTE_RUNTIME_COMPILATION = 0;
constexpr int CROSS_CORRELATION = 1;
constexpr int POOLING_MAX = 0, POOLING_AVERAGE_COUNT_INCLUDE_PADDING = 1, POOLING_AVERAGE_COUNT_EXCLUDE_PADDING = 2;
constexpr int NOT_PROPAGATE_NAN = 0, PROPAGATE_NAN = 1;
constexpr int STATUS_SUCCESS = 0;
constexpr int STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED = 4004;

struct Api {
    size_t (*cudnnGetVersion)();
    const char *(*cudnnGetErrorString)(Status);
    void (*cudnnGetLastErrorString)(char *, size_t);
    Status (*cudnnCreate)(Handle *);
    Status (*cudnnDestroy)(Handle);
    Status (*cudnnSetStream)(Handle, void *);
    Status (*cudnnBackendCreateDescriptor)(int, Desc *);
    Status (*cudnnBackendDestroyDescriptor)(Desc);
    Status (*cudnnBackendFinalize)(Desc);
    Status (*cudnnBackendSetAttribute)(Desc, int, int, int64_t, const void *);
    Status (*cudnnBackendGetAttribute)(Desc, int, int, int64_t, int64_t *, void *);
    Status (*cudnnBackendExecute)(Handle, Desc, Desc);
    Status (*cudnnCreateTensorDescriptor)(TensorDesc *);
    Status (*cudnnDestroyTensorDescriptor)(TensorDesc);
    Status (*cudnnSetTensor4dDescriptorEx)(TensorDesc, int, int, int, int, int, int, int, int, int);
    Status (*cudnnCreatePoolingDescriptor)(PoolingDesc *);
    Status (*cudnnDestroyPoolingDescriptor)(PoolingDesc);
    Status (*cudnnSetPooling2dDescriptor)(PoolingDesc, int, int, int, int, int, int, int, int);
    Status (*cudnnPoolingForward)(Handle, PoolingDesc, const void *, TensorDesc, const void *, const void *, TensorDesc,
                                  void *);
    size_t version = 0;
    std::string path;  // the file loaded (or the soname that resolved)
    std::string file;  // the file that is (a full path where the dynamic linker says)

    // cuDNN from `path` if not empty, else the usual sonames; loaded once per
    // distinct path. nullptr (with *why set) when it cannot be loaded.
    static const Api *get(const std::string &path, std::string *why);
    // "<what> failed: <cuDNN's message>" for status s.
    std::string message(Status s, const char *what) const;
};

// The cuDNN versions paskdnn accepts (cudnnGetVersion: 10000 * major + 100 *
// minor + patch since 9.0): 9.0.0 up to, not including, 10.0. 9.0 is the
// first with cudnnGetLastErrorString, bound in Api::get, and the 9.x ABI of
// the backend (graph) API's enums that cudnn_api.hpp declares; everything
// paskdnn builds (convolution forward, pointwise, matmul graphs, heuristics
// modes A and FALLBACK) is in 9.0. A 10.x ABI is unknown here.
constexpr size_t kMinVersion = 90000;
constexpr size_t kMaxVersionExclusive = 100000;
// "9.1.0" for 90100; cuDNN 8 numbered 8.9.7 as 8907.
std::string version_text(size_t version);

}  // namespace pask::cudnn
