// Registers the CUDA backend as "cuda" when a program that links the
// roformer_cuda object library starts. Creating the backend, not this
// registration, touches the driver, so programs start on machines without a
// GPU and report "no CUDA device" only when asked for --device cuda.
#include "runtime/cuda/CudaBackend.h"

namespace roformer::runtime::cuda {
namespace {

const bool registered = [] {
  registerCudaBackend();
  return true;
}();

}  // namespace
}  // namespace roformer::runtime::cuda
