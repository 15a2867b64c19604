// MIOpen, loaded with dlopen at run time: paskdnn has no build-time
// dependency on it. Only the entry points the provider calls are declared,
// with MIOpen's C ABI types; the signatures and enum values are those of
// MIOpen's include/miopen/miopen.h (ROCm 6.x; the immediate-mode
// convolution API has been stable since MIOpen 2.0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pask::miopen {

using Status = int;  // miopenStatus_t
using Handle = struct miopenHandle *;
using TensorDesc = struct miopenTensorDescriptor *;
using ConvDesc = struct miopenConvolutionDescriptor *;
using PoolDesc = struct miopenPoolingDescriptor *;
using ActivDesc = struct miopenActivationDescriptor *;

// miopenStatus_t
constexpr int STATUS_SUCCESS = 0;
constexpr int STATUS_ALLOC_FAILED = 4;
// miopenDataType_t
constexpr int DATA_HALF = 0, DATA_FLOAT = 1, DATA_BFLOAT16 = 5;
// miopenConvolutionMode_t
constexpr int CONVOLUTION = 0;
// miopenPoolingMode_t
constexpr int POOLING_MAX = 0, POOLING_AVERAGE = 1, POOLING_AVERAGE_INCLUSIVE = 2;
// miopenActivationMode_t
constexpr int ACTIVATION_LOGISTIC = 1, ACTIVATION_RELU = 3, ACTIVATION_CLIPPEDRELU = 7;
// miopenTensorOp_t
constexpr int TENSOR_OP_ADD = 0;

// miopenConvSolution_t
struct ConvSolution {
    float time;
    size_t workspace_size;
    uint64_t solution_id;
    int algorithm;  // miopenConvAlgorithm_t
};

struct Api {
    Status (*miopenGetVersion)(size_t *, size_t *, size_t *);
    const char *(*miopenGetErrorString)(Status);
    Status (*miopenCreate)(Handle *);
    Status (*miopenDestroy)(Handle);
    Status (*miopenSetStream)(Handle, void *);
    Status (*miopenCreateTensorDescriptor)(TensorDesc *);
    Status (*miopenSet4dTensorDescriptorEx)(TensorDesc, int, int, int, int, int, int, int, int, int);
    Status (*miopenDestroyTensorDescriptor)(TensorDesc);
    Status (*miopenCreateConvolutionDescriptor)(ConvDesc *);
    Status (*miopenInitConvolutionDescriptor)(ConvDesc, int, int, int, int, int, int, int);
    Status (*miopenSetConvolutionGroupCount)(ConvDesc, int);
    Status (*miopenDestroyConvolutionDescriptor)(ConvDesc);
    Status (*miopenConvolutionForwardGetSolutionCount)(Handle, TensorDesc, TensorDesc, ConvDesc, TensorDesc, size_t *);
    Status (*miopenConvolutionForwardGetSolution)(Handle, TensorDesc, TensorDesc, ConvDesc, TensorDesc, size_t, size_t *,
                                                  ConvSolution *);
    Status (*miopenConvolutionForwardGetSolutionWorkspaceSize)(Handle, TensorDesc, TensorDesc, ConvDesc, TensorDesc,
                                                               uint64_t, size_t *);
    Status (*miopenConvolutionForwardCompileSolution)(Handle, TensorDesc, TensorDesc, ConvDesc, TensorDesc, uint64_t);
    Status (*miopenConvolutionForwardImmediate)(Handle, TensorDesc, const void *, TensorDesc, const void *, ConvDesc,
                                                TensorDesc, void *, void *, size_t, uint64_t);
    // y = alpha * y + alpha * b (broadcast over N, H, W) + beta * y
    Status (*miopenConvolutionForwardBias)(Handle, const void *, TensorDesc, const void *, const void *, TensorDesc,
                                           void *);
    // C = op(alpha1 * A, alpha2 * B) + beta * C
    Status (*miopenOpTensor)(Handle, int, const void *, TensorDesc, const void *, const void *, TensorDesc,
                             const void *, const void *, TensorDesc, void *);
    Status (*miopenCreateActivationDescriptor)(ActivDesc *);
    Status (*miopenSetActivationDescriptor)(ActivDesc, int, double, double, double);
    Status (*miopenActivationForward)(Handle, ActivDesc, const void *, TensorDesc, const void *, const void *,
                                      TensorDesc, void *);
    Status (*miopenDestroyActivationDescriptor)(ActivDesc);
    Status (*miopenCreatePoolingDescriptor)(PoolDesc *);
    Status (*miopenSet2dPoolingDescriptor)(PoolDesc, int, int, int, int, int, int, int);
    Status (*miopenPoolingForward)(Handle, PoolDesc, const void *, TensorDesc, const void *, const void *, TensorDesc,
                                   void *, bool, void *, size_t);
    Status (*miopenDestroyPoolingDescriptor)(PoolDesc);
    std::string version;  // "3.2.0"
    std::string path;     // the file loaded (or the soname that resolved)
    std::string file;     // the file that is (a full path where the dynamic linker says)

    // MIOpen from `path` if not empty, else $PASKDNN_MIOPEN, else the usual
    // sonames; loaded once per distinct path. nullptr (with *why set) when it
    // cannot be loaded.
    static const Api *get(const std::string &path, std::string *why);
    // "<what> failed: <MIOpen's message>" for status s.
    std::string message(Status s, const char *what) const;
};

}  // namespace pask::miopen
