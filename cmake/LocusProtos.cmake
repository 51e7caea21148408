# locus_internal_protos(TARGET <name> IMPORT_DIR <dir> PROTOS <files...>)
#
# Builds a static library from .proto files with Debian's protoc (messages
# only). Used for Locus's own IDL; user protos go through locus_generate().
function(locus_internal_protos)
  cmake_parse_arguments(ARG "" "TARGET;IMPORT_DIR" "PROTOS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/gen)
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    file(RELATIVE_PATH rel ${ARG_IMPORT_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/${proto})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    list(APPEND srcs ${out_dir}/${base}.pb.cc)
    add_custom_command(
      OUTPUT ${out_dir}/${base}.pb.cc ${out_dir}/${base}.pb.h
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND protobuf::protoc --cpp_out=${out_dir} -I ${ARG_IMPORT_DIR} ${rel}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${proto} protobuf::protoc
      WORKING_DIRECTORY ${ARG_IMPORT_DIR}
      COMMENT "protoc ${rel}"
      VERBATIM)
  endforeach()
  add_library(${ARG_TARGET} STATIC ${srcs})
  target_include_directories(${ARG_TARGET} PUBLIC $<BUILD_INTERFACE:${out_dir}>
                                                  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${ARG_TARGET} PUBLIC protobuf::libprotobuf)
endfunction()
