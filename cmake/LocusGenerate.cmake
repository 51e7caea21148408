# locus_generate(TARGET <lib> PROTOS <files...> [IMPORT_DIRS <dirs...>] [OUT_DIR <dir>]
#                [GENERATE_MOCK_CODE])
#
# Runs locusc on PROTOS at build time and builds a static library <lib> from
# the generated foo.pb.cc and foo.locus.cc. Dependents of <lib> get the
# generated headers on their include path ("foo.locus.h", "foo.pb.h").
#
#   PROTOS       .proto files, relative to the current source dir or absolute.
#                Each must lie inside one of IMPORT_DIRS; its path relative to
#                that dir is its import name and decides the output path.
#   IMPORT_DIRS  Import roots (-I). Default: the current source dir.
#                Locus's IDL (locus/options.proto, locus/rmi.proto) and the
#                well-known types need none.
#   OUT_DIR      Where generated files go.
#                Default: ${CMAKE_CURRENT_BINARY_DIR}/locus_gen/<lib>.
#   GENERATE_MOCK_CODE
#                Also generate foo.locus_mock.h (gmock's MockFooStub per
#                service; locusc --locus_opt=generate_mock_code=true). It
#                includes "gmock/gmock.h": the tests that include it link
#                GTest::gmock; <lib> itself does not.
#
# Works in the Locus tree (uses the `locusc` and `locus_codegen_support`
# targets) and from an installed Locus (imported `Locus::locusc` and
# `Locus::codegen_support`). Generated code links protobuf; if a proto imports
# locus/options.proto or locus/rmi.proto, its .pb.cc needs Locus's IDL library
# (`locus_idl`, or the imported `Locus::idl`), which is linked when available.
#
# Every generated file depends on all PROTOS of the call (and on locusc), so
# editing one proto regenerates the whole library: put protos that import
# each other in the same call.
function(locus_generate)
  cmake_parse_arguments(ARG "GENERATE_MOCK_CODE" "TARGET;OUT_DIR" "PROTOS;IMPORT_DIRS" ${ARGN})
  if(NOT ARG_TARGET)
    message(FATAL_ERROR "locus_generate: TARGET is required")
  endif()
  if(NOT ARG_PROTOS)
    message(FATAL_ERROR "locus_generate(${ARG_TARGET}): PROTOS is required")
  endif()
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "locus_generate(${ARG_TARGET}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()

  set(locusc_env)
  if(TARGET locusc)
    set(locusc locusc)
  elseif(TARGET Locus::locusc)
    set(locusc Locus::locusc)
    # An installed locusc finds Locus's IDL through LOCUS_IDL_DIR
    # (set by LocusConfig.cmake), so the prefix may differ from the one it
    # was configured with.
    if(LOCUS_IDL_DIR)
      set(locusc_env ${CMAKE_COMMAND} -E env LOCUS_IDL_DIR=${LOCUS_IDL_DIR})
    endif()
  else()
    message(FATAL_ERROR "locus_generate: neither the locusc target nor Locus::locusc exists "
                        "(build inside the Locus tree or find_package(Locus))")
  endif()
  if(TARGET locus_codegen_support)
    set(support locus_codegen_support)
  elseif(TARGET Locus::codegen_support)
    set(support Locus::codegen_support)
  else()
    message(FATAL_ERROR "locus_generate: neither locus_codegen_support nor Locus::codegen_support exists")
  endif()

  if(NOT ARG_OUT_DIR)
    set(ARG_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/locus_gen/${ARG_TARGET})
  endif()
  if(NOT ARG_IMPORT_DIRS)
    set(ARG_IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  set(import_dirs)
  set(import_flags)
  foreach(dir ${ARG_IMPORT_DIRS})
    get_filename_component(dir ${dir} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND import_dirs ${dir})
    list(APPEND import_flags -I${dir})
  endforeach()

  set(abs_protos)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND abs_protos ${abs})
  endforeach()

  set(locus_opts)
  if(ARG_GENERATE_MOCK_CODE)
    set(locus_opts --locus_opt=generate_mock_code=true)
  endif()

  set(srcs)
  set(hdrs)
  foreach(abs ${abs_protos})
    set(rel)
    foreach(dir ${import_dirs})
      string(FIND "${abs}" "${dir}/" pos)
      if(pos EQUAL 0)
        file(RELATIVE_PATH rel ${dir} ${abs})
        break()
      endif()
    endforeach()
    if(NOT rel)
      message(FATAL_ERROR "locus_generate(${ARG_TARGET}): ${abs} is not inside any of IMPORT_DIRS (${import_dirs})")
    endif()
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(outputs ${ARG_OUT_DIR}/${base}.pb.cc ${ARG_OUT_DIR}/${base}.pb.h
                ${ARG_OUT_DIR}/${base}.locus.cc ${ARG_OUT_DIR}/${base}.locus.h)
    if(ARG_GENERATE_MOCK_CODE)
      list(APPEND outputs ${ARG_OUT_DIR}/${base}.locus_mock.h)
      list(APPEND hdrs ${ARG_OUT_DIR}/${base}.locus_mock.h)
    endif()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${locusc_env} $<TARGET_FILE:${locusc}> ${import_flags} --out=${ARG_OUT_DIR}
              ${locus_opts} ${rel}
      DEPENDS ${abs_protos} ${locusc}
      COMMENT "locusc ${rel}"
      VERBATIM)
    list(APPEND srcs ${ARG_OUT_DIR}/${base}.pb.cc ${ARG_OUT_DIR}/${base}.locus.cc)
    list(APPEND hdrs ${ARG_OUT_DIR}/${base}.pb.h ${ARG_OUT_DIR}/${base}.locus.h)
  endforeach()

  add_library(${ARG_TARGET} STATIC ${srcs} ${hdrs})
  target_include_directories(${ARG_TARGET} PUBLIC $<BUILD_INTERFACE:${ARG_OUT_DIR}>)
  target_link_libraries(${ARG_TARGET} PUBLIC ${support} protobuf::libprotobuf)
  if(TARGET locus_idl)
    target_link_libraries(${ARG_TARGET} PUBLIC locus_idl)
  elseif(TARGET Locus::idl)
    target_link_libraries(${ARG_TARGET} PUBLIC Locus::idl)
  endif()
endfunction()
