"""Bazel macros for Locus's .proto files. Mirrors cmake/LocusProtos.cmake.

  locus_internal_proto_library  protoc --cpp_out only (messages), Debian's
                                /usr/bin/protoc. For Locus's own IDL (idl/):
                                CMake's locus_internal_protos().
  locus_proto_library           messages plus Locus stubs/services generated
                                by //codegen:locusc. For services: CMake's
                                locus_generate().
  locus_grpc_proto_library      messages plus gRPC services (protoc +
                                grpc_cpp_plugin), for bench/'s gRPC baseline.
  locus_generated_dir           a directory filled at build time by a tool
                                (e.g. tests/fuzz's seed corpus).

Both produce a cc_library named `name` whose headers are included the way
CMake's generated include directory exposes them: relative to `import_dir`
(e.g. "locus/wire.pb.h" for idl/locus/wire.proto with import_dir = ".").
"""

LocusProtoInfo = provider(
    doc = "Proto sources and protoc -I paths of a locus proto library and its deps.",
    fields = {
        "transitive_sources": "depset of .proto Files",
        "import_paths": "depset of exec-root-relative directories for protoc -I",
    },
)

def _normalize(path):
    parts = []
    for p in path.split("/"):
        if p == "" or p == ".":
            continue
        if p == "..":
            if not parts:
                fail("import_dir may not leave the package: " + path)
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)

def _join(*parts):
    return _normalize("/".join([p for p in parts if p]))

def _strip_ext(path):
    if not path.endswith(".proto"):
        fail("expected a .proto file: " + path)
    return path[:-len(".proto")]

def _locus_proto_gen_impl(ctx):
    import_dir = _normalize(ctx.attr.import_dir)
    pkg_root = _join(ctx.label.workspace_root, ctx.label.package)
    src_import_path = _join(pkg_root, import_dir)

    # Each source's path relative to the import dir: what protoc is given and
    # what the generated files are named after.
    rel_paths = []
    for src in ctx.files.srcs:
        base = src.root.path
        prefix = _join(base, src_import_path)
        path = src.path
        if prefix and not path.startswith(prefix + "/"):
            fail("%s is not under import_dir '%s' of %s" % (path, ctx.attr.import_dir, ctx.label))
        rel_paths.append(path[len(prefix) + 1:] if prefix else path)

    suffixes = [".pb.h", ".pb.cc"]
    if ctx.attr.locus_out:
        suffixes = suffixes + [".locus.h", ".locus.cc"]
    if ctx.attr.generate_mock_code:
        if not ctx.attr.locus_out:
            fail("generate_mock_code needs locus_out")
        suffixes = suffixes + [".locus_mock.h"]
    if ctx.attr.grpc_plugin:
        suffixes = suffixes + [".grpc.pb.h", ".grpc.pb.cc"]
    hdrs = []
    srcs = []
    for rel in rel_paths:
        for suffix in suffixes:
            out = ctx.actions.declare_file(_join(import_dir, _strip_ext(rel) + suffix))
            if suffix.endswith(".h"):
                hdrs.append(out)
            else:
                srcs.append(out)

    out_dir = _join(ctx.bin_dir.path, src_import_path)

    wkt = ctx.files._well_known_protos
    import_paths = [src_import_path]
    if wkt:
        p = wkt[0].path
        import_paths.append(p[:p.find("/google/protobuf/")])
    transitive_imports = depset(
        import_paths,
        transitive = [d[LocusProtoInfo].import_paths for d in ctx.attr.deps],
    )
    transitive_sources = depset(
        ctx.files.srcs,
        transitive = [d[LocusProtoInfo].transitive_sources for d in ctx.attr.deps],
    )

    args = ctx.actions.args()
    args.add("--cpp_out=" + out_dir)
    if ctx.attr.locus_out:
        args.add("--locus_out=" + out_dir)
    if ctx.attr.generate_mock_code:
        args.add("--locus_opt=generate_mock_code=true")
    tools = []
    if ctx.attr.grpc_plugin:
        plugin = ctx.executable.grpc_plugin
        tools.append(plugin)
        args.add("--plugin=protoc-gen-grpc=" + plugin.path)
        args.add("--grpc_out=" + out_dir)
    for p in transitive_imports.to_list():
        args.add("-I" + (p if p else "."))
    args.add_all(rel_paths)

    ctx.actions.run(
        executable = ctx.executable.compiler,
        arguments = [args],
        inputs = depset(wkt, transitive = [transitive_sources]),
        tools = tools,
        outputs = hdrs + srcs,
        # locusc looks for Locus's IDL in $LOCUS_IDL_DIR first; the explicit
        # -I paths above (//idl:locus_idl's) already cover it, so point it
        # nowhere.
        env = {"LOCUS_IDL_DIR": ""},
        mnemonic = "LocusLocusc" if ctx.attr.locus_out else "LocusProtoc",
        progress_message = "%s %s" % (
            "locusc" if ctx.attr.locus_out else "protoc",
            " ".join(rel_paths),
        ),
    )

    return [
        DefaultInfo(files = depset(hdrs + srcs)),
        OutputGroupInfo(hdrs = depset(hdrs), srcs = depset(srcs)),
        LocusProtoInfo(
            transitive_sources = transitive_sources,
            import_paths = transitive_imports,
        ),
    ]

locus_proto_gen = rule(
    implementation = _locus_proto_gen_impl,
    doc = "Runs protoc or locusc on .proto files. Use the macros below.",
    attrs = {
        "srcs": attr.label_list(allow_files = [".proto"], mandatory = True),
        "deps": attr.label_list(providers = [LocusProtoInfo]),
        "import_dir": attr.string(default = "."),
        "compiler": attr.label(
            doc = "protoc, or a protoc-compatible compiler such as locusc",
            default = "@system_libs//:protoc",
            executable = True,
            cfg = "host",
        ),
        "locus_out": attr.bool(
            doc = "Also pass --locus_out and expect .locus.h/.locus.cc (locusc)",
        ),
        "generate_mock_code": attr.bool(
            doc = "With locus_out: also expect .locus_mock.h (gmock stubs)",
        ),
        "grpc_plugin": attr.label(
            doc = "grpc_cpp_plugin: also pass --grpc_out, expect .grpc.pb.h/.grpc.pb.cc",
            executable = True,
            cfg = "host",
        ),
        "_well_known_protos": attr.label(
            default = "@system_libs//:well_known_protos",
            allow_files = True,
        ),
    },
)

def _gen_label(dep):
    """'//idl:locus_idl' -> '//idl:locus_idl_gen' (the LocusProtoInfo target)."""
    if ":" in dep:
        return dep + "_gen"
    return "%s:%s_gen" % (dep, dep.split("/")[-1])

def _proto_cc_library(name, gen_kwargs, deps, cc_deps, import_dir, visibility, tags, testonly):
    locus_proto_gen(
        name = name + "_gen",
        deps = [_gen_label(d) for d in deps],
        import_dir = import_dir,
        visibility = visibility,
        tags = tags,
        testonly = testonly,
        **gen_kwargs
    )
    native.filegroup(
        name = name + "_gen_hdrs",
        srcs = [":%s_gen" % name],
        output_group = "hdrs",
        tags = tags,
        testonly = testonly,
    )
    native.filegroup(
        name = name + "_gen_srcs",
        srcs = [":%s_gen" % name],
        output_group = "srcs",
        tags = tags,
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = [":%s_gen_srcs" % name],
        hdrs = [":%s_gen_hdrs" % name],
        includes = [import_dir],
        # Generated code is not ours to lint.
        copts = ["-Wno-unused-parameter", "-Wno-extra"],
        deps = deps + cc_deps + ["@system_libs//:protobuf"],
        visibility = visibility,
        tags = tags,
        testonly = testonly,
    )

def locus_internal_proto_library(
        name,
        srcs,
        deps = [],
        cc_deps = [],
        import_dir = ".",
        visibility = None,
        tags = [],
        testonly = False):
    """Messages only, with Debian's protoc. CMake: locus_internal_protos().

    Args:
      name: the cc_library; `name`_gen is the generator target.
      srcs: .proto files, relative to this package and under import_dir.
      deps: other locus_*proto_library targets these protos import.
      cc_deps: extra cc_library deps.
      import_dir: directory (relative to this package) passed to protoc -I;
        headers are included relative to it. CMake's IMPORT_DIR.
    """
    _proto_cc_library(
        name = name,
        gen_kwargs = {"srcs": srcs},
        deps = deps,
        cc_deps = cc_deps,
        import_dir = import_dir,
        visibility = visibility,
        tags = tags,
        testonly = testonly,
    )

def locus_proto_library(
        name,
        srcs,
        deps = [],
        cc_deps = [],
        import_dir = ".",
        visibility = None,
        tags = [],
        testonly = False,
        generate_mock_code = False):
    """Messages plus Locus stubs and services. CMake: locus_generate().

    Runs //codegen:locusc (protoc with Locus's generator built in) and builds
    <proto>.pb.cc/.pb.h and <proto>.locus.cc/.locus.h into a cc_library that
    depends on //runtime:codegen_support (and //idl:locus_idl, for protos
    that import "locus/options.proto" or "locus/rmi.proto"). Arguments as for
    locus_internal_proto_library, and generate_mock_code: also
    <proto>.locus_mock.h (gmock's MockFooStub; CMake's GENERATE_MOCK_CODE),
    whose includers depend on @system_libs//:gmock themselves.
    """
    _proto_cc_library(
        name = name,
        gen_kwargs = {
            "srcs": srcs,
            "compiler": "//codegen:locusc",
            "locus_out": True,
            "generate_mock_code": generate_mock_code,
        },
        deps = deps + ([] if "//idl:locus_idl" in deps else ["//idl:locus_idl"]),
        cc_deps = cc_deps + ["//runtime:codegen_support"],
        import_dir = import_dir,
        visibility = visibility,
        tags = tags,
        testonly = testonly,
    )

def locus_grpc_proto_library(
        name,
        srcs,
        deps = [],
        cc_deps = [],
        import_dir = ".",
        visibility = None,
        tags = [],
        testonly = False):
    """Messages plus gRPC C++ services, with Debian's protoc and
    grpc_cpp_plugin (the gRPC baseline in bench/). Produces <proto>.pb.* and
    <proto>.grpc.pb.* in a cc_library depending on @system_libs//:grpcpp.
    Arguments as for locus_internal_proto_library.
    """
    _proto_cc_library(
        name = name,
        gen_kwargs = {
            "srcs": srcs,
            "grpc_plugin": "@system_libs//:grpc_cpp_plugin",
        },
        deps = deps,
        cc_deps = cc_deps + ["@system_libs//:grpcpp"],
        import_dir = import_dir,
        visibility = visibility,
        tags = tags,
        testonly = testonly,
    )

def _locus_generated_dir_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run(
        executable = ctx.executable.tool,
        arguments = ctx.attr.args + [out.path],
        outputs = [out],
        mnemonic = "LocusGenDir",
        progress_message = "Generating %s with %s" % (out.short_path, ctx.attr.tool.label.name),
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

locus_generated_dir = rule(
    implementation = _locus_generated_dir_impl,
    doc = """A directory (tree artifact) named `name`, filled at build time by
    running `tool [args...] <dir>`. CMake: add_custom_command(OUTPUT dir/...
    COMMAND tool dir).
    Use it as `data` and pass `$(location :name)` to tests.""",
    attrs = {
        "tool": attr.label(mandatory = True, executable = True, cfg = "host"),
        "args": attr.string_list(doc = "arguments before the directory: tool ARGS... <dir>"),
    },
)
