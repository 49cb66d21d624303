# serve_cc_library(NAME n SRCS ... [DEPS ...] [PRIVATE_DEPS ...]) -> serve_n, alias serve::n
add_library(serve_warnings INTERFACE)
set(serve_warning_flags -Wall -Wextra -Wpedantic
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>  # GCC 12 false positives (nlohmann_json, Beast)
  $<$<BOOL:${SERVE_WERROR}>:-Werror>)
# C++ sources only: nvcc (examples/gpu) does not take these flags.
target_compile_options(serve_warnings INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:${serve_warning_flags}>")

function(serve_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(serve_${ARG_NAME} STATIC ${ARG_SRCS})
  add_library(serve::${ARG_NAME} ALIAS serve_${ARG_NAME})
  target_include_directories(serve_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(serve_${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} serve_warnings)
endfunction()

# serve_cc_binary(NAME bin SRCS main.cc DEPS ...)
function(serve_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} serve_warnings)
  set_target_properties(${ARG_NAME} PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS ${ARG_NAME} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endfunction()
