// The default transport registry: the built-in transports. Linking the
// `locus` library (rather than only `locus_runtime`) brings this in.
#include "locus/transport.h"
#include "transports/tcp/tcp_transport.h"
#include "transports/unix/unix_transport.h"

namespace locus {

TransportRegistry& DefaultTransportRegistry() {
  static TransportRegistry* registry = [] {
    auto* r = new TransportRegistry();  // never destroyed: used until exit
    r->Register(std::make_shared<UnixTransport>());
    r->Register(std::make_shared<TcpTransport>());
    return r;
  }();
  return *registry;
}

}  // namespace locus
