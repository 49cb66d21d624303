# SERVE_SANITIZE: build every target of the project with sanitizers (docs/sanitizers.md).
#   ""                  no sanitizer (default)
#   address,undefined   AddressSanitizer + UndefinedBehaviorSanitizer (either one alone too)
#   thread              ThreadSanitizer (cannot be combined with address)
# Flags go to the compile and link lines of our targets only; system libraries stay as built.
# Undefined behaviour is fatal (-fno-sanitize-recover) so that a finding fails the test.
set(SERVE_SANITIZE "" CACHE STRING
  "sanitizers for every target: empty, address,undefined (or either alone), or thread")
set_property(CACHE SERVE_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")

if(SERVE_SANITIZE)
  string(REPLACE "," ";" serve_sanitizers "${SERVE_SANITIZE}")
  foreach(s IN LISTS serve_sanitizers)
    if(NOT s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "SERVE_SANITIZE=${SERVE_SANITIZE}: unknown sanitizer '${s}'; "
        "use address,undefined (ASan+UBSan) or thread (TSan), or leave it empty")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES serve_sanitizers)
  if("thread" IN_LIST serve_sanitizers AND "address" IN_LIST serve_sanitizers)
    message(FATAL_ERROR "SERVE_SANITIZE=${SERVE_SANITIZE}: thread and address cannot be "
      "combined; build them in separate build directories (build-asan, build-tsan)")
  endif()
  list(JOIN serve_sanitizers "," serve_sanitize_list)
  set(serve_sanitize_flags -fsanitize=${serve_sanitize_list} -fno-omit-frame-pointer)
  if("undefined" IN_LIST serve_sanitizers)
    list(APPEND serve_sanitize_flags -fno-sanitize-recover=undefined)
  endif()
  if("thread" IN_LIST serve_sanitizers AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC warns that TSan does not model std::atomic_thread_fence (used by Asio and gRPC's
    # headers); with SERVE_WERROR that warning would stop the build.
    add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-Wno-tsan>")
  endif()
  # C++ only: nvcc (examples/gpu) does not take these flags.
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${serve_sanitize_flags}>")
  add_link_options("$<$<LINK_LANGUAGE:CXX>:${serve_sanitize_flags}>")
  message(STATUS "serve: sanitizers ${serve_sanitize_list}")
endif()

# serve_sanitizer_env(<out_var> [LOG_DIR <dir>]): the environment (a list of VAR=value) under
# which CTest runs tests of a sanitizer build: stop at the first report (abort, so that a server
# process dies visibly), the suppressions of tests/sanitizers/, and with LOG_DIR each report
# written to <dir>/<tool>.<pid> instead of stderr (the integration tests check that directory).
function(serve_sanitizer_env out_var)
  cmake_parse_arguments(ARG "" "LOG_DIR" "" ${ARGN})
  set(env "")
  if(SERVE_SANITIZE)
    set(supp ${PROJECT_SOURCE_DIR}/tests/sanitizers)
    set(common "halt_on_error=1:abort_on_error=1:print_stacktrace=1")
    foreach(tool asan ubsan lsan tsan)
      set(${tool}_opts "${common}")
      if(EXISTS ${supp}/${tool}.supp)
        string(APPEND ${tool}_opts ":suppressions=${supp}/${tool}.supp")
      endif()
      if(ARG_LOG_DIR AND NOT tool STREQUAL "lsan")   # LSan reports through ASan's log_path
        string(APPEND ${tool}_opts ":log_path=${ARG_LOG_DIR}/${tool}")
      endif()
    endforeach()
    if("thread" IN_LIST serve_sanitizers)
      list(APPEND env "TSAN_OPTIONS=${tsan_opts}:second_deadlock_stack=1")
    else()
      list(APPEND env "ASAN_OPTIONS=${asan_opts}:detect_leaks=1" "LSAN_OPTIONS=${lsan_opts}")
    endif()
    if("undefined" IN_LIST serve_sanitizers)
      list(APPEND env "UBSAN_OPTIONS=${ubsan_opts}")
    endif()
  endif()
  set(${out_var} "${env}" PARENT_SCOPE)
endfunction()
