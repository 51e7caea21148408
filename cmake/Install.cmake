# Install rules and the CMake package for an installed Locus.
#
#   cmake --install build --prefix /opt/locus
#
# installs
#   include/locus/*.h                 public API (runtime/include/locus) and the
#                                     generated IDL headers options.pb.h,
#                                     rmi.pb.h, wire.pb.h
#   lib/liblocus.a, lib/liblocus_idl.a
#   bin/locusc, bin/protoc-gen-locus
#   share/locus/idl/locus/*.proto     where locusc looks for locus/options.proto
#                                     and locus/rmi.proto
#   lib/cmake/Locus/                  LocusConfig.cmake & co.
#
# and a consumer does
#   find_package(Locus CONFIG REQUIRED)
#   locus_generate(TARGET my_protos PROTOS my.proto)
#   target_link_libraries(my_app PRIVATE my_protos Locus::locus)
#
# Imported targets: Locus::locus, Locus::codegen_support, Locus::idl,
# Locus::locusc, Locus::protoc-gen-locus.
include(CMakePackageConfigHelpers)

set(LOCUS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Locus)
set(LOCUS_INSTALL_IDLDIR ${CMAKE_INSTALL_DATADIR}/locus/idl)

set_target_properties(locus_codegen_support PROPERTIES EXPORT_NAME codegen_support)
set_target_properties(locus_idl PROPERTIES EXPORT_NAME idl)
set_target_properties(locus PROPERTIES EXPORT_NAME locus)

install(TARGETS locus locus_idl locus_codegen_support
        EXPORT LocusTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS locusc protoc-gen-locus
        EXPORT LocusTargets
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Public headers only (runtime/internal stays private).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/locus
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
# Headers generated from the IDL (see idl/CMakeLists.txt).
install(FILES ${PROJECT_BINARY_DIR}/idl/gen/locus/options.pb.h
              ${PROJECT_BINARY_DIR}/idl/gen/locus/rmi.pb.h
              ${PROJECT_BINARY_DIR}/idl/gen/locus/wire.pb.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/locus)
# The IDL protos, where locusc looks for them (LOCUS_INSTALLED_IDL_DIR in
# codegen/CMakeLists.txt).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/idl/locus
        DESTINATION ${LOCUS_INSTALL_IDLDIR}
        FILES_MATCHING PATTERN "*.proto")

install(EXPORT LocusTargets
        NAMESPACE Locus::
        FILE LocusTargets.cmake
        DESTINATION ${LOCUS_INSTALL_CMAKEDIR})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/LocusConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/LocusConfig.cmake
  INSTALL_DESTINATION ${LOCUS_INSTALL_CMAKEDIR}
  PATH_VARS LOCUS_INSTALL_IDLDIR)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/LocusConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/LocusConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/LocusConfigVersion.cmake
              ${CMAKE_CURRENT_LIST_DIR}/LocusGenerate.cmake
        DESTINATION ${LOCUS_INSTALL_CMAKEDIR})

# The install test lives here rather than in tests/CMakeLists.txt because it
# exercises these rules.
if(LOCUS_BUILD_TESTS)
  add_subdirectory(${PROJECT_SOURCE_DIR}/tests/install ${PROJECT_BINARY_DIR}/tests/install)
endif()
