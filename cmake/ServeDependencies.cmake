# Every find_package / pkg_check_modules of the project lives here.
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)                 # module mode: Debian 12 ships no config package
find_package(gRPC CONFIG REQUIRED)              # gRPC::grpc++, gRPC::grpc_cpp_plugin
find_package(Boost 1.81 CONFIG REQUIRED)        # Boost::headers (Asio, Beast)
find_package(yaml-cpp CONFIG REQUIRED)
if(NOT TARGET yaml-cpp::yaml-cpp)
  add_library(yaml-cpp::yaml-cpp ALIAS yaml-cpp)
endif()
find_package(nlohmann_json 3 CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)  # prometheus-cpp::core (metrics)
find_package(CLI11 CONFIG QUIET)
if(NOT TARGET CLI11::CLI11)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)  # header-only; /usr/include/CLI
endif()
if(SERVE_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()

# Asio usage requirements for our coroutine code.
add_library(serve_asio INTERFACE)
target_link_libraries(serve_asio INTERFACE Boost::headers Threads::Threads)
target_compile_definitions(serve_asio INTERFACE
  BOOST_ASIO_HAS_CO_AWAIT=1 BOOST_ASIO_HAS_STD_COROUTINE=1 BOOST_ASIO_NO_DEPRECATED)
find_package(OpenSSL REQUIRED)                  # OpenSSL::Crypto (cluster token: RAND_bytes,
                                                # CRYPTO_memcmp)
find_package(CURL REQUIRED)                     # CURL::libcurl (REST client of the CLI)
# hiredis 0.14: its CMake config package sets no target (and breaks without a version).
find_package(PkgConfig REQUIRED)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)   # PkgConfig::HIREDIS
