# Generates ONNX's backend test data once (a stamp file records the ONNX
# version it came from), then runs conformance-runner over it. Called by
# ctest with PYTHON, GENERATOR, DATA_DIR, RUNNER and KNOWN_DIFFERENCES set.
set(stamp ${DATA_DIR}/generated.stamp)
execute_process(COMMAND ${PYTHON} -c "import onnx; print(onnx.__version__)"
  OUTPUT_VARIABLE onnx_version OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE version_result)
if(NOT version_result EQUAL 0)
  message(FATAL_ERROR "${PYTHON} cannot import onnx; install Debian's python3-onnx")
endif()

set(current "")
if(EXISTS ${stamp})
  file(READ ${stamp} current)
endif()
if(NOT current STREQUAL onnx_version)
  message(STATUS "Generating ONNX ${onnx_version} backend test data in ${DATA_DIR}")
  file(REMOVE_RECURSE ${DATA_DIR})
  execute_process(COMMAND ${PYTHON} ${GENERATOR} ${DATA_DIR} RESULT_VARIABLE generate_result)
  if(NOT generate_result EQUAL 0)
    message(FATAL_ERROR "generating the ONNX backend test data failed")
  endif()
  file(WRITE ${stamp} ${onnx_version})
endif()

execute_process(COMMAND ${RUNNER} ${DATA_DIR} --known-differences ${KNOWN_DIFFERENCES}
  RESULT_VARIABLE run_result)
if(NOT run_result EQUAL 0)
  message(FATAL_ERROR "conformance-runner reported failures (the FAIL lines above)")
endif()
