#include "internal/host_identity.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

namespace locus::internal {
namespace {

uint64_t NamespaceInode(const char* name) {
  struct stat st;
  std::string path = std::string("/proc/self/ns/") + name;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

wire::HostIdentity Compute() {
  wire::HostIdentity id;
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  if (std::getline(boot, boot_id)) id.set_boot_id(boot_id);
  // Test hook: pretend to be on another host (transport-selection tests).
  if (const char* fake = std::getenv("LOCUS_HOST_ID_FOR_TESTING"); fake != nullptr && *fake != 0) {
    id.set_boot_id(fake);
  }
  id.set_ipc_namespace(NamespaceInode("ipc"));
  id.set_mount_namespace(NamespaceInode("mnt"));
  id.set_net_namespace(NamespaceInode("net"));
  id.set_pid_namespace(NamespaceInode("pid"));
  id.set_user_namespace(NamespaceInode("user"));
  id.set_pid(static_cast<uint32_t>(getpid()));
  std::random_device rd;
  id.set_process_nonce((static_cast<uint64_t>(rd()) << 32) ^ rd());
  return id;
}

}  // namespace

const wire::HostIdentity& LocalHostIdentity() {
  static const wire::HostIdentity* identity = new wire::HostIdentity(Compute());
  return *identity;
}

}  // namespace locus::internal
