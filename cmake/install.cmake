# Install rules, the CMake package (find_package(SinkRouter)) and the pkg-config file.
include(CMakePackageConfigHelpers)

install(TARGETS sinkrouter EXPORT SinkRouterTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/sinkrouter DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT SinkRouterTargets NAMESPACE SinkRouter:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SinkRouter)

configure_package_config_file(cmake/SinkRouterConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/SinkRouterConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SinkRouter)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/SinkRouterConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/SinkRouterConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/SinkRouterConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SinkRouter)

file(RELATIVE_PATH SR_PC_PREFIX_FROM_PCDIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
configure_file(cmake/sinkrouter.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sinkrouter.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sinkrouter.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
