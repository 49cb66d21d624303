# Installs the SDK (libserve.so, include/serve, CMake package) and the binaries.
include(CMakePackageConfigHelpers)
# A sanitizer build's libraries need the sanitizer runtime in the program that links them.
if(SERVE_SANITIZE)
  foreach(t serve_sdk serve_client serve_testing)
    target_link_options(${t} INTERFACE "$<INSTALL_INTERFACE:-fsanitize=${serve_sanitize_list}>")
  endforeach()
endif()
install(TARGETS serve_sdk serve_client serve_testing EXPORT serveTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/serve DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT serveTargets NAMESPACE serve:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/serve)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/serveConfig.cmake.in
  ${PROJECT_BINARY_DIR}/serveConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/serve)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/serveConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/serveConfig.cmake ${PROJECT_BINARY_DIR}/serveConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/ServeApp.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/serve)
