# Enables the CUDA language for the CUDA backend (runtime/cuda) when
# ROFORMER_ENABLE_CUDA is on and nvcc is found. CMake needs enable_language
# in the top directory, because targets in tools/ and test/ link the
# backend's objects. Sets ROFORMER_CUDA_FOUND.
set(ROFORMER_CUDA_FOUND OFF)
if(ROFORMER_ENABLE_CUDA)
  # nvcc is not on PATH on the Debian build machines; the toolkit's own
  # folder is the usual place.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # sm_90 (Hopper, the H100 and H200) as machine code and PTX, plus sm_80
    # (Ampere) machine code. Every architecture multiplies the device compile
    # time, so the list is kept to two.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
    endif()
    enable_language(CUDA)
    # The .cu files need only C++17, the newest dialect CMake 3.25 knows for nvcc.
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(ROFORMER_CUDA_FOUND ON)
    message(STATUS "CUDA backend: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
  else()
    message(STATUS "CUDA backend: not built (no CUDA compiler found; set CMAKE_CUDA_COMPILER)")
  endif()
endif()
