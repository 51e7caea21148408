// The default transport registry: the built-in transports (unix,
// unix-abstract, fd, shm, shm-abstract, shm-fd, tcp, udp). Linking the
// `locus` library (rather than only `locus_runtime`) brings this in.
#include "locus/transport.h"
#include "transports/shm/shm_transport.h"
#include "transports/tcp/tcp_transport.h"
#include "transports/udp/udp_transport.h"
#include "transports/unix/unix_transport.h"

namespace locus {

TransportRegistry& DefaultTransportRegistry() {
  static TransportRegistry* registry = [] {
    auto* r = new TransportRegistry();  // never destroyed: used until exit
    auto shm = std::make_shared<ShmTransport>();
    r->Register(shm);
    // Unix listeners also accept clients moving to shared memory.
    r->Register(std::make_shared<UnixTransport>(shm->upgrader()));
    r->Register(std::make_shared<TcpTransport>());
    r->Register(std::make_shared<UdpTransport>());
    return r;
  }();
  return *registry;
}

}  // namespace locus
