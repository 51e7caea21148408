# FindThrift for locus-bench (bench/CMakeLists.txt only). Debian's
# libthrift-dev ships no CMake package config, only thrift.pc: try a config
# package first, then pkg-config + the `thrift` compiler.
# Defines Thrift_FOUND, THRIFT_COMPILER and the target thrift::thrift.
# Thrift's C++ headers include Boost headers (libboost-dev), which Debian's
# libthrift-dev does not pull in: without them Thrift counts as not found.
# -DCMAKE_DISABLE_FIND_PACKAGE_Thrift=ON skips it (Thrift_FOUND stays false).
find_package(Thrift CONFIG QUIET)
find_program(THRIFT_COMPILER thrift)
find_path(LOCUS_THRIFT_BOOST_INCLUDE_DIR boost/numeric/conversion/cast.hpp)
if(NOT LOCUS_THRIFT_BOOST_INCLUDE_DIR)
  set(Thrift_FOUND FALSE)
  return()
endif()
if(Thrift_FOUND AND TARGET thrift::thrift AND THRIFT_COMPILER)
  return()
endif()
set(Thrift_FOUND FALSE)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND AND THRIFT_COMPILER)
  pkg_check_modules(LOCUS_THRIFT QUIET IMPORTED_TARGET thrift)
  if(LOCUS_THRIFT_FOUND)
    if(NOT TARGET thrift::thrift)
      add_library(thrift::thrift INTERFACE IMPORTED)
      target_link_libraries(thrift::thrift INTERFACE PkgConfig::LOCUS_THRIFT)
    endif()
    set(Thrift_VERSION ${LOCUS_THRIFT_VERSION})
    set(Thrift_FOUND TRUE)
  endif()
endif()
