// DeviceApi over the CUDA runtime: defined in cuda_api.cpp, compiled only with the TensorRT runner.
#pragma once

#include <memory>

#include "device_queue.hpp"

namespace svsr {
namespace device {

std::unique_ptr<DeviceApi> make_cuda_api();

}  // namespace device
}  // namespace svsr
