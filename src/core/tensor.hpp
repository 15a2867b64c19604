// TensorDesc: the immutable object behind pask_tensor_desc_t.
#pragma once

#include <array>
#include <cstdint>

#include "paskdnn.h"

struct pask_tensor_desc {
    pask_dtype_t dtype;
    pask_layout_t layout;
    int ndim;
    std::array<int64_t, 8> dims;
    int64_t elements;  // product of dims, checked against overflow at creation
    int64_t bytes;
};

namespace pask {

using TensorDesc = pask_tensor_desc;

int64_t dtype_size(pask_dtype_t dtype);
const char *dtype_name(pask_dtype_t dtype);
const char *layout_name(pask_layout_t layout);

}  // namespace pask
