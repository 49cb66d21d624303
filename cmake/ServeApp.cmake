# serve_add_app(NAME SOURCES...): builds a deployment library lib<NAME>.so that `serve run
# <NAME>:<app>` loads. Works in-tree and from an installed package (find_package(serve)).
if(NOT DEFINED SERVE_SDK_TARGET)
  set(SERVE_SDK_TARGET serve::sdk)
endif()
function(serve_add_app NAME)
  add_library(${NAME} SHARED ${ARGN})
  target_link_libraries(${NAME} PRIVATE ${SERVE_SDK_TARGET})
  target_compile_features(${NAME} PRIVATE cxx_std_20)
  set_target_properties(${NAME} PROPERTIES PREFIX "lib" CXX_VISIBILITY_PRESET default
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
endfunction()
