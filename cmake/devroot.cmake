# Included when -DMKD_DEVROOT=<dir> names the Debian libraries packed by
# scripts/gpu_devroot.sh (a GPU machine: PyTorch's LibTorch, nothing else).
# CMake finds most of them through CMAKE_PREFIX_PATH; the ones defined here
# are those whose own CMake files would go looking for pkg-config, civetweb
# or curl, none of which a GPU image has.
set(_mkd_inc ${MKD_DEVROOT}/include)
set(_mkd_lib ${MKD_DEVROOT}/lib/x86_64-linux-gnu)
list(PREPEND CMAKE_PREFIX_PATH ${MKD_DEVROOT} ${MKD_DEVROOT}/share/cmake)

# mkd_devroot_library(<target> <file> [definitions...]): a shared library
# of the devroot as an imported target, with its headers and definitions.
function(mkd_devroot_library target file)
  if(NOT EXISTS ${_mkd_lib}/${file})
    message(FATAL_ERROR "${_mkd_lib}/${file} is missing: rerun scripts/gpu_devroot.sh")
  endif()
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION ${_mkd_lib}/${file}
    INTERFACE_INCLUDE_DIRECTORIES ${_mkd_inc}
    INTERFACE_COMPILE_DEFINITIONS "${ARGN}")
endfunction()

mkd_devroot_library(re2::re2 libre2.so)
# protobuf 3.21 and its protoc, pinned here: CMake's FindProtobuf would take
# whatever protobuf the GPU image has (another version; its symbols differ).
mkd_devroot_library(protobuf::libprotobuf libprotobuf.so)
mkd_devroot_library(protobuf::libprotoc libprotoc.so)
add_executable(protobuf::protoc IMPORTED GLOBAL)
set_target_properties(protobuf::protoc PROPERTIES IMPORTED_LOCATION ${MKD_DEVROOT}/bin/protoc)
set(Protobuf_FOUND TRUE)  # gRPC's config then does not look again.
set(Protobuf_VERSION 3.21.12)
# glog's own config would go looking for gflags' and libunwind's.
mkd_devroot_library(glog::glog libglog.so GLOG_CUSTOM_PREFIX_SUPPORT)
mkd_devroot_library(prometheus-cpp::core libprometheus-cpp-core.so)
# The definitions Debian's cpp-httplib.pc hands its users (they change the
# library's class layouts, so they must match how it was built).
mkd_devroot_library(PkgConfig::HTTPLIB libcpp-httplib.so
  CPPHTTPLIB_OPENSSL_SUPPORT CPPHTTPLIB_ZLIB_SUPPORT CPPHTTPLIB_BROTLI_SUPPORT)
mkd_devroot_library(PkgConfig::TURBOJPEG libturbojpeg.so)
mkd_devroot_library(PkgConfig::PNG libpng16.so)
# Debian's libcrypto, the one its gRPC links (job tokens' HMAC).
mkd_devroot_library(OpenSSL::Crypto libcrypto.so.3)

# PyTorch's wheels ship their own (other) protobuf headers under
# torch/include; ours must win, or the code protoc 3.21 generated meets
# headers of another version. Directory includes come before the ones
# linked targets bring.
include_directories(BEFORE ${_mkd_inc})

# The GPU image's toolchain links the C++ runtime statically, and
# PyTorch's libtorch.so exports its own copies of some of it (std::filesystem
# among them). With no libstdc++.so among a binary's needed libraries, the
# dynamic linker bound our std::filesystem::remove_all to libtorch's copy,
# which jumped to address 0 (seen on the H200 image, LibTorch 2.11). Naming
# the shared libstdc++ first makes every C++ runtime symbol bind to it.
add_link_options("LINKER:--push-state,--no-as-needed" "-l:libstdc++.so.6" "LINKER:--pop-state")
